"""Serve a trained run: a draw-a-digit page and a small JSON prediction API.

`make_server(run_dir)` loads the run's model once and returns a standard-library
`ThreadingHTTPServer`; `serve(run_dir)` runs it until interrupted. The routes:

    GET  /              the page (draw with mouse, pen or finger; see static/index.html)
    GET  /api/info      the model, the run and the class names
    POST /api/predict   an image -> probabilities, the prediction and the 28x28 model input

`POST /api/predict` takes the image as the raw body (PNG, JPEG, ... with `Content-Type:
image/*`), as the multipart form field `image`, or as JSON `{"image": "data:image/png;base64,
..."}`. Every answer is JSON; errors are `{"error": "..."}` with a 4xx or 5xx status. The
server binds to loopback by default and has no authentication.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import errno
import http
import io
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError

logger = logging.getLogger(__name__)

# A drawing from the page is a few kilobytes; a photo of a digit a few megabytes at most.
MAX_BODY_BYTES = 5 * 1024 * 1024
# Decoding is refused above this many pixels, so a small file that declares a huge image
# cannot make the server allocate gigabytes.
MAX_IMAGE_PIXELS = 25_000_000
# JPEGs larger than this on their longer side are decoded at 1/2, 1/4 or 1/8 scale, which is
# far cheaper; preparation shrinks them anyway.
MAX_DECODED_SIDE = 2000
# An over-long body is read and thrown away up to this size before answering 413, so that
# the client sees the answer instead of a reset connection; beyond it the socket is closed.
MAX_DISCARD_BYTES = 64 * 1024 * 1024
# How many classes `top` lists in a prediction.
TOP_COUNT = 3


class ServeError(MnistlabError):
    """The server cannot start: the address is in use, the host is unknown, ..."""


class RequestError(Exception):
    """A request the server refuses, with the HTTP status to answer and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Prediction:
    """One image's answer: probabilities over the classes and the image the model saw."""

    probabilities: np.ndarray   # (n_classes,) float32
    class_names: list[str]
    model_input: np.ndarray     # (28, 28) uint8

    def to_dict(self, top: int = TOP_COUNT) -> dict[str, Any]:
        """The JSON answer of `POST /api/predict`."""
        best = int(np.argmax(self.probabilities))
        order = np.argsort(-self.probabilities, kind="stable")[:top]
        return {
            "probabilities": [round(float(p), 6) for p in self.probabilities],
            "prediction": best,
            "label": self.class_names[best],
            "top": [{"label": self.class_names[i],
                     "probability": round(float(self.probabilities[i]), 6)} for i in order],
            "input": self.model_input.astype(int).tolist(),
        }


class Predictor:
    """A run's model behind a lock, with the run's class names.

    Models need not be thread-safe (a Keras model's `predict` is not guaranteed to be), and
    one image takes milliseconds, so requests take turns at the model rather than risk it.
    """

    def __init__(self, run_dir: Path):
        from mnistlab.runs import load_model, load_run

        self.run_dir = Path(run_dir)
        run = load_run(self.run_dir)
        self.model = load_model(self.run_dir)
        self.model_name = run.info.get("preset") or run.info.get("model", "unknown")
        self.test_accuracy = run.metrics.get("test_accuracy")
        classes = getattr(self.model, "classes_", range(10))
        names = run.config.get("data", {}).get("class_names")
        self.class_names = [str(name) for name in (names or classes)]
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """The JSON answer of `GET /api/info`."""
        return {"model": self.model_name, "run": self.run_dir.resolve().name,
                "class_names": self.class_names, "test_accuracy": self.test_accuracy,
                "max_body_bytes": MAX_BODY_BYTES}

    def predict(self, image) -> Prediction:
        """Prepare one image (PIL or array, any size or polarity) and classify it.

        Raises `EmptyImageError` when there is no ink and `ImageError` when it is unusable.
        """
        from mnistlab.prepare import prepare_image

        model_input = prepare_image(image)  # (28, 28) uint8, ink bright
        with self._lock:
            probabilities = self.model.predict_proba(model_input[np.newaxis])[0]
        if len(probabilities) != len(self.class_names):
            raise RuntimeError(f"the model gives {len(probabilities)} probabilities for "
                               f"{len(self.class_names)} class names")
        return Prediction(np.asarray(probabilities, dtype=np.float32), self.class_names,
                          model_input)


def open_image(data: bytes):
    """Decode image bytes into a loaded PIL image; `RequestError` when they are not one.

    Like `mnistlab.prepare.load_image` for files: the first frame, JPEGs decoded at a
    reduced size when they are large, and a phone photo's EXIF orientation applied.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise RequestError(400, "the request holds no image (empty body)")
    try:
        image = Image.open(io.BytesIO(data))
        image.seek(0)
        image.draft(image.mode, (MAX_DECODED_SIDE, MAX_DECODED_SIDE))
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise RequestError(413, f"the image is {width}x{height} pixels; the limit is "
                                    f"{MAX_IMAGE_PIXELS:,} pixels")
        image.load()
        return ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise RequestError(400, "the body is not an image in a format Pillow reads "
                                "(PNG, JPEG, GIF, BMP, TIFF, WebP, ...)") from None
    except Image.DecompressionBombError as error:
        raise RequestError(413, f"the image is too large ({_one_line(error)})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        # Pillow reports truncated and corrupt data as any of these.
        raise RequestError(400, f"the image cannot be decoded ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def decode_data_url(text: str) -> bytes:
    """The bytes of a `data:image/...;base64,...` URL, or of plain base64 text."""
    if not isinstance(text, str):
        raise RequestError(400, "JSON field 'image' must be a string (a data URL or base64)")
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise RequestError(400, "the data URL must be base64-encoded "
                                    "(data:image/png;base64,...)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "JSON field 'image' is not valid base64") from None


def image_bytes_from_request(content_type: str, body: bytes) -> bytes:
    """Find the image in a request body, whichever of the three accepted forms it takes."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError) as error:
            raise RequestError(400, f"the body is not valid JSON ({error})") from None
        if not isinstance(document, dict) or "image" not in document:
            raise RequestError(400, "the JSON body must be an object with the field 'image'")
        return decode_data_url(document["image"])
    if media_type == "multipart/form-data":
        return _multipart_field(content_type, body, "image")
    # image/*, application/octet-stream or no type at all: the body is the image itself.
    return body


def _multipart_field(content_type: str, body: bytes, name: str) -> bytes:
    """The content of form field `name` in a multipart/form-data body."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1")
                                + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise RequestError(400, "the multipart body cannot be parsed (is the boundary right?)")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == name:
            return part.get_payload(decode=True) or b""
    raise RequestError(400, f"the multipart form has no field {name!r}")


def page_html() -> bytes:
    """The draw-a-digit page, shipped as package data."""
    return resources.files("mnistlab").joinpath("static", "index.html").read_bytes()


# Path -> methods it answers; anything else is 404, a known path with another method 405.
ROUTES = {"/": ("GET", "HEAD"), "/index.html": ("GET", "HEAD"),
          "/api/info": ("GET", "HEAD"), "/api/predict": ("POST",)}


class PredictionHandler(BaseHTTPRequestHandler):
    """One connection: routes requests, answers JSON, never lets an error escape."""

    server: PredictionServer
    protocol_version = "HTTP/1.1"  # keep-alive, so the page's many requests share a socket
    server_version = "mnistlab"
    timeout = 30  # seconds a connection may sit idle or trickle its body
    # Headers and body go out in two writes; with Nagle's algorithm on, a keep-alive client's
    # delayed ACK would hold the second one back by some 40 ms on every request.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        self._started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        try:
            if not (path == "/api/predict" and self.command == "POST"):
                self._discard_body()  # keep the connection in step for the next request
            if path not in ROUTES:
                raise RequestError(404, f"no such path: {path} (try /, /api/info, /api/predict)")
            if self.command not in ROUTES[path]:
                raise RequestError(405, f"{path} answers {' and '.join(ROUTES[path])}, "
                                        f"not {self.command}")
            if path == "/api/predict":
                self._send_json(200, self._predict())
            elif path == "/api/info":
                self._send_json(200, self.server.predictor.info())
            else:
                self._send(200, page_html(), "text/html; charset=utf-8")
        except RequestError as error:
            self._send_json(error.status, {"error": str(error)},
                            allow=ROUTES.get(path) if error.status == 405 else None)
        except Exception as error:  # the server must outlive any one request
            logger.error("%s %s failed: %s: %s", self.command, path,
                         type(error).__name__, error)
            self.close_connection = True
            self._send_json(500, {"error": f"internal error: {type(error).__name__}"})

    def _predict(self) -> dict[str, Any]:
        from mnistlab.prepare import EmptyImageError, ImageError

        body = self._read_body()
        data = image_bytes_from_request(self.headers.get("Content-Type", ""), body)
        image = open_image(data)
        try:
            return self.server.predictor.predict(image).to_dict()
        except EmptyImageError as error:
            raise RequestError(422, f"{error}; draw or send a digit") from None
        except ImageError as error:
            raise RequestError(400, str(error)) from None

    def _content_length(self) -> int | None:
        text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length, not chunked")
        if text is None:
            return None
        try:
            length = int(text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length: {text!r}")
        return length

    def _read_body(self) -> bytes:
        length = self._content_length()
        if length is None:
            raise RequestError(411, "a Content-Length header is required")
        if length > MAX_BODY_BYTES:
            self._discard_body(length)
            raise RequestError(413, f"the body is {length:,} bytes; the limit is "
                                    f"{MAX_BODY_BYTES:,} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _discard_body(self, length: int | None = None) -> None:
        """Read and drop a body the server will not use, so keep-alive stays in step."""
        if length is None:
            try:
                length = self._content_length() or 0
            except RequestError:
                return
        if length > MAX_DISCARD_BYTES:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            remaining -= len(chunk)

    def _send_json(self, status: int, document: dict, allow=None) -> None:
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json", allow=allow)

    def _send(self, status: int, body: bytes, content_type: str, allow=None) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if allow:
            self.send_header("Allow", ", ".join(allow))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:  # noqa: D102 - one line per request
        if isinstance(code, http.HTTPStatus):
            code = code.value
        elapsed = (time.perf_counter() - getattr(self, "_started", time.perf_counter())) * 1000
        path = "".join(char if char.isprintable() else "?" for char in self.path)
        logger.info('%s "%s %s" %s %.1f ms', self.client_address[0], self.command, path,
                    code, elapsed)

    def log_error(self, format: str, *args) -> None:  # noqa: A002 - http.server API
        logger.warning("%s %s", self.client_address[0], format % args)


class PredictionServer(ThreadingHTTPServer):
    """A threading HTTP server that holds one `Predictor`; one thread per connection."""

    daemon_threads = True
    # socketserver's default backlog of 5 resets connections when a burst of clients
    # (a page and a script, say) connect at once.
    request_queue_size = 128
    # Start-up on a busy port must fail, never share the port with another server.
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], predictor: Predictor):
        self.predictor = predictor
        super().__init__(address, PredictionHandler)

    @property
    def url(self) -> str:
        """The address to open in a browser, e.g. http://127.0.0.1:8000/."""
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def handle_error(self, request, client_address) -> None:  # noqa: D102
        # Errors inside a request are answered by the handler; what reaches here is a broken
        # connection (the client went away), worth one line, not a traceback.
        import sys

        error = sys.exc_info()[1]
        logger.warning("%s connection error: %s: %s", client_address[0],
                       type(error).__name__, error)


def make_server(run_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> PredictionServer:
    """Load `run_dir`'s model and bind a server to `host:port` (port 0: any free port).

    The server is not yet serving: call `serve_forever()` (in a thread, for tests) and
    `shutdown()` then `server_close()` to stop. Raises `RunError` for a missing or
    incomplete run and `ServeError` when the address cannot be bound.
    """
    predictor = Predictor(run_dir)
    server_class = PredictionServer
    if ":" in host:
        server_class = type("PredictionServer6", (PredictionServer,),
                            {"address_family": socket.AF_INET6})
    try:
        return server_class((host, port), predictor)
    except socket.gaierror as error:
        raise ServeError(f"cannot listen on {host}:{port}: unknown host ({error.strerror})") \
            from None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ServeError(f"cannot listen on {host}:{port}: the port is in use "
                             "(stop the other server or pick another --port)") from None
        if error.errno == errno.EACCES:
            raise ServeError(f"cannot listen on {host}:{port}: permission denied "
                             "(ports below 1024 need privileges; pick another --port)") from None
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve `run_dir`'s model at `host:port` until interrupted (Ctrl-C)."""
    server = make_server(run_dir, host, port)
    logger.info("serving %s (%s) at %s", server.predictor.run_dir,
                server.predictor.model_name, server.url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
