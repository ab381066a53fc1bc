"""The fixed domain of the shipped model: palette, shapes, captions (the evaluation depends on it)."""

from __future__ import annotations


PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (130, 40, 170),
    "orange": (245, 130, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
# Fill ratio of the shape inside its bounding box: how the evaluation tells shapes apart.
FILL_RATIO = {"square": 1.0, "circle": 0.785, "triangle": 0.5}
IMAGE_SIZE = 128
AREA_RANGE = (0.08, 0.45)  # fraction of the image the shape covers


def caption(colour: str, shape: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


def vocabulary() -> list[str]:
    """Every word a caption can hold; each becomes one token."""
    return ["a", "on", "background", *COLOURS, *SHAPES]


def nearest_colour(rgb) -> str:
    r, g, b = (float(v) for v in rgb)
    return min(PALETTE, key=lambda name: sum((x - y) ** 2 for x, y in zip((r, g, b), PALETTE[name])))
