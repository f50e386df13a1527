"""Schemathesis with every check, run as a user would, against a real server process:
no 5xx, and the OpenAPI description of all three protocols states what the server accepts.

`schemathesis.toml` (read from the project root) lists the statuses a schema-valid request
may still get: a random "binary" file is not an image (415), a random tensor has the
wrong shape (400).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_every_check_passes_on_every_protocol(live_server: str) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"http://{live_server}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "20261125",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "/v2/models/{name}/infer" in result.stdout or "20/20" in result.stdout
