"""`/metrics`, parsed with prometheus-client's own parser: the counters move as requests
are made, in one process and added up over several worker processes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DATA, serve, upload

SEVEN = (DATA / "7.png").read_bytes()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        number
        for (sample, sample_labels), number in scrape.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def test_counters_move_with_requests(client: TestClient) -> None:
    before = samples(client.get("/metrics").text)
    for _ in range(3):
        assert client.post("/predict?model=tiny", files=upload(SEVEN)).status_code == 200
    assert client.post("/predict?model=tiny", files=upload(b"not an image")).status_code == 415
    body = {"instances": [{"b64": "AAAA"}] * 100}
    assert client.post("/v1/models/mnist-tiny:predict", json=body).status_code == 413
    after = samples(client.get("/metrics").text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("http_requests_total", route="/predict", method="POST", status="200") == 3
    assert moved("http_requests_total", route="/predict", method="POST", status="415") == 1
    assert moved("http_requests_total", route="/v1/models/{name:model_name}:predict", status="413") == 1
    assert moved("http_request_duration_seconds_count", route="/predict", status="200") == 3
    assert moved("inference_batch_size_images_sum", model="mnist/tiny", version="2") == 3
    assert moved("inference_duration_seconds_count", model="mnist/tiny", version="2") >= 1
    assert moved("inference_queue_wait_seconds_count", model="mnist/tiny", version="2") == 3
    assert moved("inference_requests_rejected_total", model="mnist/tiny", reason="bad_input") == 2
    # Loaded by its first request at the latest (LOAD_ON_START; tests/service/test_store.py).
    assert value(after, "model_loaded", model="mnist/tiny", version="2") == 1
    assert value(after, "model_load_duration_seconds", model="mnist/tiny", version="2") > 0
    assert value(after, "build_info") == 1
    assert value(after, "inference_queue_depth_images", model="mnist/tiny", version="2") == 0


def test_metric_names_follow_prometheus_conventions(client: TestClient) -> None:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.type == "counter":
            assert all(sample.name.endswith(("_total", "_created")) for sample in family.samples), family.name
        if "duration" in family.name or "wait" in family.name:
            assert family.name.endswith("_seconds"), family.name


@pytest.mark.slow
def test_several_workers_add_up(tiny_store: Path, tmp_path: Path) -> None:
    with serve(tiny_store, "--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)) as (url, _):
        for _ in range(20):
            with httpx.Client() as fresh:  # a new connection each time, so both workers serve
                assert fresh.post(f"http://{url}/predict?model=tiny", files=upload(SEVEN)).status_code == 200
        for _ in range(4):
            with httpx.Client() as fresh:
                scrape = samples(fresh.get(f"http://{url}/metrics").text)
            assert value(scrape, "http_requests_total", route="/predict", status="200") == 20
            assert value(scrape, "model_loaded", model="mnist/tiny", version="2") == 1


def test_opentelemetry_spans_only_when_asked(tiny_store: Path) -> None:
    """FastAPI's own OpenTelemetry instrumentation is off unless `OPENTELEMETRY` asks for
    it, even with an SDK configured (then it costs every request a look-up of the
    providers); asked for, it records a span per request."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from app.config import Settings
    from app.main import create_app

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    spans = {}
    for enabled in (False, True):
        exporter.clear()
        with TestClient(create_app(Settings(models_dir=tiny_store, opentelemetry=enabled))) as test_client:
            assert test_client.post("/predict?model=tiny", files=upload(SEVEN)).status_code == 200
        spans[enabled] = [span.name for span in exporter.get_finished_spans()]
    assert spans[False] == []
    assert any("/predict" in name for name in spans[True]), spans[True]
