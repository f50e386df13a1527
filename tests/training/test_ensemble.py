"""Ensembles: the member search, the exported SavedModel and its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelstore import ModelMetadata
from tests.conftest import export_tiny_model
from training.datasets import Dataset
from training.ensemble import load_member, make_ensemble, search_members
from training.runs import split_validation


def test_search_keeps_the_subset_most_accurate_on_validation() -> None:
    labels = np.array([0, 1, 2, 3] * 25)
    truth = np.eye(4, dtype=np.float32)[labels]
    wrong = np.eye(4, dtype=np.float32)[(labels + 1) % 4]
    half = truth.copy()
    half[::2] = 0.3 * truth[::2] + 0.7 * wrong[::2]  # wrong on every other image
    chosen, accuracy = search_members({"good": truth, "bad": wrong, "half": half}, labels, max_members=3)
    assert accuracy == 1.0 and "bad" not in chosen and "good" in chosen


def _store_with_members(
    store: Path,
    *,
    fractions: tuple[float, float] = (0.15, 0.15),
    seeds: tuple[int, int] = (0, 1),
    split_seeds: tuple[int, int] = (42, 42),
    init_seeds: tuple[int | None, int | None] = (None, None),
) -> None:
    """Two tiny models `a` and `b` whose metadata say they held out `fractions` of the
    training images with `split_seeds`; with `init_seeds`, they were initialised from those
    seeds and recorded the split's seed apart (`--split-seed`)."""
    for seed, arch, fraction, split_seed, init_seed in zip(
        seeds, ("a", "b"), fractions, split_seeds, init_seeds, strict=True
    ):
        folder = export_tiny_model(store, "mnist", arch, seed=seed)
        metadata = ModelMetadata.model_validate_json((folder / "metadata.json").read_bytes())
        recorded = {"seed": split_seed} if init_seed is None else {"seed": init_seed, "split_seed": split_seed}
        metadata = metadata.model_copy(update={**recorded, "recipe": {"validation_split": fraction}})
        (folder / "metadata.json").write_text(metadata.model_dump_json())


@pytest.fixture(scope="module")
def small_mnist(data_dir: Path) -> Dataset:
    from training.datasets import load_dataset

    return load_dataset("mnist", data_dir).take(400, 300)


def test_the_exported_ensemble_answers_the_weighted_mean_of_its_members(tmp_path: Path, small_mnist: Dataset) -> None:
    import tensorflow as tf

    _store_with_members(tmp_path)
    folder = make_ensemble(
        small_mnist, ["a", "b:1"], store_dir=tmp_path, arch="ensemble", weights=[1.0, 3.0], search=False,
        max_members=5, command="python -m training ensemble --members a,b:1 --weights 1,3",
    )  # fmt: skip
    images = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    served = tf.saved_model.load(str(folder)).signatures["serving_default"]
    answer = served(images=tf.constant(images))["probabilities"].numpy()
    members = [load_member(tmp_path, "mnist", name).saved_model.signatures["serving_default"] for name in "ab"]
    a, b = (member(images=tf.constant(images))["probabilities"].numpy() for member in members)
    np.testing.assert_allclose(answer, 0.25 * a + 0.75 * b, atol=1e-6)

    metadata = ModelMetadata.model_validate_json((folder / "metadata.json").read_bytes())
    assert [(m.arch, m.version, m.weight) for m in metadata.members or []] == [("a", 1, 1.0), ("b", 1, 3.0)]
    assert metadata.test_size == 300 and sum(map(sum, metadata.confusion_matrix or [])) == 300
    assert (
        metadata.parameter_count
        == 2 * json.loads((tmp_path / "mnist/a/1/metadata.json").read_text())["parameter_count"]
    )
    assert (folder / "confusion_matrix.png").is_file()


def test_one_member_over_translated_views_answers_airbench_s_second_tta_level(
    tmp_path: Path, small_mnist: Dataset
) -> None:
    import tensorflow as tf

    _store_with_members(tmp_path)
    folder = make_ensemble(
        small_mnist, ["a"], store_dir=tmp_path, arch="a_tta", weights=None, search=False, max_members=5,
        command="python -m training ensemble --members a --translate --arch a_tta", translate=True,
    )  # fmt: skip
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    served = tf.saved_model.load(str(folder)).signatures["serving_default"]
    answer = served(images=tf.constant(images))["probabilities"].numpy()
    member = load_member(tmp_path, "mnist", "a").saved_model.signatures["serving_default"]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [images, padded[:, :-2, :-2], padded[:, 2:, 2:]]
    expected = [member(images=tf.constant(view))["probabilities"].numpy() for view in views]
    np.testing.assert_allclose(answer, 0.5 * expected[0] + 0.25 * expected[1] + 0.25 * expected[2], atol=1e-6)
    metadata = ModelMetadata.model_validate_json((folder / "metadata.json").read_bytes())
    assert metadata.test_time_augmentation == "translate_average"
    assert [(m.arch, m.version) for m in metadata.members or []] == [("a", 1)]


def test_members_with_validation_splits_of_different_seeds_are_refused(tmp_path: Path, small_mnist: Dataset) -> None:
    _store_with_members(tmp_path, split_seeds=(42, 7))
    with pytest.raises(ValueError, match="different validation images"):
        make_ensemble(
            small_mnist, ["a", "b"], store_dir=tmp_path, arch="ensemble", weights=None, search=True,
            max_members=5, command="python -m training ensemble",
        )  # fmt: skip


def test_members_of_several_seeds_on_one_split_are_scored_together(tmp_path: Path, small_mnist: Dataset) -> None:
    _store_with_members(tmp_path, init_seeds=(42, 7), split_seeds=(42, 42))
    folder = make_ensemble(
        small_mnist, ["a", "b"], store_dir=tmp_path, arch="ensemble", weights=None, search=False,
        max_members=5, command="python -m training ensemble",
    )  # fmt: skip
    metadata = ModelMetadata.model_validate_json((folder / "metadata.json").read_bytes())
    assert metadata.val_size == 60 and metadata.validation_seed == 42


def test_members_of_one_init_seed_on_different_splits_are_refused(tmp_path: Path, small_mnist: Dataset) -> None:
    _store_with_members(tmp_path, init_seeds=(42, 42), split_seeds=(42, 7))
    with pytest.raises(ValueError, match="different validation images"):
        make_ensemble(
            small_mnist, ["a", "b"], store_dir=tmp_path, arch="ensemble", weights=None, search=False,
            max_members=5, command="python -m training ensemble",
        )  # fmt: skip


def test_members_with_nested_validation_splits_are_scored_on_the_smaller(tmp_path: Path, small_mnist: Dataset) -> None:
    # One seed: the 10% split's images are the last 40 of the permutation whose last 60 the
    # 15% split holds out, so neither member trained on them.
    _store_with_members(tmp_path, fractions=(0.15, 0.1))
    _, _, x_small, _ = split_validation(small_mnist.x_train, small_mnist.y_train, fraction=0.1, seed=42)
    _, _, x_large, _ = split_validation(small_mnist.x_train, small_mnist.y_train, fraction=0.15, seed=42)
    assert {image.tobytes() for image in x_small} <= {image.tobytes() for image in x_large}
    folder = make_ensemble(
        small_mnist, ["a", "b"], store_dir=tmp_path, arch="ensemble", weights=None, search=False,
        max_members=5, command="python -m training ensemble",
    )  # fmt: skip
    metadata = ModelMetadata.model_validate_json((folder / "metadata.json").read_bytes())
    assert metadata.val_size == 40 and (metadata.recipe or {})["validation_split"] == 0.1


def test_an_ensemble_no_better_than_its_best_member_is_not_exported(tmp_path: Path, small_mnist: Dataset) -> None:
    _store_with_members(tmp_path, seeds=(0, 0))  # two copies of one model: the mean is that model
    with pytest.raises(ValueError, match="beats a:1 alone"):
        make_ensemble(
            small_mnist, ["a", "b"], store_dir=tmp_path, arch="ensemble", weights=None, search=True,
            max_members=5, command="python -m training ensemble",
        )  # fmt: skip
    assert not (tmp_path / "mnist" / "ensemble").exists()


@pytest.mark.parametrize("shared", [True, False], ids=["alike", "different"])
def test_an_ensemble_keeps_the_sharpening_all_its_members_were_measured_with(
    tmp_path: Path, small_mnist: Dataset, shared: bool
) -> None:
    """The members see the ensemble's input: an unsharp mask chosen for every one of them is
    the ensemble's too; members chosen apart leave it without one."""
    _store_with_members(tmp_path)
    for arch, percent in (("a", 50), ("b", 50 if shared else 25)):
        path = tmp_path / "mnist" / arch / "1" / "metadata.json"
        record = json.loads(path.read_text()) | {"sharpen": {"radius": 0.7, "percent": percent}}
        path.write_text(json.dumps(record))
    folder = make_ensemble(
        small_mnist, ["a", "b"], store_dir=tmp_path, arch="ensemble", weights=None, search=False,
        max_members=5, command="python -m training ensemble --members a,b",
    )  # fmt: skip
    sharpen = ModelMetadata.model_validate_json((folder / "metadata.json").read_bytes()).sharpen
    assert (sharpen.model_dump() if sharpen else None) == ({"radius": 0.7, "percent": 50} if shared else None)
