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

The number of workers defaults to `auto` (`auto_workers`): one per CPU the process may use,
as TorchServe starts one worker per core, but no more than half the free memory holds,
each worker holding every model of the store. Several workers get, unless set,
`INTRA_OP_THREADS` of their share of the CPUs and an empty `PROMETHEUS_MULTIPROC_DIR` for
their metrics, which the parent removes at exit. Options default to the environment
(`HOST`, `PORT`, `WORKERS`, `LIMIT_CONCURRENCY`, `KEEP_ALIVE_SECONDS`,
`GRACEFUL_SHUTDOWN_SECONDS`: `classifier-serve --help`); `LOG_FORMAT=json` makes uvicorn's
own lines JSON, as the app's. The same program runs everywhere: `scripts/serve.sh` after
setting up the environment, the container image's CMD, and the Kubernetes Deployment.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from app.config import CGROUP_ROOT, usable_cpus
from app.protocol import HeadLimitsProtocol
from modelstore import SAVED_MODEL_FILE
from modelstore.layout import version_folders

__all__ = ["ReusePortSocket", "auto_workers", "main", "parser", "usable_cpus", "worker_memory_bytes"]

APP = "app.main:app"
JSON_LOG_CONFIG = str(Path(__file__).with_name("log_config.json"))

WORKER_BASE_BYTES = 512 * 2**20
"""Memory of a worker before its models, bytes: the part of TensorFlow's runtime that is its
own (the libraries' code is mapped from the same files and shared)."""

SAVED_MODEL_MEMORY_FACTOR = 3
"""A loaded version takes about this many times its SavedModel's bytes on disk (graph,
functions, variables, oneDNN's caches). The shipped store, 353 MiB of SavedModels: 1,331 MiB
of a worker's own memory and 1,718 MiB resident (docs/performance.md); a store
of mnist/custom2 and mnist/mlp, 4.3 MiB: 33 MiB."""


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


def available_memory_bytes(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """Memory that new processes can take without swapping, bytes: the kernel's
    `MemAvailable`, bounded by the cgroup's memory limit less what the cgroup uses (cgroup
    v2's `memory.max` and `memory.current`, or v1's `memory/memory.limit_in_bytes` and
    `memory.usage_in_bytes`, under `cgroup_root`); None where neither can be read (not Linux)."""
    available = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    for limit_file, usage_file in (
        (cgroup_root / "memory.max", cgroup_root / "memory.current"),
        (cgroup_root / "memory" / "memory.limit_in_bytes", cgroup_root / "memory" / "memory.usage_in_bytes"),
    ):
        try:
            limit = limit_file.read_text().strip()
            # v2 says "max" for no limit; v1 a number near 2**63.
            if limit != "max" and int(limit) < 2**60:
                available.append(int(limit) - int(usage_file.read_text()))
            break
        except (OSError, ValueError):
            continue
    return min(available) if available else None


def worker_memory_bytes(models_dir: Path) -> int:
    """Estimated memory of one worker serving every version in `models_dir`, bytes:
    `WORKER_BASE_BYTES` plus `SAVED_MODEL_MEMORY_FACTOR` times the store's SavedModel files."""
    saved_model_bytes = 0
    for *_, folder in version_folders(models_dir):
        files = [folder / SAVED_MODEL_FILE, *(folder / "variables").glob("*")]
        saved_model_bytes += sum(path.stat().st_size for path in files if path.is_file())
    return WORKER_BASE_BYTES + SAVED_MODEL_MEMORY_FACTOR * saved_model_bytes


def auto_workers(cpus: int, available_bytes: int | None, worker_bytes: int) -> int:
    """`WORKERS=auto`: one worker per usable CPU, as many as half of `available_bytes` holds
    at `worker_bytes` each, and at least one.

    One worker per core because a worker's Python runs on one core at a time (the GIL):
    two workers on two cores answered far more than one (docs/performance.md).
    Half the free memory, so that a laptop with many cores and the whole store keeps room
    for everything else.

    Args:
        cpus: Usable CPUs (`usable_cpus`).
        available_bytes: Memory available (`available_memory_bytes`), None if unknown.
        worker_bytes: One worker's estimated memory (`worker_memory_bytes`).
    """
    by_memory = cpus if available_bytes is None else available_bytes // 2 // max(1, worker_bytes)
    return max(1, min(cpus, by_memory))


def _workers(value: str) -> int | str:
    """`--workers`: a positive number or `auto`."""
    if value == "auto":
        return value
    try:
        workers = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers or 'auto'") from None
    if workers < 1:
        raise argparse.ArgumentTypeError("the number of workers must be at least 1")
    return workers


def _config(args: argparse.Namespace) -> uvicorn.Config:
    """uvicorn's configuration for the service: connections past `limit_concurrency` get
    503 from uvicorn itself, counted once they have sent a request head, which must arrive
    within `HEADER_TIMEOUT_SECONDS` and fit in `MAX_HEADER_BYTES` (`app.protocol`); idle
    keep-alive connections close after `keep_alive` s; on SIGTERM the app drains
    (`DRAIN_SECONDS`) and uvicorn then gives what is left `graceful_shutdown` s."""
    return uvicorn.Config(
        APP,
        http=HeadLimitsProtocol,
        host=args.host,
        port=args.port,
        workers=args.workers,
        limit_concurrency=args.limit_concurrency,
        timeout_keep_alive=args.keep_alive,
        timeout_graceful_shutdown=args.graceful_shutdown,
        access_log=False,  # the app writes its own access line
        # The app's lines follow LOG_FORMAT (app.config); uvicorn's own follow it here.
        log_config=JSON_LOG_CONFIG if os.environ.get("LOG_FORMAT") == "json" else uvicorn.config.LOGGING_CONFIG,
    )


def parser() -> argparse.ArgumentParser:
    """The command line of `classifier-serve` / `python -m app.serve`. Every option defaults to
    an environment variable of the same name in capitals, so the image, the Kubernetes
    ConfigMap and `scripts/serve.sh` set the same names; the app's own settings (`MODELS_DIR`,
    `API_KEYS`, ...: `app.config.Settings`, README's table) are read by every worker."""
    env = os.environ.get
    command = argparse.ArgumentParser(
        prog="classifier-serve",
        description="Serve the image classifiers of MODELS_DIR over HTTP (FastAPI under uvicorn). The app's "
        "settings (MODELS_DIR, API_KEYS, MAX_UPLOAD_BYTES, ...) come from the environment: README, Configuration.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    command.add_argument("--host", default=env("HOST", "0.0.0.0"), help="address to listen on (HOST)")
    command.add_argument("--port", type=int, default=int(env("PORT", "8000")), help="TCP port (PORT)")
    command.add_argument(
        "--workers",
        type=_workers,
        default=env("WORKERS", "auto"),
        help="worker processes (WORKERS): a number, or auto = one per usable CPU (affinity and cgroup quota), "
        "as many as half the available memory holds at about 512 MiB + 3 x the store's SavedModels each",
    )
    command.add_argument(
        "--limit-concurrency",
        type=int,
        default=int(env("LIMIT_CONCURRENCY", "1024")),
        metavar="CONNECTIONS",
        help="connections with a request head a worker holds before it answers 503 (LIMIT_CONCURRENCY)",
    )
    command.add_argument(
        "--keep-alive",
        type=float,
        default=float(env("KEEP_ALIVE_SECONDS", "5")),
        metavar="SECONDS",
        help="seconds an idle keep-alive connection stays open (KEEP_ALIVE_SECONDS)",
    )
    command.add_argument(
        "--graceful-shutdown",
        type=float,
        default=float(env("GRACEFUL_SHUTDOWN_SECONDS", "30")),
        metavar="SECONDS",
        help="seconds uvicorn gives open connections after the app's drain on SIGTERM (GRACEFUL_SHUTDOWN_SECONDS)",
    )
    return command


def _metrics_folder(workers: int) -> str | None:
    """Make the folder in which workers add up their metrics (prometheus-client's
    multiprocess mode), which must exist and be empty when they start.

    `PROMETHEUS_MULTIPROC_DIR` names it (a Kubernetes `emptyDir` under a read-only root):
    it is made if missing and emptied. Unset with several workers, a temporary folder is
    made and returned, for the caller to remove at exit; None otherwise.
    """
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return None
    if workers == 1:
        return None
    made = tempfile.mkdtemp(prefix="classifier-metrics.")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve until SIGINT or SIGTERM."""
    args = parser().parse_args(argv)
    cpus = usable_cpus()
    auto = args.workers == "auto"
    if auto:
        models_dir = Path(os.environ.get("MODELS_DIR") or "models_store")
        available, worker_bytes = available_memory_bytes(), worker_memory_bytes(models_dir)
        args.workers = auto_workers(cpus, available, worker_bytes)
    config = _config(args)  # configures logging
    logger = logging.getLogger("uvicorn.error")
    if auto:
        logger.info(
            "WORKERS=auto: %d worker(s) for %d usable CPU(s), %s MiB of memory available, about %s MiB a worker for %s",
            args.workers,
            cpus,
            "unknown" if available is None else f"{available // 2**20:,}",
            f"{worker_bytes // 2**20:,}",
            models_dir,
        )
    # The workers inherit this process's environment. Each gets its share of the usable CPUs
    # for TensorFlow's threads and the preparation pool (one worker: app.config's defaults,
    # from the same count).
    if args.workers > 1:
        share = max(1, cpus // args.workers)
        os.environ.setdefault("INTRA_OP_THREADS", str(share))
        os.environ.setdefault("PREPROCESS_THREADS", str(share))
    metrics_dir = _metrics_folder(args.workers)
    try:
        if args.workers == 1:
            uvicorn.Server(config).run()
            return
        if sys.platform == "linux":  # elsewhere SO_REUSEPORT does not spread connections
            family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
            address = _listening_socket(family, (args.host, args.port))
            logger.info(
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
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
