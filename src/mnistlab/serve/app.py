"""The FastAPI application: the page, `GET /api/info`, `POST /api/predict` and /docs.

Every answer the app gives is JSON, errors included (`{"error": "..."}`, a 4xx, or 500 with
one log line); Starlette's own 404 and 405 go through the same handler. The work of one
request is bounded at each step: the body by size and time as it arrives, a form by its
number of parts, JSON by its structure before parsing, an image by its declared pixels
before decoding, and decoding plus prediction by a few slots shared by all requests.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnistlab import __version__
from mnistlab.serve.images import (
    RequestError,
    decode_data_url,
    image_from_json,
    one_line,
    open_image,
)
from mnistlab.serve.limits import Limits
from mnistlab.serve.predictor import Predictor

logger = logging.getLogger(__name__)

# Sent with every answer: nothing here is worth caching, and nothing should be sniffed.
EXTRA_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
# The paths a 404 suggests.
PATHS_HINT = "/, /api/info, /api/predict or /docs"


# --- what /docs shows -----------------------------------------------------------------------


class ErrorAnswer(BaseModel):
    """Every error."""

    error: str = Field(description="a sentence saying what is wrong")


class TopClass(BaseModel):
    """One of the most probable classes."""

    label: str
    probability: float


class PredictionAnswer(BaseModel):
    """The answer of `POST /api/predict`."""

    probabilities: list[float] = Field(description="one per class, in the order of "
                                                   "class_names from /api/info")
    prediction: int = Field(description="the index of the most probable class")
    label: str = Field(description="the name of the most probable class")
    top: list[TopClass] = Field(description="the three most probable classes, best first")
    input: list[list[int]] = Field(description="the 28x28 image the model received, "
                                               "0 (paper) to 255 (ink)")


class InfoAnswer(BaseModel):
    """The answer of `GET /api/info`."""

    model: str = Field(description="the run's preset, or its model family")
    run: str = Field(description="the run directory's name")
    class_names: list[str]
    test_accuracy: float | None = Field(description="recorded at training time")
    max_body_bytes: int


_IMAGE_SCHEMA = {"type": "string", "format": "binary"}
PREDICT_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "image/png": {"schema": _IMAGE_SCHEMA},
    "image/jpeg": {"schema": _IMAGE_SCHEMA},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["image"],
        "properties": {"image": _IMAGE_SCHEMA}}},
    "application/json": {"schema": {
        "type": "object", "required": ["image"],
        "properties": {"image": {"type": "string",
                                 "description": "data:image/png;base64,... or plain base64"}}}},
}}}
PREDICT_ERRORS = {
    400: "not an image, a corrupt one, malformed JSON or base64, a form without the field "
         "`image`, or a form or JSON document with too many parts",
    408: "the body stalled or took too long",
    411: "no Content-Length and not chunked",
    413: "the body or the image is over its limit",
    422: "an image with no ink in it",
    503: "too many requests at once; try again (see Retry-After)",
}


# --- reading a request, bounded ---------------------------------------------------------------


class BoundedReceive:
    """An ASGI `receive` that refuses a body over the size limit or arriving too slowly.

    Starlette's `Request.body()` and `Request.form()` read through it, so the limits hold
    while a multipart form is being parsed, not only after the whole body is in memory.
    """

    def __init__(self, receive: Receive, limits: Limits):
        self._receive = receive
        self._limits = limits
        self._received = 0
        self._deadline = asyncio.get_running_loop().time() + limits.body_total_seconds

    async def __call__(self) -> Message:
        limits = self._limits
        left = self._deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(self._receive(),
                                             max(0.0, min(limits.body_idle_seconds, left)))
        except asyncio.TimeoutError:
            raise RequestError(408, f"the body did not arrive in time (a pause over "
                                    f"{limits.body_idle_seconds:g} s, or over "
                                    f"{limits.body_total_seconds:g} s in all)",
                               close=True) from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > limits.max_body_bytes:
                raise RequestError(413, f"the body is over the limit of "
                                        f"{limits.max_body_bytes:,} bytes", close=True)
        return message


def check_body_length(request: Request, limits: Limits) -> None:
    """Refuse by the headers alone a body that is missing or declared too large.

    h11 has already checked that Content-Length is digits only, that it does not come with
    Transfer-Encoding, and that chunked framing is well formed.
    """
    declared = request.headers.get("content-length")
    if declared is None:
        if "chunked" not in request.headers.get("transfer-encoding", "").lower():
            raise RequestError(411, "a Content-Length header (or a chunked body) is required")
        return
    length = int(declared)
    if length > limits.max_body_bytes:
        # uvicorn reads and drops the unread rest of the body after the answer, keeping
        # the connection; past max_discard_bytes that is not worth it.
        raise RequestError(413, f"the body is {length:,} bytes; the limit is "
                                f"{limits.max_body_bytes:,} bytes",
                           close=length > limits.max_discard_bytes)


async def read_image_payload(request: Request, limits: Limits) -> tuple[str, bytes]:
    """The request's image, as ("json", the JSON body) or ("image", the image's bytes)."""
    check_body_length(request, limits)
    bounded = Request(request.scope, BoundedReceive(request.receive, limits))
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return "image", await read_form_image(bounded, limits)
    body = await bounded.body()
    # image/*, application/octet-stream or no type at all: the body is the image itself.
    return ("json" if media_type == "application/json" else "image"), body


async def read_form_image(request: Request, limits: Limits) -> bytes:
    """The file (or data URL text) in the form field `image` of a multipart body."""
    try:
        async with request.form(max_files=limits.max_form_files,
                                max_fields=limits.max_form_fields,
                                max_part_size=limits.max_body_bytes) as form:
            field = form.get("image")
            if field is None:
                raise RequestError(400, "the multipart form has no field 'image'")
            if isinstance(field, str):
                return decode_data_url(field, "form field 'image'")
            return await field.read()
    except StarletteHTTPException as error:
        # Starlette turns its parser's refusals (too many parts, no boundary) into these.
        raise RequestError(400, f"the multipart form cannot be read: {error.detail}") from None
    except MultiPartException as error:
        raise RequestError(400, f"the multipart form cannot be read: {error.message}") from None


def answer_image(predictor: Predictor, kind: str, payload: bytes, limits: Limits) -> dict:
    """Decode, prepare and classify one image: the CPU work, run in a worker thread."""
    from mnistlab.prepare import EmptyImageError, ImageError

    data = image_from_json(payload, limits) if kind == "json" else payload
    image = open_image(data, limits)
    try:
        return predictor.predict(image).to_dict()
    except EmptyImageError as error:
        raise RequestError(422, f"{error}; draw or send a digit") from None
    except ImageError as error:
        raise RequestError(400, str(error)) from None


# --- answers that are always JSON ------------------------------------------------------------


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   close: bool = False) -> JSONResponse:
    """`{"error": message}` with `status`."""
    headers = dict(headers or {})
    if close:
        headers["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _shown_path(request: Request) -> str:
    path = request.scope.get("path", "")
    return path if len(path) <= 200 else path[:200] + "..."


async def _request_error(request: Request, error: RequestError) -> JSONResponse:
    return error_response(error.status, str(error), error.headers, error.close)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    headers = dict(error.headers or {})
    path = _shown_path(request)
    if error.status_code == 404:
        message = f"no such path: {path} (try {PATHS_HINT})"
    elif error.status_code == 405:
        # Starlette lists the methods in set order, which changes from run to run; HEAD is
        # answered wherever GET is (see GuardMiddleware).
        allowed = set(filter(None, headers.get("Allow", "").split(", ")))
        if "GET" in allowed:
            allowed.add("HEAD")
        allowed = sorted(allowed, key=lambda method: (method != "GET", method))
        headers["Allow"] = ", ".join(allowed)
        message = f"{path} answers {' and '.join(allowed)}, not {request.method}"
    else:
        message = str(error.detail)
    return error_response(error.status_code, message, headers)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(400, f"bad request: {one_line(error)}")


class GuardMiddleware:
    """Adds `EXTRA_HEADERS` to every answer; turns an unexpected error into a JSON 500.

    The error is logged in one line, and not passed on: Starlette's outer error middleware
    would answer in plain text and uvicorn would log a traceback. HEAD is routed as GET
    (the server sends the headers only), so that each GET route is one operation in /docs.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *EXTRA_HEADERS]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            return  # the client left; there is no one to answer
        except Exception as error:  # the server must outlive any one request
            path = scope.get("path", "")[:200]
            logger.error("%s %s failed: %s: %s", scope.get("method"), path,
                         type(error).__name__, one_line(error))
            if not started:
                response = error_response(500, f"internal error: {type(error).__name__}",
                                          close=True)
                await response(scope, receive, send_with_headers)


# --- the app ---------------------------------------------------------------------------------


def static_file(name: str) -> bytes:
    """A file of the page, shipped as package data."""
    return resources.files("mnistlab").joinpath("static", name).read_bytes()


def create_app(predictor: Predictor, limits: Limits = Limits()) -> FastAPI:
    """The ASGI app serving `predictor`'s model, within `limits`.

    Serve it with `mnistlab.serve.make_server`, which also applies the limits that belong to
    the HTTP server (connections, request heads), or with any ASGI server.
    """
    app = FastAPI(
        title="mnistlab", version=__version__, redoc_url=None, redirect_slashes=False,
        description="Draw-a-digit page and JSON prediction API for a trained mnistlab run. "
                    "Every error is JSON `{\"error\": ...}`; see docs/api.md for the limits.")
    app.state.predictor = predictor
    app.state.limits = limits
    app.add_middleware(GuardMiddleware)
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    slots = asyncio.Semaphore(limits.max_concurrent_predictions)
    page = static_file("index.html")
    icon = static_file("favicon.svg")

    @app.get("/", response_class=HTMLResponse, summary="The draw-a-digit page")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/index.html", include_in_schema=False)
    async def index_html() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/favicon.svg", include_in_schema=False)
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(icon, media_type="image/svg+xml")

    @app.get("/api/info", response_model=None, responses={200: {"model": InfoAnswer}},
             summary="The model being served")
    async def info() -> JSONResponse:
        return JSONResponse({**predictor.info(), "max_body_bytes": limits.max_body_bytes})

    @app.post("/api/predict", response_model=None, openapi_extra=PREDICT_REQUEST_BODY,
              summary="Classify one image of a digit",
              responses={200: {"model": PredictionAnswer},
                         **{status: {"model": ErrorAnswer, "description": text}
                            for status, text in PREDICT_ERRORS.items()}})
    async def predict(request: Request) -> JSONResponse:
        """Send the image as the raw body (`Content-Type: image/png`, ...), as the
        multipart form field `image`, or as JSON `{"image": "data:image/png;base64,..."}`.
        """
        kind, payload = await read_image_payload(request, limits)
        try:
            await asyncio.wait_for(slots.acquire(), limits.slot_wait_seconds)
        except asyncio.TimeoutError:
            raise RequestError(503, "the server is busy with other predictions; try again "
                                    "in a moment", headers={"Retry-After": "1"}) from None
        try:
            # The worker thread always runs to the end (a cancelled request waits for it),
            # so a slot is never released while its work still runs.
            answer: dict[str, Any] = await anyio.to_thread.run_sync(
                answer_image, predictor, kind, payload, limits)
        finally:
            slots.release()
        return JSONResponse(answer)

    return app
