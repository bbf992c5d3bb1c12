"""Prepare a user's digit image the way MNIST's digits were prepared.

A classifier trained on MNIST has only ever seen one kind of picture: a bright digit on a
black 28x28 field, scaled so that its longer side is 20 pixels, with its centre of mass at
the centre of the field. Photos and drawings from people are dark ink on light paper, of any
size, off-centre, with shadows and texture; fed in as they are, they come out wrong. This
module turns such an image into an MNIST-style one:

1. colour and alpha: transparent pixels become white paper, colour becomes luma;
2. paper: a smooth surface (the paper's shade, shadows, uneven light) is fitted to the
   paper and subtracted, which leaves the ink on one side of zero;
3. polarity: if that side is the dark one the image is inverted, so that ink is bright;
4. ink: Otsu's threshold finds it, never lower than the paper's texture allows; specks are
   dropped, and the ink keeps its anti-aliased grey levels, from 0 (paper) to 1 (solid);
5. size: strokes thinner than MNIST's are thickened, and the ink is scaled, keeping its
   aspect ratio, so that the longer side of its bounding box is 20 pixels;
6. place: it goes, to a sub-pixel, with its centre of mass at `TARGET_CENTRE_OF_MASS`.

The centring convention, exactly: with pixel (row i, column j) at integer coordinates
(i, j), i and j in 0..27, and pixel values v, the centre of mass is
(sum(i * v) / sum(v), sum(j * v) / sum(v)). MNIST's own images have it at (14.0, 14.0),
not at the geometric centre (13.5, 13.5): measured on the 10,000 test images, its mean is
(13.99, 14.01) and every image lies within half a pixel of (14, 14), because MNIST shifted
by whole pixels towards pixel (14, 14). `prepare_image` matches the data it will be compared
with and puts the centre of mass within a few hundredths of a pixel of (14.0, 14.0).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from mnistlab.errors import DataError

IMAGE_SIZE = 28  # the MNIST field, in pixels
DIGIT_SIZE = 20  # the longer side of the digit's bounding box, in pixels
# (row, column) of the centre of mass, in the coordinates described in the module docstring.
TARGET_CENTRE_OF_MASS = (14.0, 14.0)

# Half-intensity stroke width of MNIST digits, in output pixels (measured on the test set
# with `_stroke_width`): 10th percentile 1.7, median 2.3, 90th percentile 3.3.
MIN_STROKE_WIDTH = 2.0

# File-name extensions that `iter_image_files` picks up inside directories.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# Longer side above which `load_image` downscales: a 20-pixel digit needs no more, and it
# bounds the memory and time of every later step.
MAX_LOADED_SIDE = 2000
# Images with more pixels than this are refused before decoding (after JPEG draft mode).
MAX_PIXELS = 60_000_000
# `prepare_image` first shrinks larger images to this longer side: the digit ends up 20
# pixels tall, and finding the ink costs time and memory in proportion to the pixels.
MAX_WORKING_SIDE = 1024

# Ink must differ from the paper by at least this fraction of full scale (20 grey levels of
# 255); below it a JPEG's artefacts or a blank page's unevenness would count as ink.
MIN_CONTRAST = 0.08
# Ink must also stand out from the paper's texture by this many noise standard deviations.
NOISE_SIGMAS = 5.0
# The largest connected piece of ink must have at least this many pixels, so that isolated
# specks of noise are not taken for a digit.
MIN_INK_PIXELS = 4
# Pieces of ink smaller than this fraction of the largest piece are specks, and dropped.
MIN_PIECE_FRACTION = 0.02
# The background fit works on a grid of block medians with at most this many blocks a side.
BACKGROUND_GRID = 64
# Scaling happens at this many working pixels per output pixel, so that thickening and the
# final area-averaging have room for sub-pixel detail.
SUPERSAMPLING = 8
WORKING_EXTENT = DIGIT_SIZE * SUPERSAMPLING

# Luma as ITU-R 601-2 defines it, the same as Pillow's convert("L").
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageError(DataError):
    """An image cannot be read, or its contents cannot be prepared as a digit."""


class EmptyImageError(ImageError):
    """An image holds no ink: blank, uniform, or nothing but paper texture."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file and return its first frame, ready for `prepare_image`.

    Reads whatever Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP, ...). The EXIF orientation
    of phone photos is applied; images whose longer side exceeds `MAX_LOADED_SIDE` are
    downscaled to it. The result's mode is "L", "LA", "RGB" or "RGBA" for 8-bit data and
    "F" (values in [0, 1]) for 16- and 32-bit data.

    Raises `ImageError`, naming the file, when it is missing, not a regular file (a named
    pipe, a device, a directory: never read, so never waited on), not an image, truncated
    or larger than `MAX_PIXELS`.
    """
    path = Path(path)
    file = _open_regular_file(path)
    try:
        with file, Image.open(file) as opened:
            opened.seek(0)  # the first frame of an animated GIF, WebP or multi-page TIFF
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly, which is far cheaper.
            opened.draft(opened.mode, (MAX_LOADED_SIDE, MAX_LOADED_SIDE))
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{path}: image too large ({width} x {height} pixels; "
                    f"the limit is {MAX_PIXELS:,} pixels)"
                )
            opened.load()
            image = ImageOps.exif_transpose(opened)
            image = _normalise_mode(image)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (unknown or damaged format)") from None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path}: not a readable image ({_one_line(error)})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        # Pillow reports truncated and corrupt data as any of these.
        raise ImageError(f"{path}: corrupt or unsupported image ({_one_line(error)})") from None
    if max(image.size) > MAX_LOADED_SIDE:
        image.thumbnail((MAX_LOADED_SIDE, MAX_LOADED_SIDE), Image.Resampling.BOX)
    return image


def iter_image_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and directories into a list of image files.

    A directory is walked recursively and contributes, sorted by path, its files whose
    extension (any case) is in `IMAGE_EXTENSIONS`; hidden files and directories (names
    starting with ".", such as macOS "._x.png" resource forks) are skipped. A file named
    explicitly is kept whatever its extension. Order follows `paths`; repeats are dropped.
    An empty directory contributes nothing.

    Raises `ImageError` for a path that does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(_walk_images(path))
        elif path.exists():
            found.append(path)
        else:
            raise ImageError(f"{path}: no such file or directory")
    return list(dict.fromkeys(found))


def prepare_image(
    image: Image.Image | np.ndarray,
    *,
    invert: bool | None = None,
    min_stroke_width: float | None = MIN_STROKE_WIDTH,
) -> np.ndarray:
    """Return `image` prepared like an MNIST digit: a (28, 28) uint8 array, ink bright.

    `image` is a PIL image, or an array of shape (H, W), (H, W, 1), (H, W, 2) (grey and
    alpha), (H, W, 3) (RGB) or (H, W, 4) (RGBA). Array values are read by dtype: uint8 over
    0..255, uint16 over 0..65535, bool as 0 or 1, floats in [0, 1] or, if larger, [0, 255];
    other integer types in 0..255 or, if larger, 0..65535.

    The steps are those of the module docstring. In the result the background is 0, solid
    ink 255 with anti-aliased edges in between. The ink spans 20 pixels on its longer side,
    measured to a fraction of a pixel with edges counted by their coverage; placed at a
    sub-pixel offset, those 20 pixels touch 20 or 21 rows (or columns), and nothing lies
    outside them. The centre of mass is within a few hundredths of a pixel of
    `TARGET_CENTRE_OF_MASS`, unless part of the digit had to fall outside the 28x28 field
    (a digit whose mass sits at one end) and was cut off.

    `invert`: None reads the image's border as paper and takes for ink whichever side of
    the paper holds more; if that finds no ink (a tight crop of a bold digit can have more
    ink than paper on its border), it tries dark ink on light paper. True reads the image
    as dark ink on light paper, False as light ink on a dark background.
    `min_stroke_width`: strokes thinner than this many output pixels are thickened to it;
    None or 0 keeps them as they are.

    Raises `ImageError` for an unusable array (bad shape, dtype or value range) and
    `EmptyImageError` when no ink is found.
    """
    if min_stroke_width is not None and not 0 <= min_stroke_width < DIGIT_SIZE:
        raise ImageError(
            f"min_stroke_width must be in [0, {DIGIT_SIZE}) output pixels, "
            f"got {min_stroke_width}"
        )
    gray = _to_gray(image)  # (H, W) float32 in [0, 1], longer side <= MAX_WORKING_SIDE
    try:
        ink, extent, stroke_width = _separate_ink(gray, invert)
    except EmptyImageError:
        if invert is not None:
            raise
        # The border was taken for paper, but in a tight crop of a bold digit it can be
        # mostly ink; try the common case, dark ink on light paper, before giving up.
        ink, extent, stroke_width = _separate_ink(gray, True)
    stroke_width *= DIGIT_SIZE / extent  # in output pixels
    working = _resize_to_working(ink, extent)  # the longer side is now WORKING_EXTENT
    if min_stroke_width and stroke_width < min_stroke_width:
        working = _thicken(working, stroke_width, min_stroke_width)
    return _place(working)


def prepare_images(images: Iterable[Image.Image | np.ndarray], **options) -> np.ndarray:
    """Prepare each image with `prepare_image(image, **options)`; return (N, 28, 28) uint8.

    An error names the position of the offending image and keeps its class, so that an
    `EmptyImageError` stays one.
    """
    prepared = []
    for index, image in enumerate(images):
        try:
            prepared.append(prepare_image(image, **options))
        except ImageError as error:
            raise type(error)(f"image {index}: {error}") from None
    return np.stack(prepared) if prepared else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """Return the (row, column) centre of mass of a 2-D array, pixel (i, j) at (i, j).

    This is the definition `prepare_image` centres by. Raises `ValueError` for an array
    whose values sum to zero.
    """
    values = np.asarray(image, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        raise ValueError("centre of mass of an image with no ink (all values zero)")
    rows = values.sum(axis=1) @ np.arange(values.shape[0]) / total
    columns = values.sum(axis=0) @ np.arange(values.shape[1]) / total
    return float(rows), float(columns)


# --- reading -------------------------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    """An exception's message on one line, with its type when the message is empty."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _open_regular_file(path: Path):
    """Open `path` for binary reading if it is a regular file; `ImageError` naming it
    otherwise.

    A named pipe would block a reader forever and a device can be endless, so neither is
    read: the file is opened without waiting (O_NONBLOCK, which regular files ignore) and
    its type is checked on the open file, so that a path swapped after a check cannot slip
    through.
    """
    import stat

    kinds = ((stat.S_ISDIR, "is a directory, not an image file"),
             (stat.S_ISFIFO, "not a regular file (a named pipe); skipped"),
             (stat.S_ISSOCK, "not a regular file (a socket); skipped"),
             (stat.S_ISCHR, "not a regular file (a device); skipped"),
             (stat.S_ISBLK, "not a regular file (a device); skipped"))

    def refuse_unless_regular(mode: int) -> None:
        if not stat.S_ISREG(mode):
            problem = next((text for test, text in kinds if test(mode)),
                           "not a regular file; skipped")
            raise ImageError(f"{path}: {problem}")

    try:
        refuse_unless_regular(os.stat(path).st_mode)  # a socket cannot even be opened
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                             | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        refuse_unless_regular(os.fstat(descriptor).st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _walk_images(directory: Path) -> list[Path]:
    """Image files under `directory`, recursively, skipping hidden names, sorted."""
    found = []
    for root, subdirectories, files in os.walk(directory):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        found.extend(
            Path(root, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        )
    # Sorting by parts, not by the whole string, makes the order the same on every platform
    # whatever its path separator.
    return sorted(found, key=lambda path: path.parts)


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Convert an image to L, LA, RGB, RGBA or F (values in [0, 1])."""
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if image.mode in ("P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "La":
        return image.convert("LA")
    if image.mode == "RGBa":
        return image.convert("RGBA")
    if image.mode.startswith("I;16"):
        return Image.fromarray(np.asarray(image, dtype=np.float32) / 65535.0)
    if image.mode in ("I", "F"):
        values = _scale_values(np.asarray(image), f"of mode {image.mode}")
        return Image.fromarray(values.astype(np.float32))
    # CMYK, YCbCr, LAB, HSV and the rest have a well-defined RGB conversion.
    return image.convert("RGB")


# --- to grey -------------------------------------------------------------------------------


def _to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """Flatten alpha onto white paper and take luma; return (H, W) float32 in [0, 1].

    Images larger than `MAX_WORKING_SIDE` are shrunk by area averaging on the way.
    """
    if isinstance(image, Image.Image):
        image = _normalise_mode(image)
        if max(image.size) > MAX_WORKING_SIDE:
            # Shrinking before converting to floats is several times faster; Pillow averages
            # colour weighted by alpha, so flattening afterwards gives the same result.
            image = image.copy()
            image.thumbnail((MAX_WORKING_SIDE, MAX_WORKING_SIDE), Image.Resampling.BOX)
        values = np.asarray(image, dtype=np.float32)
        if image.mode != "F":
            values = values / np.float32(255.0)
    elif isinstance(image, np.ndarray):
        values = _scale_values(image, "array")
    else:
        raise ImageError(f"expected a PIL image or a NumPy array, got {type(image).__name__}")
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if values.ndim == 2:
        colour, alpha = values, None
    elif values.ndim == 3 and values.shape[2] in (2, 3, 4):
        has_alpha = values.shape[2] in (2, 4)
        colour = values[:, :, :-1] if has_alpha else values
        alpha = values[:, :, -1] if has_alpha else None
        colour = colour[:, :, 0] if colour.shape[2] == 1 else colour @ _LUMA_WEIGHTS
    else:
        raise ImageError(
            f"image array has shape {values.shape}; expected (H, W), (H, W, 1), "
            "(H, W, 2), (H, W, 3) or (H, W, 4)"
        )
    if colour.size == 0:
        raise ImageError(f"image has no pixels (shape {values.shape})")
    if alpha is None:
        return _shrink(colour, MAX_WORKING_SIDE)
    gray = alpha * colour + (1.0 - alpha)  # transparent pixels become white paper
    if np.ptp(gray) < MIN_CONTRAST and np.ptp(alpha) >= MIN_CONTRAST:
        # All the drawing is in the alpha channel (say white strokes on a transparent
        # canvas): read opaque as dark ink on white paper.
        gray = 1.0 - alpha
    return _shrink(gray, MAX_WORKING_SIDE)


def _scale_values(values: np.ndarray, source: str) -> np.ndarray:
    """Map an array's values to [0, 1] according to its dtype (see `prepare_image`)."""
    dtype = values.dtype
    if dtype == np.bool_:
        return values.astype(np.float32)
    if dtype.kind not in "uif":
        raise ImageError(f"image {source} has dtype {dtype}; expected integers, floats or bool")
    values = values.astype(np.float32)
    if values.size and not np.isfinite(values).all():
        raise ImageError(f"image {source} contains NaN or infinite values")
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if dtype == np.uint8:
        return values / 255.0
    if dtype == np.uint16:
        return values / 65535.0
    limits = (1.0, 255.0) if dtype.kind == "f" else (255.0, 65535.0)
    if low < 0 or high > limits[1]:
        raise ImageError(
            f"image {source} of dtype {dtype} has values in [{low:g}, {high:g}]; "
            f"expected values in [0, {limits[0]:g}] or [0, {limits[1]:g}]"
        )
    return values / (limits[0] if high <= limits[0] else limits[1])


# --- finding the ink -----------------------------------------------------------------------


def _separate_ink(gray: np.ndarray, invert: bool | None) -> tuple[np.ndarray, float, float]:
    """Find the ink in `gray` as `_find_ink` does, deciding its polarity if `invert` is None."""
    residual, noise = _subtract_paper(gray, invert)  # paper at 0, ink to one side
    if invert is None:
        invert = _ink_is_dark(residual, noise)
    return _find_ink(-residual if invert else residual, noise)  # ink made bright


def _subtract_paper(gray: np.ndarray, ink_is_dark: bool | None) -> tuple[np.ndarray, float]:
    """Subtract the paper's smooth background; return the residual and its noise level.

    In the residual the paper is about 0 whatever its shade or shadows, and ink lies to one
    side: negative for dark ink, positive for light ink. The noise level is a robust
    standard deviation of the paper's texture, from the median absolute deviation.
    `ink_is_dark` is the polarity if known, else None.
    """
    background, paper = _fit_paper(gray, ink_is_dark)
    residual = gray - background
    paper_residual = residual[paper]
    paper_level = np.median(paper_residual)
    noise = 1.4826 * float(np.median(np.abs(paper_residual - paper_level)))
    return residual - paper_level, noise


def _ink_is_dark(residual: np.ndarray, noise: float) -> bool:
    """Whether more ink lies below the paper level than above it.

    Ink is what departs from the paper by more than its texture and `MIN_CONTRAST`; the side
    with more of it, weighted by how far it departs, is the ink's.
    """
    margin = max(NOISE_SIGMAS * noise, MIN_CONTRAST)
    dark = np.clip(-residual - margin, 0.0, None).sum()
    light = np.clip(residual - margin, 0.0, None).sum()
    return bool(dark > light)


def _find_ink(ink: np.ndarray, noise: float) -> tuple[np.ndarray, float, float]:
    """Threshold bright ink on paper at 0 (a residual from `_subtract_paper`, ink positive).

    Returns the ink's intensity in [0, 1] (0 paper, 1 solid ink, anti-aliased edges kept),
    cropped to the ink and its anti-aliased edge; the longer side of the ink's extent, to a
    fraction of a pixel (see `_extent`); and the strokes' mean width, measured on the
    threshold at full resolution, where it is most accurate. Both in the crop's pixels.
    Raises `EmptyImageError`.
    """
    # Otsu separates ink from paper, but on a page of nearly all paper it can land inside
    # the paper's texture; the floor keeps the threshold above it.
    floor = max(NOISE_SIGMAS * noise, MIN_CONTRAST)
    threshold = max(_otsu_threshold(ink), floor)
    mask = _drop_specks(ink > threshold)
    if mask is None:
        raise EmptyImageError("no ink found in the image")
    ink_level = np.percentile(ink[mask], 90)
    paper_top = 3.0 * noise  # texture below this is paper, even next to ink
    intensity = np.clip((ink - paper_top) / (ink_level - paper_top), 0.0, 1.0)
    # Keep intensity only on and right next to the kept ink, which holds its anti-aliased
    # edge, so that texture and dropped specks elsewhere go to 0.
    intensity *= ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool))
    rows = np.flatnonzero(intensity.any(axis=1))
    columns = np.flatnonzero(intensity.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    intensity = intensity[box]
    extent = max(_extent(intensity.max(axis=1))[1], _extent(intensity.max(axis=0))[1])
    return intensity, extent, _stroke_width(mask[box])


def _extent(profile: np.ndarray) -> tuple[float, float]:
    """Where the ink starts along one axis and its length, to a fraction of a pixel.

    `profile` holds the greatest intensity in each row (or column), relative to the peak.
    Between the first and the last solid one (at least half the peak) everything counts as
    ink, gaps included; those two and the anti-aliased edge beyond them count by their
    coverage. An edge that covers 30% of its pixel thus adds 0.3 pixels, which makes the
    measure agree whether an edge falls on a pixel boundary or not, and a digit prepared
    once measures 20 again. The start is in continuous coordinates (pixel i spans [i, i+1)).
    """
    profile = profile / profile.max()
    solid = np.flatnonzero(profile >= 0.5)
    first, last = solid[0], solid[-1]
    before = profile[first] + profile[:first].sum()  # the coverage up to the first solid one
    after = (profile[last] if last > first else 0.0) + profile[last + 1 :].sum()
    start = first + 1 - before
    return float(start), float(before + max(last - first - 1, 0) + after)


def _fit_paper(gray: np.ndarray, ink_is_dark: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """Fit a smooth surface (a degree-2 polynomial) to the paper, ignoring the ink.

    Returns the surface and a mask of the pixels taken for paper, both (H, W). The fit runs
    on a grid of block medians, which thin strokes do not reach, and refits to the blocks
    near the current surface until they no longer change, so that ink never pulls the
    surface towards itself. The first blocks taken for paper are:

    - with the polarity unknown, those near the median of the image's border;
    - with the polarity known, those on the paper's side of Otsu's split of the blocks,
      which finds the paper even when ink covers most of the image, as in a tight crop of
      a bold digit.
    """
    height, width = gray.shape
    block = max(1, -(-max(height, width) // BACKGROUND_GRID))
    block_h, block_w = min(block, height), min(block, width)
    grid_height, grid_width = height // block_h, width // block_w
    grid = np.median(
        gray[: grid_height * block_h, : grid_width * block_w]
        .reshape(grid_height, block_h, grid_width, block_w)
        .transpose(0, 2, 1, 3)
        .reshape(grid_height, grid_width, -1),
        axis=2,
    )
    # Block centres in coordinates scaled to [-1, 1] over the image, for conditioning.
    y = _unit_coordinates(height, (np.arange(grid_height) + 0.5) * block_h - 0.5)
    x = _unit_coordinates(width, (np.arange(grid_width) + 0.5) * block_w - 0.5)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    terms = np.stack([np.ones_like(yy), yy, xx, yy * yy, yy * xx, xx * xx], axis=-1)
    terms, values = terms.reshape(-1, 6), grid.ravel().astype(np.float64)
    if ink_is_dark is None:
        border = np.concatenate([grid[0], grid[-1], grid[1:-1, 0], grid[1:-1, -1]])
        level = np.median(border)
        spread = 1.4826 * np.median(np.abs(border - level))
        keep = np.abs(values - level) < max(2.5 * spread, 0.02)
        coefficients = np.array([level, 0.0, 0.0, 0.0, 0.0, 0.0])
    else:
        split = _otsu_threshold(values)
        keep = values >= split if ink_is_dark else values <= split
        coefficients = np.array([np.median(values[keep]), 0.0, 0.0, 0.0, 0.0, 0.0])
    for _ in range(20):
        if keep.sum() < 6:  # too little paper for a surface: keep the last one
            break
        coefficients = np.linalg.lstsq(terms[keep], values[keep], rcond=None)[0]
        residual = values - terms @ coefficients
        spread = 1.4826 * np.median(np.abs(residual[keep] - np.median(residual[keep])))
        new_keep = np.abs(residual) < max(2.5 * spread, 0.02)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    # Evaluate on the full grid by broadcasting, without an (H, W, 6) array.
    c0, cy, cx, cyy, cyx, cxx = coefficients
    y = _unit_coordinates(height, np.arange(height))[:, None]
    x = _unit_coordinates(width, np.arange(width))[None, :]
    surface = (c0 + cy * y + cyy * y * y + cx * x + cxx * x * x + cyx * y * x).astype(np.float32)
    paper = np.zeros((height, width), bool)
    paper[: grid_height * block_h, : grid_width * block_w] = np.repeat(
        np.repeat(keep.reshape(grid_height, grid_width), block_h, axis=0), block_w, axis=1
    )
    return surface, paper


def _unit_coordinates(size: int, positions: np.ndarray) -> np.ndarray:
    """Map pixel positions 0..size-1 linearly onto [-1, 1]."""
    return positions / max(size - 1, 1) * 2.0 - 1.0


def _otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold: the level that maximises the between-class variance."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return high
    counts, edges = np.histogram(values, bins=256, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[np.argmax(between) + 1])


def _drop_specks(mask: np.ndarray) -> np.ndarray | None:
    """Remove pieces of ink too small to be part of the digit; None if no digit is left."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.max() < MIN_INK_PIXELS:
        return None
    keep = np.concatenate([[False], sizes >= MIN_PIECE_FRACTION * sizes.max()])
    return keep[labels]


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary mask, in its pixels: 2 * area / perimeter.

    The perimeter counts edges between ink and paper pixels; over strokes of all directions
    that overcounts the true length by 4 / pi on average, which is corrected for.
    """
    padded = np.pad(mask, 1)
    edges = np.count_nonzero(padded[:, 1:] != padded[:, :-1]) + np.count_nonzero(
        padded[1:, :] != padded[:-1, :]
    )
    return 8.0 * np.count_nonzero(mask) / (np.pi * edges)


# --- scaling and placing -------------------------------------------------------------------


def _thicken(working: np.ndarray, stroke_width: float, min_stroke_width: float) -> np.ndarray:
    """Thicken strokes of `stroke_width` output pixels to `min_stroke_width`.

    `working` is the ink at `WORKING_EXTENT` pixels on its longer side; a grey dilation
    keeps the anti-aliased edges. The digit grows too, so that, once scaled back to 20
    pixels, its strokes have the requested width.
    """
    # Dilating by a radius r widens strokes by 2r and the longer side by 2r too, so after
    # rescaling the width is (width + 2r) * 20 / (20 + 2r); solve for r.
    radius = DIGIT_SIZE * (min_stroke_width - stroke_width) / (2 * (DIGIT_SIZE - min_stroke_width))
    radius_px = radius * SUPERSAMPLING
    margin = int(np.ceil(radius_px))
    offsets = np.arange(-margin, margin + 1)
    disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius_px**2
    thick = ndimage.grey_dilation(np.pad(working, margin), footprint=disk)
    # Strokes thinner than a working pixel were averaged down to faint lines; dilation
    # widens them but keeps them faint, so bring their level back up to solid ink.
    peak = np.percentile(thick[thick > 0], 95)
    return np.clip(thick / peak, 0.0, 1.0)


def _shrink(gray: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink `gray` by area averaging so its longer side is at most `max_side`."""
    height, width = gray.shape
    if max(height, width) <= max_side:
        return gray
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    image = Image.fromarray(gray.astype(np.float32)).resize(size, Image.Resampling.BOX)
    return np.asarray(image)


def _resize_to_working(ink: np.ndarray, extent: float) -> np.ndarray:
    """Resize so that `extent` becomes `WORKING_EXTENT` pixels, keeping the aspect ratio.

    Both ways the box filter is used: shrinking, it averages areas; enlarging, it copies
    each pixel to a block, which blurs less than interpolating. The blocks do not show in
    the result, which `_place` averages back down by a factor of `SUPERSAMPLING`.
    """
    height, width = ink.shape
    factor = WORKING_EXTENT / extent
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resized = Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.BOX)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)


def _place(working: np.ndarray) -> np.ndarray:
    """Scale the ink to 20 pixels on its longer side, centred by mass in a 28x28 field.

    The scaling is an exact area average (a box filter) with a sub-pixel offset, done as
    two small matrix products, so that placing costs no blur beyond the scaling itself.
    Blurred edges that reach past the ink's extent (see `_extent`) are moved inside it (see
    `_area_weights`), as MNIST has nothing outside its 20-pixel box.
    """
    start_y, length_y = _extent(working.max(axis=1))
    start_x, length_x = _extent(working.max(axis=0))
    scale = DIGIT_SIZE / max(length_y, length_x)  # output pixels per working pixel
    height, width = working.shape
    total = working.sum()
    # Centre of mass in continuous coordinates, where working pixel i spans [i, i + 1).
    centre_y = working.sum(axis=1) @ (np.arange(height) + 0.5) / total
    centre_x = working.sum(axis=0) @ (np.arange(width) + 0.5) / total
    # Output pixel i spans [i, i + 1) too, so index 14.0 is the continuous coordinate 14.5.
    target_y, target_x = (centre + 0.5 for centre in TARGET_CENTRE_OF_MASS)
    offset_y, offset_x = target_y - scale * centre_y, target_x - scale * centre_x
    offsets, slopes, previous, best = np.array([offset_y, offset_x]), np.ones(2), None, None
    for _ in range(8):
        rows = _area_weights(height, scale, offsets[0], start_y, length_y)  # (28, height)
        columns = _area_weights(width, scale, offsets[1], start_x, length_x)  # (28, width)
        placed = rows @ working @ columns.T
        if placed.sum() <= 0:
            raise EmptyImageError("no ink found in the image")
        # The brightest pixel is solid ink, as in MNIST, even if thin strokes averaged
        # down; where moved edges add up to more than solid ink, it stays solid.
        placed = np.clip(placed / min(placed.max(), 1.0), 0.0, 1.0)
        # The area average, the moved edges and that clipping shift the centre of mass by
        # a little, and not by exactly as much as the offset moves: correct by the secant
        # (the centre's change over the offset's from the last try), redo.
        centre = np.array(centre_of_mass(placed))
        error = np.array(TARGET_CENTRE_OF_MASS) - centre
        if best is None or np.abs(error).max() < best[0]:
            best = (np.abs(error).max(), placed)
        if best[0] < 0.01:
            break
        if previous is not None:
            moved = offsets - previous[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                secant = (centre - previous[1]) / moved
            slopes = np.where(np.abs(moved) > 1e-6, np.clip(secant, 0.25, 4.0), slopes)
        previous = (offsets, centre)
        offsets = offsets + error / slopes
    return np.rint(best[1] * 255).astype(np.uint8)  # the best centred of the tries


def _area_weights(
    source_size: int, scale: float, offset: float, start: float, length: float
) -> np.ndarray:
    """(28, source_size) weights of a box-filter resampling along one axis.

    Source pixel i spans [i, i + 1) and lands on [scale * i + offset, scale * (i + 1) +
    offset) in the output; each output pixel averages the source over its own span. Only
    the part of a pixel inside the ink's extent [start, start + length) lands where it maps
    to: the part outside it (an anti-aliased or blurred edge beyond the extent measured by
    coverage) is moved inside, spread evenly over the extent's first (or last) output pixel
    width. So nothing lands outside the output pixels the extent touches, no ink is lost
    (unless the extent reaches past the 28x28 field), and the result changes continuously
    with the offset, which the centring needs (cutting whole output rows instead made the
    centre of mass jump when the extent's edge crossed a pixel boundary).
    """
    out_low = np.arange(IMAGE_SIZE, dtype=np.float64)[:, None]
    source_low = (out_low - offset) / scale  # output pixel spans, in source coordinates
    source_high = (out_low + 1 - offset) / scale
    pixels = np.arange(source_size, dtype=np.float64)[None, :]
    end = start + length
    inside = (np.minimum(np.minimum(source_high, pixels + 1), end)
              - np.maximum(np.maximum(source_low, pixels), start))
    weights = np.clip(inside, 0.0, None) * scale
    before = np.clip(np.minimum(pixels + 1, start) - pixels, 0.0, 1.0)  # (1, source_size)
    after = np.clip(pixels + 1 - np.maximum(pixels, end), 0.0, 1.0)
    width = min(1.0, scale * length)  # output pixels
    first = scale * start + offset  # where the extent starts and ends, in output pixels
    last = scale * end + offset
    first_band = np.clip(np.minimum(out_low + 1, first + width) - np.maximum(out_low, first),
                         0.0, None) / width  # (28, 1): the share of the band in each pixel
    last_band = np.clip(np.minimum(out_low + 1, last) - np.maximum(out_low, last - width),
                        0.0, None) / width
    return weights + scale * (first_band * before + last_band * after)
