"""Seeded training pairs: (image, caption), unlimited and reproducible."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from desktop.demo.domain import AREA_RANGE, COLOURS, IMAGE_SIZE, PALETTE, SHAPES, caption


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    caption: str
    colour: str
    shape: str
    background: str
    box: tuple[int, int, int, int]  # the shape's bounding box, (x0, y0, x1, y1) exclusive


def render(seed: int, size: int = IMAGE_SIZE) -> Sample:
    """One image with its caption; the same seed always gives the same pair."""
    rng = random.Random(seed)
    shape = rng.choice(SHAPES)
    colour = rng.choice(COLOURS)
    background = rng.choice([c for c in COLOURS if c != colour])
    return draw(shape, colour, background, rng, size)


def draw(shape: str, colour: str, background: str, rng: random.Random, size: int = IMAGE_SIZE) -> Sample:
    area = rng.uniform(*AREA_RANGE) * size * size
    if shape == "circle":
        w = h = round(2 * math.sqrt(area / math.pi))
    elif shape == "square":
        w = h = round(math.sqrt(area))
    else:  # an isosceles triangle filling half its box, a little wider or taller at random
        aspect = rng.uniform(0.8, 1.25)
        w = round(math.sqrt(2 * area * aspect))
        h = round(2 * area / w)
    w, h = min(w, size - 2), min(h, size - 2)
    x0 = rng.randint(1, size - 1 - w)
    y0 = rng.randint(1, size - 1 - h)
    box = (x0, y0, x0 + w, y0 + h)

    image = Image.new("RGB", (size, size), PALETTE[background])
    pen = ImageDraw.Draw(image)
    fill = PALETTE[colour]
    if shape == "circle":
        pen.ellipse((x0, y0, x0 + w - 1, y0 + h - 1), fill=fill)
    elif shape == "square":
        pen.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), fill=fill)
    else:
        pen.polygon([(x0, y0 + h - 1), (x0 + w - 1, y0 + h - 1), (x0 + (w - 1) / 2, y0)], fill=fill)
    return Sample(image, caption(colour, shape, background), colour, shape, background, box)
