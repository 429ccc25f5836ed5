"""The HTTP app: ``POST /predict``, ``GET /health``, the draw-a-digit page and ``/docs`` from
``static/`` (nothing loaded from elsewhere). A refusal is one line of JSON with its status."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.serving.images import ImageError, decode_image, to_mnist
from mnist_pipeline.serving.model import Classifier

MAX_UPLOAD_BYTES = 2 * 2**20  # a drawing or a phone photo of one digit, resized
TOO_LARGE = f"upload larger than {MAX_UPLOAD_BYTES:,} bytes; send a smaller image"
DECODERS = 2  # images decoded at once: this bounds the memory they take
IMAGE_TYPES = ("image/png", "image/jpeg")
STATUS = {"not-image": 415, "too-large": 413, "corrupt": 400, "blank": 422}
RAW_BODY = {"schema": {"type": "string", "format": "binary"}}  # besides the form, for the docs
Ranked = TypedDict("Ranked", {"class": str, "probability": float})


class Problem(TypedDict):
    error: str  # a refusal in one line: what is wrong, what to send instead


class Prediction(BaseModel):
    """The model's answer for one image (``predicted``: None when it is unsure)."""

    predicted: str | None
    top: list[Ranked]
    probabilities: dict[str, float]


def answer(classifier: Classifier, image: bytes) -> Prediction:
    """The model's answer for one uploaded image (``ImageError`` when it cannot be used)."""
    field = to_mnist(decode_image(image, "the upload"), "the upload")
    return Prediction(**classifier.classify(["upload"], field[np.newaxis])[0])


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def same_origin(request: Request, call_next: Callable) -> Response:
    """Refuses a Host not in ``app.state.hosts`` (DNS rebinding), a foreign Origin, a big body."""
    host = request.headers.get("host", "").lower()
    name, _, port = host.rpartition(":")
    length = request.headers.get("content-length", "0")
    if (name if port.isdigit() else host).strip("[]") not in request.app.state.hosts:
        return error(400, f"Host {host!r} is not this server")
    if request.headers.get("origin", f"http://{host}").lower() != f"http://{host}":
        return error(403, "requests from another site's page are refused")
    if length.isdigit() and int(length) > MAX_UPLOAD_BYTES:  # else Starlette's plain text
        return error(413, TOO_LARGE)
    return await call_next(request)


async def refused(_: Request, exc: Exception) -> JSONResponse:
    """A request that gets no answer: one line of JSON, with a status that says why."""
    match exc:
        case ImageError():
            return error(STATUS[exc.kind], str(exc))
        case HTTPException(status_code=413):  # the body limit's
            return error(413, TOO_LARGE)
        case HTTPException():
            return error(exc.status_code, str(exc.detail))
        case RequestValidationError():
            return error(400, "send the image as the form's file `image`")
        case MemoryError():
            return error(503, "out of memory; try again or send a smaller image")
        case ClientDisconnect():  # nobody reads the answer: one log line, no traceback
            logging.getLogger("uvicorn.error").warning("a client left mid-upload")
    return error(500, str(exc))  # a PipelineError: the model failed on this input


def create_app(classifier: Classifier, hosts: Sequence[str] = ("127.0.0.1",)) -> FastAPI:
    """The FastAPI app over ``classifier``, answering requests addressed to ``hosts``."""
    title = f"mnist-pipeline {classifier.model} ({classifier.dataset})"
    app = FastAPI(title=title, docs_url=None, redoc_url=None, form_limits={"max_files": 1})
    app.state.hosts = hosts
    app.middleware("http")(same_origin)
    decoders = anyio.CapacityLimiter(DECODERS)

    for kind in (HTTPException, RequestValidationError, PipelineError, MemoryError):
        app.add_exception_handler(kind, refused)
    app.add_exception_handler(ClientDisconnect, refused)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The served model, as its ONNX file's metadata describes it."""
        meta = {"model": classifier.model, "dataset": classifier.dataset}
        return {"status": "ok", **meta, "classes": classifier.classes}

    @app.post(
        "/predict",
        max_body_size=MAX_UPLOAD_BYTES,  # counted as a chunked body arrives
        responses={status: {"model": Problem} for status in (400, 403, 413, 415, 422, 503)},
        openapi_extra={"requestBody": {"content": {kind: RAW_BODY for kind in IMAGE_TYPES}}},
    )
    async def predict(request: Request, image: UploadFile | None = None) -> Prediction:
        """Classify one PNG or JPEG: the request's body, or the form's file ``image``."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == "multipart/form-data" and image is None:
            raise HTTPException(400, "send exactly one image file, as the form's file `image`")
        if media not in (*IMAGE_TYPES, "multipart/form-data"):
            raise HTTPException(
                415,
                f"content type {media or 'missing'} is not accepted; send "
                "image/png, image/jpeg or multipart/form-data with one image file",
            )
        data = await image.read() if image is not None else await request.body()
        return await anyio.to_thread.run_sync(answer, classifier, data, limiter=decoders)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=app.title,
            swagger_js_url="/swagger-ui-bundle.js",
            swagger_css_url="/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
            swagger_ui_parameters={"validatorUrl": None},  # no call to swagger.io
        )

    app.mount("/", StaticFiles(packages=[("mnist_pipeline.serving", "static")], html=True))
    return app
