r"""CPU time per image of a SavedModel's `serving_default` signature against the same
network converted to LiteRT (TensorFlow Lite, XNNPACK), one thread each, by batch size.

A question for issue 17: would a second runtime make the model cheaper? Converts each
named model of the store (`tf.lite.TFLiteConverter.from_saved_model`) into a temporary
folder, checks that both give the same probabilities on random inputs, and times calls of
batches of 1, 4, 8 and 16 (process CPU time and wall time per image). LiteRT is not a
dependency of the service; install it for this script only:

    .venv/bin/pip install ai-edge-litert
    .venv/bin/python benchmarks/litert_vs_savedmodel.py mnist/custom2 mnist/mlp
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def per_image(call: Callable[[], object], batch_size: int) -> tuple[float, float]:
    """(CPU us, wall us) per image of `call`, after 20 warm-up calls."""
    for _ in range(20):
        call()
    repeats = max(50, 2000 // batch_size)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        call()
    scale = 1e6 / repeats / batch_size
    return (time.process_time() - cpu) * scale, (time.perf_counter() - wall) * scale


def run_litert(interpreter: Any, source: int, target: int, inputs: np.ndarray) -> np.ndarray:
    """One LiteRT call: float32 (N, H, W, C) into tensor `source`, the probabilities
    (N, classes) out of tensor `target`."""
    interpreter.set_tensor(source, inputs)
    interpreter.invoke()
    return interpreter.get_tensor(target)


def run_saved(signature: Any, input_name: str, inputs: np.ndarray) -> np.ndarray:
    """One call of the SavedModel signature, as the service makes it."""
    import tensorflow as tf

    return next(iter(signature(**{input_name: tf.constant(inputs)}).values())).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="dataset/arch of the store, newest version")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    # The service's own settings on a 2-core machine (app.config: intra-op threads one fewer than cores).
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            folder = max((ROOT / "models_store" / name).iterdir(), key=lambda path: int(path.name))
            converted = Path(scratch) / f"{name.replace('/', '_')}.tflite"
            converted.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(folder)).convert())
            signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
            input_name = next(iter(signature.structured_input_signature[1]))
            input_shape = tuple(signature.structured_input_signature[1][input_name].shape[1:])
            print(f"{name} v{folder.name}: LiteRT file {converted.stat().st_size:,} bytes")
            for batch_size in args.batch_sizes:
                inputs = rng.random((batch_size, *input_shape), dtype=np.float32)
                interpreter = Interpreter(model_path=str(converted), num_threads=1)
                source = interpreter.get_input_details()[0]["index"]
                interpreter.resize_tensor_input(source, [batch_size, *input_shape])
                interpreter.allocate_tensors()
                target = interpreter.get_output_details()[0]["index"]
                lite = partial(run_litert, interpreter, source, target, inputs)
                saved = partial(run_saved, signature, input_name, inputs)
                difference = float(np.abs(lite() - saved()).max())
                saved_cpu, saved_wall = per_image(saved, batch_size)
                lite_cpu, lite_wall = per_image(lite, batch_size)
                print(
                    f"  batch {batch_size:>2}: CPU per image SavedModel {saved_cpu:6.0f} us, LiteRT {lite_cpu:6.0f} us;"
                    f" wall {saved_wall:6.0f} / {lite_wall:6.0f} us; largest difference {difference:.1e}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
