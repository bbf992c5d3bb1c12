"""From request bytes to a decoded image, with the cost of each step bounded.

These functions are synchronous CPU work; the app runs them in a worker thread, a few at
a time. Each refusal is a `RequestError` carrying the HTTP status to answer.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json

from mnistlab.serve.limits import Limits

# The formats decoded; Pillow's other readers (EPS through Ghostscript, the many rare
# formats) are not offered to strangers. MPO is how Pillow opens many phones' JPEGs.
IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "TIFF", "WEBP", "AVIF", "PPM")
FORMATS_TEXT = "PNG, JPEG, GIF, BMP, TIFF, WebP, AVIF or PPM"


class RequestError(Exception):
    """A request the server refuses: the HTTP status, a message, and any extra headers.

    `close` asks for the connection to be closed after the answer, for when the rest of the
    request cannot be read cheaply.
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 close: bool = False):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        self.close = close


def one_line(error: BaseException) -> str:
    """An exception's message on one line, with its type when the message is empty."""
    return " ".join(str(error).split()) or type(error).__name__


def open_image(data: bytes, limits: Limits = Limits()):
    """Decode image bytes into a loaded PIL image; `RequestError` when they are not one.

    Like `mnistlab.prepare.load_image` for files: the first frame, JPEGs decoded at a
    reduced size when they are large, a phone photo's EXIF orientation applied, and images
    larger than `limits.max_decoded_side` shrunk. The declared size is checked against
    `limits.max_image_pixels` before any pixel is decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise RequestError(400, "the request holds no image (empty body)")
    side = limits.max_decoded_side
    try:
        image = Image.open(io.BytesIO(data), formats=_available_formats())
        image.seek(0)  # the first frame of an animation or a multi-page TIFF
        image.draft(image.mode, (side, side))  # JPEG only: decode at a reduced scale
        width, height = image.size
        if width * height > limits.max_image_pixels:
            raise RequestError(413, f"the image is {width}x{height} pixels; the limit is "
                                    f"{limits.max_image_pixels:,} pixels")
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        if max(image.size) > side:
            # Palette and bilevel images resize by nearest neighbour; convert them first,
            # as `load_image` does, so that the shrinking averages.
            if image.mode in ("P", "PA"):
                has_alpha = image.mode == "PA" or "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
            elif image.mode == "1":
                image = image.convert("L")
            # reducing_gap=None: Pillow's fast pre-reduction does not handle 16-bit modes.
            image.thumbnail((side, side), Image.Resampling.BOX, reducing_gap=None)
        return image
    except UnidentifiedImageError:
        raise RequestError(400, "the body is not an image in a format the server reads "
                                f"({FORMATS_TEXT})") from None
    except Image.DecompressionBombError as error:
        raise RequestError(413, f"the image is too large ({one_line(error)})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        # Pillow reports truncated and corrupt data as any of these.
        raise RequestError(400, f"the image cannot be decoded ({one_line(error)})") from None


@functools.cache
def _available_formats() -> tuple[str, ...]:
    """The formats of `IMAGE_FORMATS` this Pillow has readers for (AVIF is optional)."""
    from PIL import Image

    Image.init()
    return tuple(name for name in IMAGE_FORMATS if name in Image.OPEN)


def decode_data_url(text, source: str = "JSON field 'image'") -> bytes:
    """The bytes of a `data:image/...;base64,...` URL, or of plain base64 text."""
    if not isinstance(text, str):
        raise RequestError(400, f"{source} must be a string (a data URL or base64)")
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise RequestError(400, f"{source}: the data URL must be base64-encoded "
                                    "(data:image/png;base64,...)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{source} is not valid base64") from None


def image_from_json(body: bytes, limits: Limits = Limits()) -> bytes:
    """The image bytes in a JSON body `{"image": "data:image/png;base64,..."}`.

    Structure is counted before parsing: a body of `[` x 100,000 is refused in microseconds
    instead of reaching the parser's recursion limit.
    """
    structure = body.count(b"{") + body.count(b"[") + body.count(b",")
    if structure > limits.max_json_items:
        raise RequestError(400, "the JSON body is nested too deeply or has too many items "
                                f"(more than {limits.max_json_items} of '{{', '[' and ','); "
                                'send {"image": "data:image/png;base64,..."}')
    try:
        document = json.loads(body)
    except RecursionError:
        raise RequestError(400, "the JSON body is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestError(400, f"the body is not valid JSON ({one_line(error)})") from None
    if not isinstance(document, dict) or "image" not in document:
        raise RequestError(400, "the JSON body must be an object with the field 'image'")
    return decode_data_url(document["image"])
