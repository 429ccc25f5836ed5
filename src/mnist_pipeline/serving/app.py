"""The HTTP app: ``POST /predict``, ``GET /health`` and the draw-a-digit page at ``GET /``.

``POST /predict`` takes one PNG or JPEG (the raw body or a multipart file field), preprocesses
it as ``predict`` does and answers the predicted class, the top 3 and every probability. A bad
request gets a 4xx and ``{"error": "one line"}``, never a 500. The page loads nothing from
elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from mnist_pipeline.core.errors import PipelineError, printable
from mnist_pipeline.serving.images import ImageError, decode_image, to_mnist
from mnist_pipeline.serving.model import Classifier

MAX_UPLOAD_BYTES = 2 * 2**20  # a drawing or a phone photo of one digit, resized
MAX_UPLOAD_PIXELS = 16_000_000
TOP = 3
IMAGE_TYPES = ("image/png", "image/jpeg")
STATUS = {"not-image": 415, "too-large": 413, "corrupt": 400, "blank": 422}
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_capped(chunks: AsyncIterator[bytes], declared: str | None) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed the limit."""
    limit = f"upload larger than {MAX_UPLOAD_BYTES:,} bytes; send a smaller image"
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise RequestError(413, limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_UPLOAD_BYTES:
            raise RequestError(413, limit)
    return bytes(body)


async def form_file(body: bytes, headers: Any) -> bytes:
    """The one file field of a ``multipart/form-data`` body."""

    async def replay() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, replay(), max_files=1, max_fields=8).parse()
    except MultiPartException as err:
        raise RequestError(400, f"unreadable multipart form ({err.message})") from err
    files = [value for _, value in form.multi_items() if not isinstance(value, str)]
    if len(files) != 1:
        raise RequestError(400, "send exactly one image file in the form")
    return await files[0].read()


def answer(classifier: Classifier, image: bytes) -> dict[str, Any]:
    """The model's answer for one uploaded image (``ImageError`` when it cannot be used)."""
    field = to_mnist(decode_image(image, "the upload", MAX_UPLOAD_PIXELS), "the upload")
    result = classifier.classify(["upload"], field[np.newaxis])[0]
    ranked = sorted(result["probabilities"].items(), key=lambda item: -item[1])
    return {
        "predicted": result["predicted"],
        "top": [{"class": name, "probability": p} for name, p in ranked[:TOP]],
        "probabilities": result["probabilities"],
    }


def create_app(classifier: Classifier, accuracy: float | None) -> FastAPI:
    """The FastAPI app over ``classifier``; ``accuracy``: the evaluate stage's, for /health."""
    app = FastAPI(title="mnist-pipeline model", docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("mnist_pipeline.serving") / "static"

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": classifier.model,
            "dataset": classifier.dataset,
            "accuracy": accuracy,
            "classes": list(classifier.classes),
        }

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        headers = request.headers
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if media not in (*IMAGE_TYPES, "multipart/form-data"):  # before reading the body
                raise RequestError(
                    415,
                    f"content type {printable(media) or 'missing'} is not accepted; send "
                    "image/png, image/jpeg or multipart/form-data with one image file",
                )
            image = await read_capped(request.stream(), headers.get("content-length"))
            if media == "multipart/form-data":
                image = await form_file(image, headers)
            result = await run_in_threadpool(answer, classifier, image)
        except RequestError as err:
            return error(err.status, str(err))
        except ImageError as err:
            return error(STATUS[err.kind], str(err))
        except PipelineError as err:
            return error(400, str(err))
        return JSONResponse(result)

    for name, media_type in STATIC.items():

        def page(body: bytes = (static / name).read_bytes(), media: str = media_type) -> Response:
            return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})

        path = "/" if name == "index.html" else f"/{name}"
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
    return app


def read_accuracy(text: str) -> float | None:
    """The ``accuracy`` of an eval.json text, or None when it has none."""
    try:
        value = json.loads(text).get("accuracy")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
