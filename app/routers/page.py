"""`/`: the page people try the models on, served from `app/static/` (no CDN, no build step).

One HTML file, one script and one stylesheet: a model picker fed by `/models`, a canvas to
draw digits on, file upload, drag and drop and paste, the probabilities as a bar chart, what
the model received (`/predict?include_input=true`), and a page per model with its metadata
and training reports (`#/models/<dataset>/<arch>`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"


def install(app: FastAPI) -> None:
    """Serve the page at `/` and its script and stylesheet under `/static/`."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")
