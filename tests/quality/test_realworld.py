"""The accuracy regression gate (`tests/quality/gate.py`): no kind of upload reads worse than
its recorded floor, for the default models and custom2, through the real app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmarks.realworld import DIGITS
from tests.quality.gate import ENTRIES, FLOORS, measure, regressions, table

pytestmark = pytest.mark.slow


def test_the_real_world_digit_splits_are_labelled_and_apart() -> None:
    splits = {name: sorted((DIGITS / name).glob("*.*")) for name in ("tune", "test")}
    for files in splits.values():
        assert len(files) >= 500
        assert {int(path.name[0]) for path in files} == set(range(10))
    kinds = [{path.stem.split("_")[1] for path in files} for files in splits.values()]
    assert kinds[0] == kinds[1] and len(kinds[0]) >= 10
    contents = [{path.read_bytes() for path in files} for files in splits.values()]
    assert not contents[0] & contents[1], "an image is in both splits"


def test_every_gated_entry_has_floors() -> None:
    floors = json.loads(FLOORS.read_text())
    assert set(floors) == set(ENTRIES)
    for values in floors.values():
        assert "all" in values and len(values) >= 4


def test_a_drop_beyond_the_allowance_is_reported() -> None:
    floors = {"tight": 0.90, "scan": 0.90, "all": 0.95}
    assert regressions(floors, {"tight": 0.88, "scan": 0.90, "all": 0.945}) == []
    assert regressions(floors, {"tight": 0.86, "scan": 0.90, "all": 0.95}) == ["tight"]
    assert regressions(floors, {"tight": 0.90, "scan": 0.90, "all": 0.93}) == ["all"]


@pytest.mark.parametrize("name", list(ENTRIES))
def test_accuracy_per_kind_holds_its_floor(shipped_client: TestClient, data_dir: Path, name: str) -> None:
    floors = json.loads(FLOORS.read_text())[name]
    measured = measure(shipped_client, ENTRIES[name], data_dir)
    failed = regressions(floors, measured)
    assert not failed, f"{name}: {', '.join(failed)} fell below the floor\n{table(floors, measured)}"
