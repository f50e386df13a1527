"""The JSON response of the prediction routes and of every error."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json
from starlette.responses import JSONResponse as StarletteJSONResponse

__all__ = ["JSONResponse"]


class JSONResponse(StarletteJSONResponse):
    """A JSON response rendered by pydantic-core's serializer (Rust) instead of `json.dumps`.

    A prediction's answer (a dict of ten classes with their names and probabilities) is
    rendered several times faster (docs/performance.md), as the same JSON as Starlette's:
    UTF-8, no spaces, floats in their shortest form that reads back to the same value
    (`1e-8` where `json.dumps` writes `1e-08`). A NaN or an infinity, which JSON has no way
    to write, becomes `null` (the pipeline refuses non-finite probabilities before then).
    """

    def render(self, content: Any) -> bytes:
        """`content` (dicts, lists, str, int, float, bool, None) as UTF-8 JSON bytes."""
        return to_json(content, inf_nan_mode="null")
