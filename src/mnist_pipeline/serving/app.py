"""The HTTP app: ``POST /predict``, ``GET /health`` and the draw-a-digit page at ``GET /``.

``POST /predict`` takes one PNG or JPEG, as the raw body or a ``multipart/form-data`` file
field, preprocesses it as ``predict`` does (``serving.images``) and answers the predicted
class, the top 3 and every class's probability. A bad request gets a 4xx and one line of
JSON ``{"error": "..."}``, never a 500; a body over ``MAX_UPLOAD_BYTES`` is read no further.
The page, its script and style ship in ``static/`` and load nothing from elsewhere.
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

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.serving.images import ImageError, decode_image, printable, to_mnist
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
    """A bad request: its HTTP status and one line for the client."""

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


async def uploaded_image(content_type: str, body: bytes, headers: Any) -> bytes:
    """The image bytes of a raw image body or of a multipart form's one file field."""
    media = content_type.split(";")[0].strip().lower()
    if media in IMAGE_TYPES:
        return body
    if media == "multipart/form-data":

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
    raise RequestError(
        415,
        f"content type {printable(media) or 'missing'} is not accepted; send image/png, "
        "image/jpeg or multipart/form-data with one image file",
    )


def answer(classifier: Classifier, image: bytes) -> dict[str, Any]:
    """The model's answer for one uploaded image (``ImageError`` when it cannot be used)."""
    gray = decode_image(image, "the upload", MAX_UPLOAD_PIXELS)
    field = to_mnist(gray, "the upload")
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
    pages = {name: (static / name).read_bytes() for name in STATIC}

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
        try:
            headers = request.headers
            content_type = headers.get("content-type", "")
            media = content_type.split(";")[0].strip().lower()
            if media not in (*IMAGE_TYPES, "multipart/form-data"):  # before reading the body
                await uploaded_image(content_type, b"", headers)
            body = await read_capped(request.stream(), headers.get("content-length"))
            image = await uploaded_image(content_type, body, headers)
            result = await run_in_threadpool(answer, classifier, image)
        except RequestError as err:
            return error(err.status, str(err))
        except ImageError as err:
            return error(STATUS[err.kind], str(err))
        except PipelineError as err:
            return error(400, str(err))
        return JSONResponse(result)

    for name, media_type in STATIC.items():
        path = "/" if name == "index.html" else f"/{name}"

        def page(body: bytes = pages[name], media: str = media_type) -> Response:
            return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})

        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
    return app


def read_accuracy(text: str) -> float | None:
    """The ``accuracy`` of an eval.json text, or None when it has none."""
    try:
        value = json.loads(text).get("accuracy")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
