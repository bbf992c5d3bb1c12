"""Serve a trained run: a draw-a-digit page and a small JSON prediction API.

`make_server(run_dir)` binds the address, loads the run's model once and returns a `Server`
(uvicorn with h11 running a FastAPI app); `serve(run_dir)` runs one until interrupted. The
routes:

    GET  /              the page (draw with mouse, pen or finger; see static/index.html)
    GET  /api/info      the model, the run and the class names
    POST /api/predict   an image -> probabilities, the prediction and the 28x28 model input
    GET  /docs          the API's OpenAPI documentation (and /openapi.json)

`POST /api/predict` takes the image as the raw body (PNG, JPEG, ... with `Content-Type:
image/*`), as the multipart form field `image`, or as JSON `{"image": "data:image/png;base64,
..."}`. Every answer is JSON; errors are `{"error": "..."}` with a 4xx or 5xx status. What
one request and all of them together may cost is bounded (`Limits`, in `limits.py`). The
server binds to loopback by default and has no authentication.
"""

from mnistlab.serve.images import RequestError, decode_data_url, image_from_json, open_image
from mnistlab.serve.limits import (
    MAX_BODY_BYTES,
    MAX_CONCURRENT_PREDICTIONS,
    MAX_CONNECTIONS,
    MAX_IMAGE_PIXELS,
    Limits,
)
from mnistlab.serve.predictor import Prediction, Predictor
from mnistlab.serve.server import ServeError, Server, bind_socket, make_server, serve

__all__ = [
    "MAX_BODY_BYTES", "MAX_CONCURRENT_PREDICTIONS", "MAX_CONNECTIONS", "MAX_IMAGE_PIXELS",
    "Limits", "Prediction", "Predictor", "RequestError", "ServeError", "Server",
    "bind_socket", "decode_data_url", "image_from_json", "make_server", "open_image", "serve",
]
