"""The monitoring shipped in deploy/prometheus, checked with Prometheus' own promtool
(Debian's `prometheus` package): the configuration loads and the alerting rules fire as
their unit tests say. The rules' metric names are the ones the service exports."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from fastapi.testclient import TestClient

from tests.conftest import PROJECT_ROOT

PROMETHEUS = PROJECT_ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed (apt-get install prometheus; .ci/run installs it)")
    return subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def test_prometheus_configuration_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerting_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_metrics_the_service_exports(client: TestClient) -> None:
    client.post("/predict?model=tiny", files={"image": ("x", b"x")})  # every family has a sample
    exported = set(re.findall(r"^# TYPE (\S+)", client.get("/metrics").text, flags=re.MULTILINE))
    rules = (PROMETHEUS / "rules.yml").read_text()
    used = set(re.findall(r"\b((?:http|inference|model)_[a-z_]+)\{", rules))
    assert used
    for name in used:
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        assert family in exported or family.removesuffix("_total") in exported, name
