"""`python -m app.serve`: the service under uvicorn, one listening socket per worker process.

With `--workers N`, uvicorn binds one socket and every worker accepts from it. A worker
woken by new connections accepts all that are waiting (uvloop, like asyncio, accepts
until none is left), so clients that open their connections together, as wrk or a proxy's
connection pool do, may all land on one worker while the others idle, for as long as the
connections stay open (measured in docs/performance.md). Here, on Linux, each worker
listens on a socket of its own bound to the same address with `SO_REUSEPORT`, and the
kernel spreads new connections over those sockets by a hash of each client's address and
port, as nginx's `reuseport` does. uvicorn's supervisor still starts, watches, restarts
and stops the workers. On other systems, where `SO_REUSEPORT` does not spread
connections, the workers share one socket as under `uvicorn --workers`.

    python -m app.serve --host 0.0.0.0 --port 8000 --workers 2

Options default to the environment (`HOST`, `PORT`, `WORKERS`, `LIMIT_CONCURRENCY`);
`LOG_FORMAT=json` makes uvicorn's own lines JSON, as the app's. `scripts/serve.sh` runs
this after setting up the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

__all__ = ["ReusePortSocket", "main"]

APP = "app.main:app"
JSON_LOG_CONFIG = "app/log_config.json"


def _listening_socket(family: int, address: Any) -> socket.socket:
    """A TCP socket bound to `address` with `SO_REUSEADDR` and `SO_REUSEPORT`, not yet listening."""
    sock = ReusePortSocket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


class ReusePortSocket(socket.socket):
    """A bound socket that each worker process receives as a new socket of its own.

    uvicorn hands the parent's sockets to every worker it starts (and restarts) by pickling
    them; this one pickles as its family and address, and unpickles as a new socket bound
    to the same address with `SO_REUSEPORT`. The parent's socket only holds the address
    (and tells the port chosen for port 0): it never listens, so the kernel gives it no
    connections.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _listening_socket, (self.family, self.getsockname())


def _config(args: argparse.Namespace) -> uvicorn.Config:
    """uvicorn's configuration for the service: connections past `limit_concurrency` get
    503 from uvicorn itself; idle keep-alive connections close after 5 s; on SIGTERM the
    app drains (`DRAIN_SECONDS`) and uvicorn then gives what is left 30 s."""
    return uvicorn.Config(
        APP,
        host=args.host,
        port=args.port,
        workers=args.workers,
        limit_concurrency=args.limit_concurrency,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,
        access_log=False,  # the app writes its own access line
        # The app's lines follow LOG_FORMAT (app.config); uvicorn's own follow it here.
        log_config=JSON_LOG_CONFIG if os.environ.get("LOG_FORMAT") == "json" else uvicorn.config.LOGGING_CONFIG,
    )


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")))
    parser.add_argument("--limit-concurrency", type=int, default=int(os.environ.get("LIMIT_CONCURRENCY", "1024")))
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    config = _config(args)
    if args.workers == 1:
        uvicorn.Server(config).run()
        return
    if sys.platform == "linux":  # elsewhere SO_REUSEPORT does not spread connections
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        address = _listening_socket(family, (args.host, args.port))
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on http://%s:%d, %d workers with a socket each (SO_REUSEPORT)",
            args.host,
            address.getsockname()[1],
            args.workers,
        )
    else:
        address = config.bind_socket()
    try:
        Multiprocess(config, sockets=[address]).run()
    finally:
        address.close()


if __name__ == "__main__":
    main()
