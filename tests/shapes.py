"""Ten synthetic shapes standing in for digits: a dataset any model learns in seconds."""

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def draw_shape(kind: int, rng: np.random.Generator, size: int = 28) -> Image.Image:
    """One of ten shapes, white on black, in MNIST's 20-pixel box with a little jitter."""
    scale = size / 28
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    width = max(1, round(rng.uniform(2.0, 3.5) * scale))
    dx, dy = rng.uniform(-1, 1, 2) * scale
    top, bottom = 4 * scale + dy, 24 * scale + dy
    left, right = 7 * scale + dx, 21 * scale + dx
    middle_x, middle_y = 14 * scale + dx, 14 * scale + dy
    shapes = {
        0: lambda: draw.ellipse([left, top, right, bottom], outline=255, width=width),
        1: lambda: draw.line([(middle_x, top), (middle_x, bottom)], fill=255, width=width),
        2: lambda: draw.line([(left, top), (right, top), (left, bottom), (right, bottom)],
                             fill=255, width=width),
        3: lambda: draw.line([(4 * scale + dx, middle_y), (24 * scale + dx, middle_y)],
                             fill=255, width=width),
        4: lambda: (draw.line([(middle_x, top), (middle_x, bottom)], fill=255, width=width),
                    draw.line([(4 * scale + dx, middle_y), (24 * scale + dx, middle_y)],
                              fill=255, width=width)),
        5: lambda: (draw.line([(left, top), (right, bottom)], fill=255, width=width),
                    draw.line([(right, top), (left, bottom)], fill=255, width=width)),
        6: lambda: draw.rectangle([left, top, right, bottom], outline=255, width=width),
        7: lambda: draw.line([(left, top), (right, top), (left + 2 * scale, bottom)],
                             fill=255, width=width),
        8: lambda: (draw.ellipse([left + scale, top, right - scale, middle_y], outline=255,
                                 width=width),
                    draw.ellipse([left, middle_y, right, bottom], outline=255, width=width)),
        9: lambda: draw.polygon([(middle_x, top), (right, bottom), (left, bottom)],
                                outline=255, width=width),
    }
    shapes[kind]()
    return image


def make_shapes_dataset(per_class: int = 30, seed: int = 0):
    """A dataset object (as `train_and_evaluate` takes) of ten synthetic shapes."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)

    def make(count):
        labels = np.repeat(np.arange(10, dtype=np.uint8), count)
        images = np.stack([np.asarray(draw_shape(int(label), rng)) for label in labels])
        return images, labels

    train_images, train_labels = make(per_class)
    test_images, test_labels = make(5)
    return SimpleNamespace(name="shapes", train_images=train_images, train_labels=train_labels,
                           test_images=test_images, test_labels=test_labels,
                           class_names=CLASS_NAMES, source="memory", checksums={},
                           verified=False)


def make_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable synthetic digits: each class lights its own band of rows, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)
    images = rng.integers(0, 60, size=(count, 28, 28)).astype(np.uint8)
    for label in range(10):
        images[labels == label, 2 * label + 4:2 * label + 7, 4:24] = 220
    return images, labels
