"""Seeded training pairs: (image, caption), unlimited and reproducible."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from desktop.demo.domain import (COLOURS, IMAGE_SIZE, PALETTE, POSITIONS, SHAPES, SIZES, caption,
                                 random_caption_wording)

POSITION_SHARE = 0.6  # captions that name a position; the rest mean "anywhere"
_MARGIN = 2  # the centre stays this far inside its third, so the caption holds after anti-aliasing
_TRIES = 40


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    caption: str
    colour: str
    shape: str
    background: str
    box: tuple[int, int, int, int]  # the shape's bounding box, (x0, y0, x1, y1) exclusive
    size: str = "medium"
    position: str | None = None  # None: the caption names no position


def render(seed: int, size: int = IMAGE_SIZE) -> Sample:
    """One image with its caption; the same seed always gives the same pair."""
    rng = random.Random(seed)
    shape = rng.choice(SHAPES)
    colour = rng.choice(COLOURS)
    background = rng.choice([c for c in COLOURS if c != colour])
    size_name = rng.choice(tuple(SIZES))
    position = rng.choice(tuple(POSITIONS)) if rng.random() < POSITION_SHARE else None
    while not fits(shape, size_name, position, size):
        position = rng.choice(tuple(POSITIONS))
    return draw(shape, colour, background, rng, size, size_name, position, random_caption_wording(rng, position))


def _box_size(shape: str, area: float, aspect: float) -> tuple[int, int]:
    if shape == "circle":
        return (round(2 * math.sqrt(area / math.pi)),) * 2
    if shape == "square":
        return (round(math.sqrt(area)),) * 2
    w = round(math.sqrt(2 * area * aspect))  # an isosceles triangle fills half its box
    return w, round(2 * area / w)


def _centre_range(extent: int, third: int | None, size: int) -> tuple[float, float]:
    """Where a box's centre may lie on one axis: inside the image, and inside the third if one is named."""
    low, high = extent / 2 + 1, size - 1 - extent / 2
    if third is not None:
        low, high = max(low, size * third / 3 + _MARGIN), min(high, size * (third + 1) / 3 - _MARGIN)
    return low, high


def _place(shape: str, size_name: str, position: str | None, rng: random.Random, size: int):
    """A box (x0, y0, w, h) for the shape, or None when this draw does not fit."""
    area = rng.uniform(*SIZES[size_name]) * size * size
    w, h = _box_size(shape, area, rng.uniform(0.8, 1.25))
    column, row = POSITIONS[position] if position else (None, None)
    (xl, xh), (yl, yh) = _centre_range(w, column, size), _centre_range(h, row, size)
    if xl > xh or yl > yh:
        return None
    cx, cy = rng.uniform(xl, xh), rng.uniform(yl, yh)
    return round(cx - w / 2), round(cy - h / 2), w, h


def fits(shape: str, size_name: str, position: str | None, size: int = IMAGE_SIZE) -> bool:
    """Whether the renderer can draw this combination at all (a large triangle in a corner cannot)."""
    rng = random.Random(0)
    return any(_place(shape, size_name, position, rng, size) for _ in range(_TRIES))


def draw(shape: str, colour: str, background: str, rng: random.Random, size: int = IMAGE_SIZE,
         size_name: str = "medium", position: str | None = None, phrase: int = 0) -> Sample:
    placed = None
    for _ in range(_TRIES):
        placed = _place(shape, size_name, position, rng, size)
        if placed:
            break
    if placed is None:
        raise ValueError(f"a {size_name} {shape} does not fit in the {position}")
    image = Image.new("RGB", (size, size), PALETTE[background])
    box = _paint(image, shape, colour, placed)
    text = caption(colour, shape, background, size_name, position, phrase)
    return Sample(image, text, colour, shape, background, box, size_name, position)


def _paint(image: Image.Image, shape: str, colour: str, placed: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Draw the shape in its box (x0, y0, w, h); returns the box as (x0, y0, x1, y1), exclusive."""
    x0, y0, w, h = placed
    pen, fill = ImageDraw.Draw(image), PALETTE[colour]
    if shape == "circle":
        pen.ellipse((x0, y0, x0 + w - 1, y0 + h - 1), fill=fill)
    elif shape == "square":
        pen.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), fill=fill)
    else:
        pen.polygon([(x0, y0 + h - 1), (x0 + w - 1, y0 + h - 1), (x0 + (w - 1) / 2, y0)], fill=fill)
    return x0, y0, x0 + w, y0 + h


def apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    """Whether two boxes (x0, y0, x1, y1) are at least `gap` pixels apart on some axis."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


ADDED_SIZES = ("small", "medium")  # a large second shape rarely fits beside the first


def add_shape(sample: Sample, rng: random.Random, gap: int = 6) -> Sample | None:
    """A second shape drawn at least `gap` pixels from the first; the Sample describes the added shape
    alone (its caption, on the same background) and holds the image with both. None when none fits."""
    shape, colour = rng.choice(SHAPES), rng.choice([c for c in COLOURS if c != sample.background])
    size_name = rng.choice(ADDED_SIZES)
    size = sample.image.width
    positions = [p for p in POSITIONS if fits(shape, size_name, p, size)]
    for _ in range(_TRIES):
        position = rng.choice(positions)
        placed = _place(shape, size_name, position, rng, size)
        if placed and apart(sample.box, (placed[0], placed[1], placed[0] + placed[2], placed[1] + placed[3]), gap):
            image = sample.image.copy()
            box = _paint(image, shape, colour, placed)
            named = position if rng.random() < POSITION_SHARE else None
            text = caption(colour, shape, sample.background, size_name, named, random_caption_wording(rng, named))
            return Sample(image, text, colour, shape, sample.background, box, size_name, named)
    return None
