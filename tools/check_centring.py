"""Measure how well `prepare_image` centres digits, prepared once and prepared again.

    .venv/bin/python tools/check_centring.py --data-dir ../shared/datasets/mnist
    git show 35171eb:src/mnistlab/prepare.py > /tmp/prepare_old.py
    .venv/bin/python tools/check_centring.py --data-dir ../shared/datasets/mnist \\
        --compare /tmp/prepare_old.py            # another prepare.py, side by side

The contract (src/mnistlab/prepare.py): the centre of mass within a few hundredths of a pixel
of (14.0, 14.0), the ink 20 or 21 pixels on its longer side. Two sets of digits:

* synthetic: `--digits` strokes (a seven, a one, a zero, a four, as polylines and ellipses)
  drawn with PIL at random places, sizes and pen widths on a 160x160 canvas, dark on light
  or the reverse (seeded by `--seed`); each is prepared, and the result prepared again, which
  is where placement errors show (the input is already anti-aliased at 28x28);
* MNIST: the first `--mnist` test images of `--data-dir`, prepared again.

For each it prints the largest distance of the centre of mass from (14, 14) (the larger of
row and column), its 99th percentile, how many are more than 0.02 and 0.1 px off, and how
many break the 20-or-21 extent ("bad extent").
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

SHAPES = {
    "seven": [("line", [(0.1, 0.05), (0.9, 0.05), (0.45, 0.95)])],
    "one": [("line", [(0.35, 0.2), (0.6, 0.02), (0.55, 0.98)])],
    "zero": [("ellipse", [(0.12, 0.02), (0.88, 0.98)])],
    "four": [("line", [(0.65, 0.02), (0.08, 0.65), (0.92, 0.65)]),
             ("line", [(0.68, 0.3), (0.68, 0.98)])],
}


def draw(rng: np.random.Generator) -> Image.Image:
    """One random digit-like drawing on a 160x160 canvas."""
    left, top = rng.integers(0, 61, 2)
    width, height = rng.integers(30, 96), rng.integers(40, 96)
    dark = rng.random() < 0.5
    image = Image.new("L", (160, 160), 255 if dark else 0)
    pen = max(1, round(rng.uniform(3, 14)))
    for kind, points in SHAPES[sorted(SHAPES)[rng.integers(len(SHAPES))]]:
        xy = [(left + x * width, top + y * height) for x, y in points]
        if kind == "line":
            ImageDraw.Draw(image).line(xy, fill=0 if dark else 255, width=pen, joint="curve")
        else:
            ImageDraw.Draw(image).ellipse(xy, outline=0 if dark else 255, width=pen)
    return image


def centring_error(prepared: np.ndarray) -> float:
    values = prepared.astype(np.float64)
    row = values.sum(axis=1) @ np.arange(28) / values.sum()
    column = values.sum(axis=0) @ np.arange(28) / values.sum()
    return max(abs(row - 14.0), abs(column - 14.0))


def extent_ok(prepared: np.ndarray) -> bool:
    rows, columns = np.flatnonzero(prepared.any(axis=1)), np.flatnonzero(prepared.any(axis=0))
    return max(rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1) in (20, 21)


def load_prepare(path: Path | None):
    """`prepare_image` of the installed package, or of the prepare.py at `path`."""
    if path is None:
        from mnistlab.prepare import prepare_image

        return prepare_image
    spec = importlib.util.spec_from_file_location("prepare_compared", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.prepare_image


def summary(prepared: list[np.ndarray]) -> list[str]:
    errors = np.array([centring_error(image) for image in prepared])
    return [f"{errors.max():.3f}", f"{np.quantile(errors, 0.99):.3f}",
            str(int((errors > 0.02).sum())), str(int((errors > 0.1).sum())),
            str(sum(not extent_ok(image) for image in prepared))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--digits", type=int, default=3000)
    parser.add_argument("--mnist", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", type=Path, help="another prepare.py to measure too")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    drawings = [draw(rng) for _ in range(args.digits)]
    with gzip.open(args.data_dir / "t10k-images-idx3-ubyte.gz") as file:
        mnist = np.frombuffer(file.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    mnist = mnist[:args.mnist]
    table = Table(title=f"Centre of mass: distance from (14, 14) in pixels ({args.digits} "
                        f"drawn digits, {args.mnist} MNIST test digits)")
    for column in ("code", "digits", "max", "p99", ">0.02", ">0.1", "bad extent"):
        table.add_column(column, no_wrap=True,
                         justify="left" if column in ("code", "digits") else "right")
    versions = [("this tree", None)] + ([(args.compare.name, args.compare)]
                                        if args.compare else [])
    for name, path in versions:
        prepare = load_prepare(path)
        once = [prepare(image) for image in drawings]
        rows = [("drawn, once", once),
                ("drawn, twice", [prepare(image) for image in once]),
                ("MNIST, again", [prepare(image) for image in mnist])]
        for label, prepared in rows:
            table.add_row(name, label, *summary(prepared))
    Console().print(table)


if __name__ == "__main__":
    main()
