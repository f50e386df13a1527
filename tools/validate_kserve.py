"""Validate KServe resources against the models of KServe's Python SDK, strictly.

The SDK (`kserve` on PyPI) carries one generated class per KServe API type
(`V1beta1InferenceService`, `V1beta1PredictorSpec`, ...), and takes the Kubernetes types
inside them (`V1Container`, `V1Probe`, ...) from the `kubernetes` client. Each class lists
its fields (`attribute_map`: Python name -> manifest key) and their types
(`openapi_types`: `str`, `int`, `list[V1Container]`, `dict(str, str)`, a class name).
Every key of a manifest must be a field of its type, every value of that type, all the
way down; then the SDK builds the object (its own checks of required fields and enums).

The SDK needs protobuf < 7 and cannot join the service's locked environment, so it runs
from a virtual environment of its own, which `scripts/kserve-validate.sh` makes and then
runs this with (CI runs it as a step of its own):

    bash scripts/kserve-validate.sh

Exits 1 and prints each problem (file, path, what is wrong) if any manifest fails.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import kserve
import kubernetes.client
import yaml

API_VERSIONS = {"InferenceService": ("serving.kserve.io/v1beta1", "V1beta1InferenceService")}
NATIVE = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}
QUANTITY = ("ResourceQuantity", "Quantity")
LIST = re.compile(r"(?:list|List)\[(.+)\]")
MAPPING = re.compile(r"(?:dict\(str, (?P<a>.+)\)|Dict\[str, (?P<b>.+)\])")


def model_class(name: str) -> type:
    """The SDK class of a type name, from kserve's models or the Kubernetes client's."""
    for module in (kserve, kubernetes.client):
        found = getattr(module, name, None)
        if isinstance(found, type):
            return found
    raise LookupError(f"no SDK type {name}")


def check(value: Any, type_name: str, path: str) -> list[str]:
    """Problems of `value` against the SDK type `type_name` (empty if it conforms)."""
    if value is None:
        return []
    if match := LIST.fullmatch(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [problem for index, item in enumerate(value) for problem in check(item, match[1], f"{path}[{index}]")]
    if match := MAPPING.fullmatch(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        return [
            problem for key, item in value.items() for problem in check(item, match["a"] or match["b"], f"{path}.{key}")
        ]
    if type_name in QUANTITY:
        return [] if isinstance(value, (str, int, float)) else [f"{path}: expected a quantity, got {value!r}"]
    if type_name in NATIVE:
        expected = NATIVE[type_name]
        if isinstance(value, bool) and type_name != "bool":
            return [f"{path}: expected {type_name}, got a boolean"]
        return [] if isinstance(value, expected) else [f"{path}: expected {type_name}, got {value!r}"]
    cls = model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} mapping, got {type(value).__name__}"]
    fields = {key: attribute for attribute, key in cls.attribute_map.items()}
    problems = [f"{path}.{key}: not a field of {type_name}" for key in value if key not in fields]
    for key, item in value.items():
        if key in fields:
            problems += check(item, cls.openapi_types[fields[key]], f"{path}.{key}")
    return problems


def build(value: Any, type_name: str) -> Any:
    """The SDK object for a conforming manifest value (runs the SDK's own validation)."""
    if value is None or type_name in NATIVE or type_name in QUANTITY:
        return value
    if match := LIST.fullmatch(type_name):
        return [build(item, match[1]) for item in value]
    if match := MAPPING.fullmatch(type_name):
        return {key: build(item, match["a"] or match["b"]) for key, item in value.items()}
    cls = model_class(type_name)
    fields = {key: attribute for attribute, key in cls.attribute_map.items()}
    return cls(**{fields[key]: build(item, cls.openapi_types[fields[key]]) for key, item in value.items()})


def validate(path: Path) -> list[str]:
    """Problems of every KServe resource in one YAML file."""
    problems = []
    for index, document in enumerate(yaml.safe_load_all(path.read_text())):
        where = f"{path}[{index}]"
        kind = document.get("kind") if isinstance(document, dict) else None
        if kind not in API_VERSIONS:
            problems.append(f"{where}: kind {kind!r} is not a KServe resource this tool knows")
            continue
        api_version, type_name = API_VERSIONS[kind]
        if document.get("apiVersion") != api_version:
            problems.append(f"{where}: apiVersion {document.get('apiVersion')!r}, expected {api_version}")
        found = check(document, type_name, where)
        if not found:
            try:
                build(document, type_name)
            except (ValueError, TypeError) as error:
                found = [f"{where}: the SDK refuses it: {error}"]
        problems += found
    return problems


def main(paths: list[str]) -> int:
    problems = [problem for path in paths for problem in validate(Path(path))]
    for problem in problems:
        print(problem)
    print(f"kserve {metadata.version('kserve')}: {len(paths)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
