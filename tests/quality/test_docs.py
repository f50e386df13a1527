"""The docs say what is: the model table is the store's, the files and scripts they name
exist, and no page is a journal (dated headings, issue numbers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, STORE
from training.cli import markdown_table
from training.store import read_store

PAGES = sorted([PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").glob("*.md")])


def test_the_model_table_is_the_stores() -> None:
    text = (PROJECT_ROOT / "docs" / "models.md").read_text()
    table = re.search(r"<!-- MODEL_TABLE -->\n(.*?)<!-- /MODEL_TABLE -->", text, flags=re.DOTALL)
    assert table is not None
    assert table.group(1) == markdown_table(read_store(STORE)), "python -m training compare --write docs/models.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_no_page_is_a_journal(page: Path) -> None:
    text = page.read_text()
    assert not re.findall(r"^#+ .*\b20\d\d-\d\d-\d\d", text, flags=re.MULTILINE), "a dated heading"
    assert not re.findall(r"\b[Ii]ssues? #?\d+", text), "an issue number"


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_the_paths_a_page_names_exist(page: Path) -> None:
    named = set(
        re.findall(
            r"`((?:app|benchmarks|scripts|tools|training|tests|deploy|modelstore)/[\w./-]+\.\w+)`", page.read_text()
        )
    )
    missing = sorted(path for path in named if not (PROJECT_ROOT / path).exists())
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_the_store_counts_the_docs_quote_are_the_stores() -> None:
    from modelstore import version_folders

    versions = list(version_folders(STORE))
    models = {(dataset, arch) for dataset, arch, _, _ in versions}
    readme = (PROJECT_ROOT / "README.md").read_text()
    quoted = re.search(r"The store holds (\d+) versions of (\d+) models", readme)
    assert quoted is not None and (int(quoted.group(1)), int(quoted.group(2))) == (len(versions), len(models))
    performance = (PROJECT_ROOT / "docs" / "performance.md").read_text()
    assert f"{len(versions)} versions of which {len(models)} served" in performance
