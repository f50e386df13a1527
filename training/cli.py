"""Command line: `python -m training {train,import,compare,zoo,ensemble,report}`.

python -m training train --arch custom2 --dataset mnist
python -m training train --arch custom2 --dataset folder:my_photos --image-size 64
python -m training import my_model.keras --dataset pets --name catsdogs --classes cat,dog
python -m training train --arch mlp --dataset mnist --quick --output-dir /tmp/store
python -m training compare --dataset mnist
python -m training zoo --only 'mnist/*'
python -m training report models_store/cifar10/vgg_bn/3
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import logging
import re
import shlex
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from modelstore import NAME_PATTERN
from training.architectures import ARCHITECTURES, Augmentation, Recipe
from training.config import PROJECT_ROOT, get_settings
from training.store import read_store

logger = logging.getLogger("training")

ZOO_FILE = PROJECT_ROOT / "training" / "zoo.toml"


def _class_weight(value: str) -> str | dict[int, float]:
    """Parse `--class-weight`: `balanced` or a JSON object {class index: weight}."""
    if value == "balanced":
        return value
    try:
        return {int(key): float(weight) for key, weight in json.loads(value).items()}
    except (ValueError, AttributeError) as error:
        raise argparse.ArgumentTypeError(f"expected 'balanced' or a JSON object, got {value!r}") from error


def _store_name(value: str) -> str:
    """Parse `--name`: what a store folder and `ModelMetadata.arch` accept."""
    if not re.fullmatch(NAME_PATTERN, value):
        raise argparse.ArgumentTypeError(f"a store name is 1-64 letters, digits, '_', '.' or '-', got {value!r}")
    return value


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `train`; recipe flags default to None, meaning the architecture's recipe."""
    settings = get_settings()
    parser.add_argument(
        "--arch", required=True, choices=sorted(ARCHITECTURES), metavar="ARCH",
        help=f"the architecture (training/architectures.py): {', '.join(sorted(ARCHITECTURES))}",
    )  # fmt: skip
    parser.add_argument(
        "--dataset",
        default="mnist",
        help="mnist, fashion_mnist, cifar10, or folder:PATH: a folder (or .tar.gz) of class folders, or of "
        "train/<class>/ and test/<class>/",
    )
    parser.add_argument(
        "--image-size",
        type=_image_size,
        help="folder datasets: resize every image to SIZE or HEIGHTxWIDTH pixels (default: the first image's size)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        choices=[1, 3],
        help="folder datasets: 1 (grayscale) or 3 (RGB); default the first image's",
    )
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir, help="default: $DATA_DIR")
    parser.add_argument("--output-dir", type=Path, default=settings.models_dir, help="model store root")
    parser.add_argument(
        "--name",
        type=_store_name,
        help="store name, when not the architecture's (a second network that is not a new release of it)",
    )
    parser.add_argument(
        "--run-dir", type=Path, help="checkpoints and epoch log (default runs/<dataset>-<name or arch>)"
    )
    parser.add_argument("--version", type=int, help="version folder (default: next free)")
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        help="seed of the shuffle, the validation split, the initial weights and dropout",
    )
    parser.add_argument(
        "--split-seed", type=int, help="seed of the validation split alone (default: --seed); same images, new network"
    )
    parser.add_argument("--quick", action="store_true", help="512 train / 256 test images, one epoch")
    parser.add_argument("--resume", action="store_true", help="continue from the last backed-up epoch")
    parser.add_argument(
        "--steps-per-execution", type=int, default=1, help="training steps per call into the TensorFlow graph"
    )
    parser.add_argument(
        "--initial-weights", type=Path, help="start from a store version folder of this architecture or a .weights.h5"
    )
    parser.add_argument(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="export the mean of the probabilities of the image and its mirror image (CIFAR-10, Fashion-MNIST)",
    )
    parser.add_argument("--class-weight", type=_class_weight, help="'balanced' or JSON {index: weight}")
    recipe = parser.add_argument_group("recipe overrides (default: the architecture's recipe)")
    recipe.add_argument("--optimizer", choices=["adam", "sgd"], help="Adam, or SGD with --momentum")
    recipe.add_argument("--learning-rate", type=float, help="initial rate (default 1e-3 for Adam, 1e-2 for SGD)")
    recipe.add_argument("--momentum", type=float, help="SGD momentum")
    recipe.add_argument("--epochs", type=int, help="most epochs (early stopping may end sooner)")
    recipe.add_argument("--batch-size", type=int, help="images per step")
    recipe.add_argument(
        "--validation-split", type=float, help="fraction of the training images held out for validation"
    )
    recipe.add_argument(
        "--lr-schedule",
        choices=["plateau", "exponential", "none"],
        help="halve the rate when val_loss stalls, decay it every --decay-epochs, or keep it",
    )
    recipe.add_argument("--decay-epochs", type=float, help="exponential schedule: epochs per decay")
    recipe.add_argument("--decay-rate", type=float, help="exponential schedule: factor per decay")
    recipe.add_argument("--patience", type=int, help="early stopping patience; 0 disables it")
    recipe.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=None, help="augment the training images"
    )
    recipe.add_argument("--augmentation", choices=get_args(Augmentation), help="what --augment applies")
    recipe.add_argument("--dropout", type=float, help="dropout rate, where the architecture has one")
    recipe.add_argument("--l2", type=float, help="L2 weight, where the architecture has one")


def resolve_recipe(arch: str, overrides: dict[str, Any]) -> Recipe:
    """The architecture's recipe with every non-None override applied.

    Args:
        arch: Architecture name.
        overrides: Parsed flags or zoo-file keys (`epochs`, `batch_size`, `patience`, ...).
    """
    recipe = ARCHITECTURES[arch].recipe
    fields = {field.name for field in dataclasses.fields(Recipe)}
    changes = {key: value for key, value in overrides.items() if key in fields and value is not None}
    if overrides.get("patience") is not None:
        changes["early_stopping_patience"] = overrides["patience"] or None
    options = dict(recipe.options)
    for option in ("dropout", "l2"):
        if overrides.get(option) is not None:
            options[option] = overrides[option]
    return dataclasses.replace(recipe, **changes, options=options)


def run_training(args: argparse.Namespace, command: str) -> Path:
    """Load the data, train, evaluate and export one model; return its version folder."""
    from training.datasets import load_dataset
    from training.export import export_model, git_commit, next_version
    from training.runs import QUICK_TEST_IMAGES, QUICK_TRAIN_IMAGES, TrainConfig
    from training.train import train

    commit = git_commit()  # the code this run starts from
    dataset = load_dataset(args.dataset, args.data_dir, image_size=args.image_size, channels=args.channels)
    if args.quick:
        dataset = dataset.take(QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES, seed=args.seed)
    class_weight = args.class_weight
    if class_weight == "balanced":
        counts = [int((dataset.y_train == index).sum()) for index in range(dataset.num_classes)]
        total = sum(counts)
        class_weight = {index: total / (len(counts) * count) for index, count in enumerate(counts) if count}
    config = TrainConfig(
        arch=args.arch,
        recipe=resolve_recipe(args.arch, vars(args)),
        seed=args.seed,
        split_seed=args.split_seed,
        name=args.name,
        run_dir=args.run_dir or get_settings().runs_dir / f"{dataset.name}-{args.name or args.arch}",
        resume=args.resume,
        class_weight=class_weight,
        steps_per_execution=args.steps_per_execution,
        quick=args.quick,
        initial_weights=args.initial_weights,
        flip_average=args.flip_average,
    )
    version = args.version or next_version(args.output_dir, dataset.name, config.store_name)
    logger.info("training %s on %s (%s) -> %s v%d", args.arch, dataset.name, dataset.source, config.store_name, version)
    result = train(dataset, config)
    target = export_model(
        result,
        dataset,
        config,
        store_dir=args.output_dir,
        version=version,
        command=command,
        commit=commit,
        force=args.force,
    )
    test = result.metrics["test"]
    print(f"exported {target}: test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}")
    return target


def _epochs_and_time(item: dict[str, Any]) -> tuple[str, float]:
    """Epochs as `total` or `total (N here)` for a warm-started model, `-` for an ensemble,
    and total seconds (from `read_store`)."""
    total = item["total_epochs"]
    if item.get("members"):
        count = len(item["members"])
        epochs = f"- ({count} member{'s' if count > 1 else ''})"
    elif total == item["epochs_run"]:
        epochs = str(total)
    else:
        epochs = f"{total} ({item['epochs_run']} here)"
    return epochs, item["total_training_seconds"]


def _number(metrics: dict[str, Any], split: str, key: str, spec: str = ".4f") -> str:
    """A split's metric formatted, or `-` where the run did not measure it (an ensemble's training split)."""
    value = metrics.get(split, {}).get(key)
    return "-" if value is None else format(value, spec)


def print_leaderboard(models: Sequence[dict[str, Any]]) -> None:
    """Print models sorted by test accuracy with losses, accuracies, size and training time."""
    header = (
        f"{'dataset':<14}{'model':<14}{'v':>3}{'params':>12}"
        f"{'train acc':>11}{'val acc':>9}{'test acc':>10}{'train loss':>12}{'val loss':>10}{'test loss':>11}"
        f"{'epochs':>14}{'time s':>9}"
    )
    print(header)
    print("-" * len(header))
    for item in sorted(models, key=lambda m: (m["dataset"], -m["metrics"]["test"]["accuracy"])):
        metrics = item["metrics"]
        epochs, seconds = _epochs_and_time(item)
        print(
            f"{item['dataset']:<14}{item['arch']:<14}{item['version']:>3}{item['parameter_count']:>12,}"
            f"{_number(metrics, 'train', 'accuracy'):>11}{_number(metrics, 'val', 'accuracy'):>9}"
            f"{metrics['test']['accuracy']:>10.4f}{_number(metrics, 'train', 'loss'):>12}"
            f"{_number(metrics, 'val', 'loss'):>10}{metrics['test']['loss']:>11.4f}"
            f"{epochs:>14}{seconds:>9.0f}"
        )


TABLE_START, TABLE_END = "<!-- MODEL_TABLE -->", "<!-- /MODEL_TABLE -->"


def markdown_table(models: Sequence[dict[str, Any]]) -> str:
    """The leaderboard as a Markdown table (the table of docs/models.md)."""
    lines = [
        "| dataset | model | params | train acc | val acc | test acc | test loss | epochs | s/epoch | train time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for item in sorted(models, key=lambda m: (m["dataset"], -m["metrics"]["test"]["accuracy"])):
        metrics = item["metrics"]
        epochs, seconds = _epochs_and_time(item)
        lines.append(
            f"| {item['dataset']} | {item['arch']} v{item['version']} | {item['parameter_count']:,} "
            f"| {_number(metrics, 'train', 'accuracy')} | {_number(metrics, 'val', 'accuracy')} "
            f"| **{metrics['test']['accuracy']:.4f}** | {metrics['test']['loss']:.4f} | {epochs} "
            f"| {format(item['seconds_per_epoch'], '.0f') if item.get('seconds_per_epoch') else '-'} "
            f"| {seconds / 60:.1f} min |"
        )
    return "\n".join(lines) + "\n"


def write_table(path: Path, table: str) -> None:
    """Replace the text between the MODEL_TABLE markers of `path` with `table`.

    Raises:
        ValueError: `path` has no pair of markers.
    """
    text = path.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {TABLE_START} ... {TABLE_END} markers")
    path.write_text(text[: start + len(TABLE_START)] + "\n" + table + text[end:])


def run_zoo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Train every zoo-file entry matching `--only` that is not in the store yet."""
    entries = tomllib.loads(args.zoo_file.read_text())["model"]
    for entry in entries:
        name = f"{entry['dataset']}/{entry['arch']}"
        if args.only and not fnmatch.fnmatch(name, args.only):
            continue
        store_dir = args.output_dir
        if (store_dir / name).is_dir() and any((store_dir / name).glob("*/metadata.json")) and not args.force:
            print(f"skip {name}: already in {store_dir} (use --force to retrain)")
            continue
        argv = ["train", "--arch", entry["arch"], "--dataset", entry["dataset"], "--output-dir", str(store_dir)]
        for key, value in entry.items():
            flag = f"--{key.replace('_', '-')}"
            if key in ("arch", "dataset"):
                continue
            if isinstance(value, bool):
                argv.append(flag if value else f"--no-{key.replace('_', '-')}")
            else:
                argv += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
        if args.quick:
            argv.append("--quick")
        if args.force:
            argv.append("--force")
        train_args = parser.parse_args(argv)
        run_training(train_args, command="python -m training " + shlex.join(argv))


def _image_size(value: str) -> tuple[int, int]:
    """Parse `--image-size`: `64` or `48x64` (height x width), pixels."""
    try:
        sizes = [int(part) for part in value.lower().split("x")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {value!r}") from error
    if len(sizes) not in (1, 2) or min(sizes) < 8 or max(sizes) > 1024:
        raise argparse.ArgumentTypeError(f"expected 8 to 1024 pixels as SIZE or HEIGHTxWIDTH, got {value!r}")
    return (sizes[0], sizes[-1])


def _input_range(value: str) -> tuple[float, float]:
    """Parse `--input-range`: `LOW,HIGH`, e.g. `0,255`."""
    try:
        low, high = (float(part) for part in value.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH such as 0,1 or 0,255, got {value!r}") from error
    if not low < high:
        raise argparse.ArgumentTypeError(f"LOW must be below HIGH, got {value!r}")
    return low, high


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `import`."""
    settings = get_settings()
    parser.add_argument("path", type=Path, help="a .keras or .h5 file, or a SavedModel folder")
    parser.add_argument("--name", required=True, type=_store_name, help="the model's store name: model=DATASET/NAME")
    parser.add_argument(
        "--dataset",
        default="custom",
        type=_store_name,
        help="the store's dataset folder (default custom); mnist, fashion_mnist or cifar10 also give the class "
        "names, the preprocessing and the test split to measure it on",
    )
    classes = parser.add_mutually_exclusive_group()
    classes.add_argument("--classes", help="class names in class-index order, comma-separated (default 0..N-1)")
    classes.add_argument("--classes-file", type=Path, help="a file with one class name a line, in class-index order")
    parser.add_argument(
        "--preprocessing",
        choices=["mnist", "fashion_mnist", "cifar10", "resize"],
        help="how uploads become inputs (default: the dataset's recipe where it fits, else resize)",
    )
    parser.add_argument(
        "--input-range",
        type=_input_range,
        default=(0.0, 1.0),
        help="LOW,HIGH of the pixel values the model was trained on (default 0,1; 0,255 for raw pixels)",
    )
    parser.add_argument("--test-data", help="a dataset name or folder:PATH to measure test accuracy on")
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir, help="default: $DATA_DIR")
    parser.add_argument("--output-dir", type=Path, default=settings.models_dir, help="model store root")
    parser.add_argument("--version", type=int, help="version folder (default: next free)")
    parser.add_argument("--force", action="store_true", help="replace an existing version folder")


def run_import(args: argparse.Namespace, parser: argparse.ArgumentParser, *, command: str) -> None:
    """`python -m training import`: write the version, print what was done and the curl line to try it."""
    from training.importer import ImportError_, import_model

    class_names: list[str] | None
    if args.classes_file:
        class_names = [line.strip() for line in args.classes_file.read_text().splitlines() if line.strip()]
    else:
        class_names = [name.strip() for name in args.classes.split(",")] if args.classes else None
    try:
        folder, metadata, softmax = import_model(
            args.path,
            name=args.name,
            dataset=args.dataset,
            store_dir=args.output_dir,
            class_names=class_names,
            preprocessing=args.preprocessing,
            input_range=args.input_range,
            test_data=args.test_data,
            data_dir=args.data_dir,
            version=args.version,
            force=args.force,
            command=command,
        )
    except (ImportError_, FileExistsError, FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    height, width, channels = metadata.input_shape
    print(f"imported {args.path} as {metadata.model_id} v{metadata.version} in {folder}")
    names = ", ".join(metadata.class_names[:10]) + (" ..." if len(metadata.class_names) > 10 else "")
    print(f"  input {height}x{width}x{channels}, {len(metadata.class_names)} classes: {names}")
    print(f"  preprocessing {metadata.preprocessing}; inputs in [0, 1] scaled to {list(args.input_range)}")
    if softmax:
        print("  the model answers logits: a softmax was added to make probabilities")
    test = metadata.metrics.get("test")
    if test is not None:
        print(f"  test accuracy {test.accuracy:.4f} on {metadata.test_size} images ({args.test_data or args.dataset})")
    print("try it (the server picks new versions up within MODEL_POLL_SECONDS):")
    print(f"  curl -F image=@your_image.jpg 'http://127.0.0.1:8000/predict?model={metadata.model_id}'")


def make_parser() -> argparse.ArgumentParser:
    """The argument parser with the `train`, `import`, `compare`, `zoo`, `ensemble` and `report` subcommands."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_arguments(commands.add_parser("train", help="train one model and export it to the store"))
    compare = commands.add_parser("compare", help="leaderboard of the models in the store")
    compare.add_argument("--dataset", help="only this dataset's models")
    compare.add_argument("--markdown", action="store_true", help="print a Markdown table")
    compare.add_argument(
        "--write", type=Path, help="put the Markdown table between the MODEL_TABLE markers of this file"
    )
    compare.add_argument("--output-dir", type=Path, default=get_settings().models_dir, help="model store root")
    zoo = commands.add_parser("zoo", help="train every model of the zoo file missing from the store")
    zoo.add_argument("--only", help="glob on <dataset>/<arch>, e.g. 'fashion_mnist/*'")
    zoo.add_argument("--zoo-file", type=Path, default=ZOO_FILE, help="the models to train (default training/zoo.toml)")
    zoo.add_argument("--output-dir", type=Path, default=get_settings().models_dir, help="model store root")
    zoo.add_argument("--force", action="store_true", help="train again models already in the store")
    zoo.add_argument("--quick", action="store_true", help="quick mode for every model (tests)")
    ensemble = commands.add_parser("ensemble", help="export an ensemble of store models as one model")
    ensemble.add_argument("--dataset", default="mnist", help="the members' dataset")
    ensemble.add_argument("--members", required=True, help="comma-separated arch or arch:version, e.g. custom2,custom4")
    ensemble.add_argument("--weights", help="comma-separated weights, one per member (default equal)")
    ensemble.add_argument("--search", action="store_true", help="keep the subset most accurate on the validation split")
    ensemble.add_argument("--max-members", type=int, default=5, help="largest subset the search tries")
    ensemble.add_argument(
        "--translate",
        action="store_true",
        help="average each member over one-pixel translations too (airbench's test-time augmentation; "
        "3x the serving cost); one member is then enough",
    )
    ensemble.add_argument("--arch", default="ensemble", help="the store name of the ensemble")
    ensemble.add_argument("--version", type=int, help="version folder (default: next free)")
    ensemble.add_argument("--data-dir", type=Path, default=get_settings().data_dir, help="default: $DATA_DIR")
    ensemble.add_argument("--output-dir", type=Path, default=get_settings().models_dir, help="model store root")
    _add_import_arguments(
        commands.add_parser("import", help="put a Keras file or a SavedModel of your own in the store")
    )
    report = commands.add_parser("report", help="redraw history.png and confusion_matrix.png from metadata.json")
    report.add_argument("versions", nargs="+", type=Path, help="store version folders")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        run_training(args, command="python -m training " + shlex.join(argv))
    elif args.command == "compare":
        models = read_store(args.output_dir, args.dataset)
        if args.write:
            write_table(args.write, markdown_table(models))
        elif args.markdown:
            print(markdown_table(models), end="")
        else:
            print_leaderboard(models)
    elif args.command == "ensemble":
        from training.datasets import load_dataset
        from training.ensemble import make_ensemble

        try:
            make_ensemble(
                load_dataset(args.dataset, args.data_dir),
                args.members.split(","),
                store_dir=args.output_dir,
                arch=args.arch,
                weights=[float(value) for value in args.weights.split(",")] if args.weights else None,
                search=args.search,
                max_members=args.max_members,
                command="python -m training " + shlex.join(argv),
                version=args.version,
                translate=args.translate,
            )
        except (ValueError, FileNotFoundError) as error:
            parser.exit(1, f"error: {error}\n")
    elif args.command == "import":
        run_import(args, parser, command="python -m training " + shlex.join(argv))
    elif args.command == "report":
        from training.export import draw_reports

        for folder in args.versions:
            draw_reports(folder)
            print(f"redrew the reports of {folder}")
    else:
        run_zoo(args, parser)
    return 0
