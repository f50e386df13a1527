"""The deployment manifests: every core Kubernetes object validates strictly against a
current Kubernetes schema (kubernetes-validate), and probes, ports, paths, users, timeouts and
settings agree with the app and the image."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app import __version__
from app.config import Settings
from app.main import create_app
from tests.conftest import PROJECT_ROOT, STORE

K8S = PROJECT_ROOT / "deploy" / "k8s"
KSERVE = PROJECT_ROOT / "deploy" / "kserve"
KUBERNETES_VERSION = "1.34.0"


def documents(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) of every YAML document in `folder` except kustomization.yaml."""
    found = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(path.name, item) for item in yaml.safe_load_all(path.read_text()) if item]
    return found


def route_paths() -> set[str]:
    from app.middleware import api_routes

    return {route.path for route in api_routes(create_app(Settings(models_dir=STORE)).routes)}


@pytest.mark.parametrize(
    ("name", "manifest"), documents(K8S), ids=lambda value: value if isinstance(value, str) else ""
)
def test_core_objects_validate_strictly(name: str, manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_cpu_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    unlisted = {"kustomization.yaml", "deployment-gpu.yaml", "secret.example.yaml"}  # keys are the user's own
    assert listed == {path.name for path in K8S.glob("*.yaml")} - unlisted
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert not any(example["stringData"].values())  # no key ships with the project


@pytest.mark.parametrize("file", ["deployment.yaml", "deployment-gpu.yaml"])
def test_deployment_agrees_with_the_app_and_the_image(file: str) -> None:
    deployment = yaml.safe_load((K8S / file).read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    paths = route_paths()
    port = container["ports"][0]
    assert port["containerPort"] == 8000 and "PORT=8000" in (PROJECT_ROOT / "Dockerfile").read_text()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert "USER 10001" in (PROJECT_ROOT / "Dockerfile").read_text()
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # writable scratch and metrics
    config = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = float(config["DRAIN_SECONDS"]) + float(config["GRACEFUL_SHUTDOWN_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain
    memory = container["resources"]["requests"]["memory"]
    assert int(re.match(r"(\d+)Mi", memory).group(1)) >= 1400  # a worker with every model: 1,380 MiB resident
    assert container["image"] == f"classifier:{__version__}" + ("-gpu" if "gpu" in file else "")
    if file == "deployment-gpu.yaml":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


SYSTEM_VARIABLES = {
    "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "TF_CPP_MIN_LOG_LEVEL", "PROMETHEUS_MULTIPROC_DIR",
    "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK",
}  # fmt: skip
"""Variables read by Python, pip, TensorFlow or prometheus-client themselves, not by our settings."""


def known_settings() -> set[str]:
    """Every environment variable the service reads: the app's `Settings` and the serve
    command's options (each option's help names its variable)."""
    from app.serve import parser

    options = set(re.findall(r"\(([A-Z_]+)\)", parser().format_help()))
    return {name.upper() for name in Settings.model_fields} | options | SYSTEM_VARIABLES


def named_settings() -> dict[str, set[str]]:
    """The environment variables each deployment file sets or documents: the Dockerfile's
    ENV and `-e`, the ConfigMap and Secret keys, README's and docs/deployment.md's `-e NAME=`,
    and the first column of README's configuration table."""
    found: dict[str, set[str]] = {}
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    env_block = re.findall(r"^ENV (.*?)(?:\n\n|\Z)", dockerfile, flags=re.MULTILINE | re.DOTALL)
    found["Dockerfile"] = set(re.findall(r"([A-Z][A-Z0-9_]+)=", " ".join(env_block))) | set(
        re.findall(r"-e ([A-Z][A-Z0-9_]+)=", dockerfile)
    )
    found["configmap.yaml"] = set(yaml.safe_load((K8S / "configmap.yaml").read_text())["data"])
    found["secret.example.yaml"] = set(yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"])
    readme = (PROJECT_ROOT / "README.md").read_text()
    found["README.md"] = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, flags=re.MULTILINE)) | set(
        re.findall(r"-e ([A-Z][A-Z0-9_]+)=", readme)
    )
    for path in (PROJECT_ROOT / "docs" / "deployment.md", PROJECT_ROOT / "scripts" / "container-test.sh"):
        found[path.name] = set(re.findall(r"-e ([A-Z][A-Z0-9_]+)=", path.read_text()))
    return found


def test_every_setting_named_in_readme_deploy_and_the_dockerfile_is_read() -> None:
    known = known_settings()
    named = named_settings()
    assert named["Dockerfile"] >= {"HOST", "PORT", "MODELS_DIR"} and len(named["README.md"]) > 20
    unknown = {file: sorted(names - known) for file, names in named.items() if names - known}
    assert not unknown, f"settings the service does not read: {unknown}"


def test_a_misspelt_setting_would_be_caught() -> None:
    assert "UVICORN_WORKERS" not in known_settings()
    assert {"WORKERS", "PORT", "GRACEFUL_SHUTDOWN_SECONDS", "MAX_UPLOAD_BYTES"} <= known_settings()


def test_configmap_values_are_valid_settings() -> None:
    config = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    Settings(**{key.lower(): value for key, value in config.items() if key.lower() in Settings.model_fields
                and key != "MODELS_DIR"})  # fmt: skip


def test_kserve_custom_predictor_speaks_v2_on_the_apps_routes() -> None:
    (service,) = yaml.safe_load_all((KSERVE / "inferenceservice-v2.yaml").read_text())
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    (container,) = service["spec"]["predictor"]["containers"]
    paths = route_paths()
    assert container["readinessProbe"]["httpGet"]["path"] in paths
    assert container["livenessProbe"]["httpGet"]["path"] in paths
    assert "/v2/models/{name}/infer" in paths
    assert container["ports"][0]["containerPort"] == 8000


def test_kserve_tensorflow_runtime_reads_a_store_folder_as_it_is() -> None:
    (service,) = yaml.safe_load_all((KSERVE / "inferenceservice-tensorflow.yaml").read_text())
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    folder = STORE / "/".join(model["storageUri"].rstrip("/").split("/")[-2:])
    versions = [path for path in folder.iterdir() if path.name.isdigit()]
    assert versions and all((path / "saved_model.pb").is_file() for path in versions)


KSERVE_VENV = PROJECT_ROOT / "build" / "kserve-venv" / "bin" / "python"


@pytest.mark.skipif(not KSERVE_VENV.exists(), reason="KServe's SDK is installed by scripts/kserve-validate.sh")
def test_kserve_sdk_validation_catches_a_broken_manifest(tmp_path: Path) -> None:
    (service,) = yaml.safe_load_all((KSERVE / "inferenceservice-v2.yaml").read_text())
    tool = [str(KSERVE_VENV), str(PROJECT_ROOT / "tools" / "validate_kserve.py")]
    good = subprocess.run([*tool, *map(str, sorted(KSERVE.glob("*.yaml")))], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout
    service["spec"]["predictor"]["minReplicas"] = "two"
    service["spec"]["predictor"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 8000
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(service))
    result = subprocess.run([*tool, str(broken)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "minReplicas: expected int" in result.stdout
    assert "httpGet.prot: not a field of V1HTTPGetAction" in result.stdout
