"""What one request, and all requests together, may cost the server.

Every limit has a reason next to it. `Limits()` holds the defaults; a server built with
other values (tests use short timeouts) is otherwise the same.
"""

from __future__ import annotations

from dataclasses import dataclass

# A drawing from the page is a few kilobytes; a photo of a digit a few megabytes at most.
MAX_BODY_BYTES = 5 * 1024 * 1024
# Decoding is refused above this many pixels, checked on the size a file declares before
# any pixel is decoded. Pillow holds at most 4 bytes a pixel (RGB is padded to 4; 16-bit
# grey takes 2), so one decoded image stays under 64 MiB whatever its format or bit depth.
MAX_IMAGE_PIXELS = 16_000_000
# Decoded images larger than this on their longer side are shrunk at once (and JPEGs are
# decoded at 1/2, 1/4 or 1/8 scale), so that preparing them costs little more; a digit ends
# up 20 pixels tall anyway.
MAX_DECODED_SIDE = 2000
# After an answer to a body the server will not read (413), the rest of the body is read
# and dropped up to this size so that the connection can carry the next request; a client
# that declares more is answered and disconnected.
MAX_DISCARD_BYTES = 64 * 1024 * 1024
# A form needs one file; a few more parts are tolerated, tens of thousands are not.
MAX_FORM_FILES = 4
MAX_FORM_FIELDS = 16
# A JSON body is `{"image": "..."}`: one object, no arrays, a comma or two. Bodies with more
# `{`, `[` and `,` bytes than this are refused before parsing, which bounds both nesting
# depth and the number of objects json.loads would build.
MAX_JSON_ITEMS = 100
# Decoding and preparing an image is CPU work in a worker thread; at most this many run at
# once (the model itself takes one image at a time). More would only share the same cores
# and multiply peak memory.
MAX_CONCURRENT_PREDICTIONS = 2
# A request that cannot start its prediction within this many seconds is answered 503.
SLOT_WAIT_SECONDS = 3.0
# uvicorn's limit_concurrency: requests arriving while this many connections (or requests)
# are open are answered 503. It also bounds the bodies buffered at once.
MAX_CONNECTIONS = 32
# A body must keep arriving (no pause longer than the first) and be complete within the
# second, else 408; the connection is closed.
BODY_IDLE_SECONDS = 10.0
BODY_TOTAL_SECONDS = 60.0
# A connection must deliver a complete request line and headers within this many seconds
# of opening, or of the previous answer, else it is closed (uvicorn has no such deadline).
HEAD_TIMEOUT_SECONDS = 10.0
# The request line and headers together, in bytes (h11's buffer limit); a longer URL or
# header block is answered 400.
MAX_HEAD_BYTES = 16 * 1024
# An idle keep-alive connection is closed after this many seconds.
KEEP_ALIVE_SECONDS = 5


@dataclass(frozen=True)
class Limits:
    """The limits of one server; see the module's constants for what each one bounds."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_decoded_side: int = MAX_DECODED_SIDE
    max_discard_bytes: int = MAX_DISCARD_BYTES
    max_form_files: int = MAX_FORM_FILES
    max_form_fields: int = MAX_FORM_FIELDS
    max_json_items: int = MAX_JSON_ITEMS
    max_concurrent_predictions: int = MAX_CONCURRENT_PREDICTIONS
    slot_wait_seconds: float = SLOT_WAIT_SECONDS
    max_connections: int = MAX_CONNECTIONS
    body_idle_seconds: float = BODY_IDLE_SECONDS
    body_total_seconds: float = BODY_TOTAL_SECONDS
    head_timeout_seconds: float = HEAD_TIMEOUT_SECONDS
    max_head_bytes: int = MAX_HEAD_BYTES
    keep_alive_seconds: int = KEEP_ALIVE_SECONDS

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"Limits.{name} must be positive, got {value!r}")
