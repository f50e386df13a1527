"""`POST /explain`: why the model chose a class, as an attribution map over its input.

The same inputs and model selection as `/predict`; the image goes through the same pipeline
(limits, preprocessing, batching), then the map is computed from the served SavedModel
(`app.inference.explain`: integrated gradients, or occlusion where the signature has no
gradient) in a worker thread. Explanations have their own bounds, so they cannot crowd out
`/predict`: `EXPLAIN_MAX_IMAGES` images a request, `EXPLAIN_MAX_IN_FLIGHT` computing at once
per worker (503 past it, at once), `EXPLAIN_TIMEOUT_SECONDS` of computing (504). TF
Serving's `:explain` and an Open Inference Protocol route are not offered.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from app import metrics
from app.deps import ModelParameters, TimeoutHeader, deadline_after, registry_of, settings_of
from app.errors import BadRequest, DeadlineExceeded, Overloaded, PayloadTooLarge, ServiceError
from app.inference import encode_model_input
from app.inference.explain import Method, explain, overlay_png
from app.middleware import admitted
from app.routers.predict import ERROR_RESPONSES, OPENAPI_EXTRA, PreprocessMethod, make_prediction, read_images
from app.schemas import ClassProbability
from app.security import require_api_key

router = APIRouter(tags=["predict"])


class ExplainParameters(ModelParameters):
    """The query of `POST /explain`."""

    class_index: int | None = Field(default=None, ge=0, description="the class to explain (default: the predicted one)")
    method: Method = Field(
        default="integrated_gradients",
        description="`integrated_gradients` (falls back to `occlusion` for a signature without gradients) or "
        "`occlusion`",
    )
    steps: int = Field(default=50, ge=4, le=200, description="integration steps of integrated gradients")
    preprocess: PreprocessMethod = Field(default="auto", description="as for /predict")


class ExplainResponse(BaseModel):
    """A prediction and the attribution map of one class."""

    model_config = {"protected_namespaces": ()}

    model: str = Field(examples=["mnist/custom2"])
    version: int
    preprocessing: str
    class_index: int = Field(description="the predicted class")
    class_name: str
    confidence: float
    probabilities: list[ClassProbability]
    explained_class_index: int
    explained_class_name: str
    method: Literal["integrated_gradients", "occlusion"]
    baselines: list[str] = Field(description="reference images: `black` and `blurred` (the input blurred)")
    steps: int = Field(description="integration steps, or occluded patches")
    completeness: list[float] | None = Field(
        None,
        description="integrated gradients: [sum of the map, probability at the input less at the baselines]; "
        "close when the integration is accurate",
    )
    attribution: list[list[float]] = Field(
        description="H x W at the model's input size, signed: positive where pixels raised the class's probability"
    )
    overlay: str = Field(description="PNG (base64) of the map over the model's input: red raised, blue lowered")
    model_input: str = Field(description="PNG (base64) of what the model received")


class _Bound:
    """Explanations computing in this worker, at most `limit` at once."""

    def __init__(self) -> None:
        self.computing = 0


_BOUND = _Bound()


EXPLAIN_SHARE = 0.2
"""While predictions are in flight, the share of its time an explanation computes: after a
batch of its path that took t seconds it waits t * (1 / share - 1), so `/predict` keeps
about four fifths of the CPU an explanation would take from it."""


def _pacing(admission: Any, timeout: float) -> Callable[[], None]:
    """The `check` an explanation calls between batches of its path (in its worker thread):
    it raises `DeadlineExceeded` after `timeout` seconds, and while any request other than
    the explanations is in flight (`admission.in_flight`) it waits so that the explanation
    computes `EXPLAIN_SHARE` of the time; alone, it runs at full speed."""
    stop_at = time.monotonic() + timeout
    last = [time.monotonic()]

    def check() -> None:
        now = time.monotonic()
        if admission is not None and admission.in_flight > _BOUND.computing:
            time.sleep(min((now - last[0]) * (1 / EXPLAIN_SHARE - 1), max(0.0, stop_at - now)))
        if time.monotonic() > stop_at:
            raise DeadlineExceeded(f"the explanation took over {timeout:g} s (EXPLAIN_TIMEOUT_SECONDS)")
        last[0] = time.monotonic()

    return check


@router.post(
    "/explain",
    dependencies=[Depends(require_api_key)],
    response_model=ExplainResponse,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "parameters": [*ExplainParameters.openapi(), *TimeoutHeader.openapi()],
        "requestBody": OPENAPI_EXTRA["requestBody"],
    },
    summary="Explain a prediction",
)
@admitted
async def explain_prediction(request: Request) -> ExplainResponse:
    """Classify one image (the inputs of `/predict`) and explain one class: which pixels
    raised or lowered its probability (integrated gradients, Sundararajan et al. 2017; or
    occlusion, Zeiler and Fergus 2014)."""
    query = ExplainParameters.of(request)
    settings = settings_of(request)
    served = registry_of(request).get(query.model, dataset=query.dataset, version=query.version)
    images = await read_images(request, settings.body_limits)
    if len(images) > settings.explain_max_images:
        raise PayloadTooLarge(
            f"{len(images)} images; /explain takes at most {settings.explain_max_images} (EXPLAIN_MAX_IMAGES)"
        )
    if query.class_index is not None and query.class_index >= len(served.class_names):
        raise BadRequest(f"class_index {query.class_index}: {served.model_id} has {len(served.class_names)} classes")
    outcome = "bad_input"
    try:
        if _BOUND.computing >= settings.explain_max_in_flight:
            outcome = "overloaded"
            raise Overloaded(f"{_BOUND.computing} explanations computing (EXPLAIN_MAX_IN_FLIGHT); retry shortly")
        _BOUND.computing += 1
        try:
            result = await served.classify(
                images,
                preprocessing=None if query.preprocess == "auto" else query.preprocess,
                deadline=deadline_after(request),
                disconnected=request.receive,
            )
            prediction = make_prediction(result.probabilities[0], served.class_names, None)
            explained = prediction["class_index"] if query.class_index is None else query.class_index
            check = _pacing(registry_of(request).admission, settings.explain_timeout_seconds)

            started = time.perf_counter()
            found = await anyio.to_thread.run_sync(
                lambda: explain(
                    served, result.inputs[0], explained, method=query.method, steps=query.steps, check=check
                )
            )
        finally:
            _BOUND.computing -= 1
        metrics.EXPLAIN_DURATION.labels(served.model_id, found.method).observe(time.perf_counter() - started)
        outcome = "ok"
    except ServiceError as error:
        outcome = {503: "overloaded", 504: "deadline_exceeded"}.get(error.status, "bad_input")
        if error.status >= 500 and outcome == "bad_input":
            outcome = "failed"
        raise
    finally:
        metrics.EXPLANATIONS.labels(served.model_id, query.method, outcome).inc()
    return ExplainResponse(
        model=served.model_id,
        version=served.version,
        preprocessing=result.preprocessing,
        **prediction,
        explained_class_index=explained,
        explained_class_name=served.class_names[explained],
        method=found.method,
        baselines=list(found.baselines),
        steps=found.steps,
        completeness=list(found.completeness) if found.completeness else None,
        attribution=found.attribution.tolist(),
        overlay=base64.b64encode(overlay_png(result.inputs[0], found.attribution)).decode("ascii"),
        model_input=base64.b64encode(encode_model_input(result.inputs[0])).decode("ascii"),
    )
