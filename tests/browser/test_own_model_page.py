"""The page with a model of your own: imported by `python -m training import` (a non-square,
3-channel Keras model this project did not train), listed in the picker with its class
names, classifying an upload, showing its model's-eye view at its own size and explaining
it; in a real browser over a real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser.test_page import CHROMIUM, browser, page, shoot  # noqa: F401 (fixtures)
from tests.conftest import export_tiny_model, serve
from tests.service.test_own_models import brightness_model
from training.cli import main as training_cli

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium, or set CHROMIUM)"),
]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("own-page")
    brightness_model((24, 40, 3), softmax=False).save(folder / "bright.keras")
    store = folder / "store"
    export_tiny_model(store, "mnist")
    argv = ["import", str(folder / "bright.keras"), "--dataset", "pets", "--name", "bright"]
    assert training_cli([*argv, "--classes", "dark,bright", "--output-dir", str(store)]) == 0
    with serve(store) as (url, _):
        yield f"http://{url}"


def test_an_imported_model_classifies_and_explains_on_the_page(
    page: sync_api.Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    page.goto("/")
    sync_api.expect(page.locator("#model")).to_be_enabled()
    page.locator("#model").select_option("pets/bright")
    sync_api.expect(page.locator("#model-info")).to_contain_text("dark, bright")
    sync_api.expect(page.locator("#draw-panel")).to_be_hidden()
    photo = tmp_path / "light.jpg"
    Image.fromarray(np.full((90, 120, 3), 235, np.uint8)).save(photo)
    page.locator("#file").set_input_files(photo)
    sync_api.expect(page.locator("#top")).to_contain_text("bright (")
    seen = page.locator("#model-input")
    sync_api.expect(seen).to_be_visible()
    assert seen.evaluate("image => [image.naturalWidth, image.naturalHeight]") == [40, 24]
    sync_api.expect(page.locator("#seen-size")).to_contain_text("40x24")
    page.locator("#why-button").click()
    sync_api.expect(page.locator("#why-caption")).to_contain_text("probability of bright")
    shoot(page, "own-model")
