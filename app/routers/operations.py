"""`/metrics`: the service's Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app import metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def get_metrics() -> Response:
    """HTTP, inference, queue and model metrics in Prometheus' text format, over every worker process."""
    return Response(metrics.scrape(), media_type=metrics.CONTENT_TYPE_LATEST)
