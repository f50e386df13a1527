"""`FPMATH_MODE=bf16` (oneDNN's bfloat16 math) in a real server process, against float32."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from tests.conftest import DATA, STORE, serve, upload

DIGITS = sorted((DATA / "mnist_test").glob("*.png"))[:20]


def _cpu_has_amx() -> bool:
    """Whether this CPU has AMX's bfloat16 tiles, where oneDNN's bf16 mode was seen to take
    effect. On an AMD EPYC with AVX512-BF16 and no AMX it kept its float32 kernels
    (`ONEDNN_VERBOSE=1`: `brg_conv_fwd:avx512_core`; docs/performance.md)."""
    return "amx_bf16" in Path("/proc/cpuinfo").read_text().split()


def _probabilities(store: Path, **env: str) -> np.ndarray:
    """float32 (20, 10): custom2's probabilities of the first 20 test digits from a server with `env`."""
    rows = []
    with serve(store, **env) as (url, _):
        for path in DIGITS:
            response = httpx.post(f"http://{url}/predict?model=custom2", files=upload(path), timeout=30)
            assert response.status_code == 200, response.text
            rows.append([item["probability"] for item in response.json()["probabilities"]])
    return np.array(rows, dtype=np.float32)


def test_bf16_math_keeps_every_class_and_probabilities_within_two_hundredths(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "mnist").mkdir(parents=True)
    (store / "mnist" / "custom2").symlink_to(STORE / "mnist" / "custom2")
    strict = _probabilities(store, FPMATH_MODE="strict")
    bf16 = _probabilities(store, FPMATH_MODE="bf16")
    labels = [int(path.stem.split("_")[1]) for path in DIGITS]
    assert strict.argmax(axis=1).tolist() == labels
    assert bf16.argmax(axis=1).tolist() == labels
    difference = float(np.abs(strict - bf16).max())
    assert difference < 0.02
    if _cpu_has_amx():
        assert difference > 0  # the mode took effect in the server process
