"""Re-export store versions so their `serving_default` signature says what it carries.

Keras' `model.export()` names the signature's input `keras_tensor` and its output
`output_0`, names that surface in TF Serving's and the v2 protocol's model metadata. This
tool wraps each version's own signature function (the same graph and weights, nothing
retrained) in one that takes `images` and returns `probabilities`, writes it as a new
SavedModel beside the old one, checks that both answer the same probabilities on the
whole test set, re-measures the test accuracy against `metadata.json`, and swaps it in.

    .venv/bin/python tools/rename_signature.py models_store [--data-dir ../shared/datasets]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from modelstore import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME, ModelMetadata, public_command, version_folders
from modelstore.layout import staging_folder
from training.config import get_settings
from training.datasets import load_dataset

SAVED_MODEL_FILES = ("saved_model.pb", "fingerprint.pb", "variables", "assets")


def probabilities(function: tf.types.experimental.ConcreteFunction, images: np.ndarray) -> np.ndarray:
    """float32 (N, classes) from float32 (N, H, W, C), in batches of 500."""
    (input_name,) = function.structured_input_signature[1].keys()
    (output_name,) = function.structured_outputs.keys()
    rows = [
        function(**{input_name: tf.constant(images[start : start + 500], tf.float32)})[output_name].numpy()
        for start in range(0, len(images), 500)
    ]
    return np.concatenate(rows)


def rename(folder: Path, staging: Path) -> None:
    """Write `folder`'s SavedModel to `staging` with an `images` -> `probabilities` signature."""
    loaded = tf.saved_model.load(str(folder))
    old = loaded.signatures[SIGNATURE_NAME]
    (old_input,) = old.structured_input_signature[1].keys()
    (old_output,) = old.structured_outputs.keys()
    spec = old.structured_input_signature[1][old_input]
    spec = tf.TensorSpec(spec.shape, tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: old(**{old_input: images})[old_output]}

    module = tf.Module()
    module.loaded = loaded
    module.serve = serve
    tf.saved_model.save(module, str(staging), signatures={SIGNATURE_NAME: serve})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--data-dir", type=Path, default=get_settings().data_dir)
    args = parser.parse_args()
    datasets = {}
    for dataset, arch, version, folder in version_folders(args.store):
        raw = json.loads((folder / "metadata.json").read_text())
        raw.pop("output", None)
        metadata = ModelMetadata.model_validate(raw)
        function = tf.saved_model.load(str(folder)).signatures[SIGNATURE_NAME]
        if list(function.structured_outputs) == [OUTPUT_NAME]:
            print(f"{dataset}/{arch} v{version}: already renamed")
            continue
        if dataset not in datasets:
            datasets[dataset] = load_dataset(dataset, args.data_dir)
        images = datasets[dataset].x_test.astype(np.float32) / 255.0
        labels = datasets[dataset].y_test
        before = probabilities(function, images)
        staging = staging_folder(folder)
        shutil.rmtree(staging, ignore_errors=True)
        rename(folder, staging)
        after = probabilities(tf.saved_model.load(str(staging)).signatures[SIGNATURE_NAME], images)
        accuracy = float((after.argmax(axis=1) == labels).mean())
        recorded = metadata.test_accuracy
        print(
            f"{dataset}/{arch} v{version}: max |difference| {np.abs(after - before).max():.2e}, "
            f"test accuracy {accuracy:.4f} (metadata {recorded:.4f})"
        )
        if not np.array_equal(after.argmax(axis=1), before.argmax(axis=1)) or abs(accuracy - recorded) > 5e-5:
            raise SystemExit(f"{folder}: the re-exported model answers differently; left unchanged")
        metadata = metadata.model_copy(
            update={"input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "command": public_command(metadata.command)}
        )
        for name in SAVED_MODEL_FILES:
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            if (staging / name).exists():
                (staging / name).rename(target)
        shutil.rmtree(staging)
        (folder / "metadata.json").write_text(metadata.model_dump_json(indent=2, exclude_none=False) + "\n")


if __name__ == "__main__":
    main()
