r"""CPU time per image of a network alone, one thread, by batch size: this service's SavedModel
or the TorchServe peer's PyTorch copy of it.

The peer comparison (`../shared/peer-bench`) sets this service against TorchServe serving
the same architectures in PyTorch. This splits a request's cost into the model and the rest: the
store's `serving_default` signature as the service calls it (one intra-op thread, in this
project's environment), or the peer's network (`torch.set_num_threads(1)`, as its handler
sets it; in the peer's environment, with the peer's trained weights from `setup.sh`):

    .venv/bin/python benchmarks/model_cost.py custom2 mlp
    .venv/bin/python benchmarks/model_cost.py --xla custom2 mlp     # the signature compiled by XLA
    .venv/bin/python benchmarks/model_cost.py --session custom2 mlp # in a TF1 session, as TF Serving runs it
    /tmp/tsenv/bin/python benchmarks/model_cost.py --torch custom2 mlp

Random inputs of the model's input shape in [0, 1] (the peer's: (batch, 1, 28, 28)); the
probabilities are computed as each server does (PyTorch: softmax of the logits).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT.parent / "shared" / "peer-bench" / "peers" / "torchserve"


def per_image(call: Callable[[], object], batch_size: int) -> float:
    """CPU us per image of `call`, after 20 warm-up calls."""
    for _ in range(20):
        call()
    repeats = max(50, 3000 // batch_size)
    started = time.process_time()
    for _ in range(repeats):
        call()
    return (time.process_time() - started) * 1e6 / repeats / batch_size


def newest_version(model: str) -> Path:
    """The store's newest version folder of `<dataset>/<arch>`, or of `mnist/<arch>`."""
    dataset, _, arch = model.rpartition("/")
    folder = ROOT / "models_store" / (dataset or "mnist") / arch
    return max((path for path in folder.iterdir() if path.name.isdigit()), key=lambda path: int(path.name))


def input_shape(model: str) -> tuple[int, int, int]:
    """(height, width, channels) of a store model's input, from its metadata."""
    import json

    return tuple(json.loads((newest_version(model) / "metadata.json").read_text())["input_shape"])  # type: ignore[return-value]


def savedmodel_call(arch: str, batch: np.ndarray, *, xla: bool = False) -> Callable[[], object]:
    """A call of the newest `mnist/<arch>` SavedModel of the store on `batch`; with `xla`,
    of its signature wrapped in a `tf.function(jit_compile=True)`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    folder = newest_version(arch)
    loaded = tf.saved_model.load(str(folder))
    signature = loaded.signatures["serving_default"]
    images = tf.constant(batch)
    if xla:
        compiled = tf.function(lambda images: signature(images=images)["probabilities"], jit_compile=True)
        return lambda: (loaded, compiled(images).numpy())  # `loaded` holds the variables
    return lambda: signature(images=images)["probabilities"].numpy()


def session_call(arch: str, batch: np.ndarray) -> Callable[[], object]:
    """A call of the newest `mnist/<arch>` SavedModel of the store on `batch`, loaded into a
    TensorFlow 1 session (`tf.compat.v1`, as TensorFlow Serving loads a SavedModel) and run
    through `Session.make_callable`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    folder = newest_version(arch)
    graph = tf.Graph()
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    session = tf.compat.v1.Session(graph=graph, config=config)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(folder))
    signature = meta_graph.signature_def["serving_default"]
    images = graph.get_tensor_by_name(signature.inputs["images"].name)
    probabilities = graph.get_tensor_by_name(signature.outputs["probabilities"].name)
    run = session.make_callable(probabilities, [images])
    return lambda: run(batch)


def torch_call(arch: str, batch: np.ndarray, weights: Path) -> Callable[[], object]:
    """A call of the TorchServe peer's `arch` network on `batch`, as its handler makes it."""
    import torch

    sys.path.insert(0, str(PEER))
    from models import build  # the peer's own definitions

    torch.set_num_threads(1)
    checkpoint = torch.load(weights / f"torch_{arch}.pt", map_location="cpu", weights_only=True)
    network = build(checkpoint["arch"])
    network.load_state_dict(checkpoint["state_dict"])
    network.eval()
    images = torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())

    def call() -> object:
        with torch.inference_mode():
            return torch.softmax(network(images), dim=1).numpy()

    return call


def main() -> None:
    """Print the CPU us per image of each architecture at each batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "archs", nargs="+", help="store models, `<dataset>/<arch>` or an MNIST architecture: custom2 cifar10/airbench"
    )
    parser.add_argument("--torch", action="store_true", help="time the TorchServe peer's PyTorch network")
    parser.add_argument("--xla", action="store_true", help="time the SavedModel's signature compiled by XLA")
    parser.add_argument("--session", action="store_true", help="time the SavedModel run in a TF1 session")
    parser.add_argument("--weights", type=Path, default=Path("/tmp/peer_models"), help="the peer's trained weights")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args()
    runtime = "pytorch (TorchServe peer)" if args.torch else "SavedModel (this service)"
    runtime += ", XLA" if args.xla else ", TF1 session" if args.session else ""
    rng = np.random.default_rng(0)
    for arch in args.archs:
        costs = []
        for batch_size in args.batch_sizes:
            shape = (28, 28, 1) if args.torch else input_shape(arch)
            batch = rng.random((batch_size, *shape), dtype=np.float32)
            if args.torch:
                call = torch_call(arch, batch, args.weights)
            elif args.session:
                call = session_call(arch, batch)
            else:
                call = savedmodel_call(arch, batch, xla=args.xla)
            costs.append(f"batch {batch_size}: {per_image(call, batch_size):,.0f}")
        print(f"{arch}, {runtime}, CPU us per image, one thread: " + ", ".join(costs), flush=True)


if __name__ == "__main__":
    main()
