"""Scale-out on Ray Serve: the same FastAPI application, as Ray Serve's FastAPI ingress.

Each replica is a Ray actor that builds the app (`app.main.create_app`), runs its lifespan
(loading and warming up the store) and answers the requests Ray's HTTP proxy routes to it;
every protocol, limit, metric and the page work as in the plain server. Needs the `ray`
extra (`pip install -e '.[ray]'`).

    python -m app.ray_serve --replicas 2                  # local Ray, proxy on 127.0.0.1:8000
    python -m app.ray_serve --min-replicas 1 --max-replicas 4 --num-gpus 0.5
    serve run app.ray_serve:application                   # the Ray Serve CLI, 1 replica

Settings come from the environment of the process that builds the application (the same
variables as the plain server) and travel to the replicas with it.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings

__all__ = ["ReplicaState", "application", "build_application", "main"]

logger = logging.getLogger(__name__)


class ReplicaState:
    """ASGI wrapper for the app inside a replica.

    Ray Serve runs the app's lifespan (uvicorn's `LifespanOn`) but does not hand the state
    the lifespan yields (the registry, settings, keys) to the requests as uvicorn does; this
    keeps it from the lifespan scope and gives each request a copy. It also names the
    replica that answered in an `X-Replica` header, to see the load spread.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        try:
            self.replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # built outside a replica (tests, `serve build`)
            self.replica = f"pid-{os.getpid()}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            scope.setdefault("state", self.state)
            self.state = scope["state"]
            await self.app(scope, receive, send)
            return
        if not scope.get("state"):
            scope["state"] = dict(self.state)
        replica = self.replica.encode()

        async def send_with_replica(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-replica", replica)]
            await send(message)

        await self.app(scope, receive, send_with_replica)


class Classifier:
    """The deployment class: all of its HTTP surface is the ingress app."""


def build_application(
    settings: Settings | None = None,
    *,
    replicas: int = 1,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    target_ongoing_requests: float = 16,
    max_ongoing_requests: int = 64,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> serve.Application:
    """The Ray Serve application of the service.

    Args:
        settings: The service's settings (default: read from the environment now).
        replicas: Fixed number of replicas (when no autoscaling bounds are given).
        min_replicas: With `max_replicas`, autoscale between the two (Ray Serve's
            `autoscaling_config`).
        max_replicas: Upper bound of autoscaling.
        target_ongoing_requests: Requests in flight per replica that autoscaling aims at;
            the plain server's throughput levels off at about 16 concurrent requests per
            process on 2 cores (docs/performance.md).
        max_ongoing_requests: Requests a replica takes at once before Ray queues them at the
            proxy (below the app's own MAX_REQUESTS_IN_FLIGHT, which sheds with 503).
        num_cpus: CPUs reserved per replica.
        num_gpus: GPUs (a fraction shares one) per replica; TensorFlow grows its memory.
    """
    settings = settings or Settings()

    def make_app() -> ASGIApp:
        from app.main import create_app

        return ReplicaState(create_app(settings))

    options: dict[str, Any] = {
        "name": "classifier",
        "max_ongoing_requests": max_ongoing_requests,
        "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus},
    }
    if min_replicas is not None and max_replicas is not None:
        options["autoscaling_config"] = {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
        }
    else:
        options["num_replicas"] = replicas
    deployment = serve.deployment(**options)(serve.ingress(make_app)(Classifier))
    return deployment.bind()


def main(argv: Sequence[str] | None = None) -> None:
    """Start a local Ray instance, deploy the service and serve until interrupted."""
    import ray

    parser = argparse.ArgumentParser(prog="python -m app.ray_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--min-replicas", type=int)
    parser.add_argument("--max-replicas", type=int)
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (fractions share one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    ray.init(include_dashboard=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(
        build_application(
            replicas=args.replicas,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
        ),
        blocking=True,
    )


application = build_application()
"""What `serve run app.ray_serve:application` deploys: one replica, settings from the environment."""

if __name__ == "__main__":
    main()
