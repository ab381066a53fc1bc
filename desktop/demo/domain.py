"""The fixed domain of the shipped model: palette, shapes, sizes, positions, captions.

The evaluation depends on every number here: a caption's words are a promise about the pixels.
"""

from __future__ import annotations

import random

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
IMAGE_SIZE = 128

# Fraction of the image the shape covers. No size word in a caption means medium.
SIZES = {"small": (0.03, 0.08), "medium": (0.10, 0.20), "large": (0.25, 0.45)}
SIZE_WORDS = ("small", "large")
# A position is the third of the image the shape's centre falls in: (column, row), 0..2 each.
POSITIONS = {
    "top left": (0, 0), "top": (1, 0), "top right": (2, 0),
    "left": (0, 1), "center": (1, 1), "right": (2, 1),
    "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2),
}
# How people say it: the canonical "in the ..." first, then the phrasings the model also learns.
_ALTERNATES = {
    "top left": ("at the top left",), "top": ("at the top",), "top right": ("at the top right",),
    "left": ("on the left",), "center": ("in the middle", "at the center"), "right": ("on the right",),
    "bottom left": ("at the bottom left",), "bottom": ("at the bottom",), "bottom right": ("at the bottom right",),
}


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def position_phrases(position: str) -> tuple[str, ...]:
    """Every phrasing of a position; the first is the canonical one."""
    return (f"in the {position}", *_ALTERNATES[position])


def caption(colour: str, shape: str, background: str, size: str = "medium", position: str | None = None,
            phrase: int = 0) -> str:
    """'a small red circle in the top left on a blue background'; medium size and anywhere are unsaid."""
    words = [colour, shape] if size == "medium" else [size, colour, shape]
    text = f"{article(words[0])} {' '.join(words)}"
    if position is not None:
        text += " " + position_phrases(position)[phrase]
    return f"{text} on {article(background)} {background} background"


def random_caption_wording(rng: random.Random, position: str | None) -> int:
    """Which phrasing a training caption uses: mostly canonical, sometimes a common alternative."""
    if position is None:
        return 0
    return 0 if rng.random() < 0.7 else rng.randrange(1, len(position_phrases(position)))


def vocabulary() -> list[str]:
    """Every word a caption can hold; each becomes one token. New words go at the end: earlier ids stay."""
    return ["a", "on", "background", *COLOURS, *SHAPES,
            "an", "small", "large", "in", "the", "at", "top", "bottom", "left", "right", "center", "middle"]


def size_of(fraction: float) -> str:
    """The size word for a covered fraction of the image, cut halfway between the ranges."""
    if fraction < (SIZES["small"][1] + SIZES["medium"][0]) / 2:
        return "small"
    if fraction < (SIZES["medium"][1] + SIZES["large"][0]) / 2:
        return "medium"
    return "large"


def position_of(cx: float, cy: float, size: int = IMAGE_SIZE) -> str:
    """The position name of a centre point (pixel coordinates)."""
    cell = (min(2, int(3 * cx / size)), min(2, int(3 * cy / size)))
    return next(name for name, where in POSITIONS.items() if where == cell)


def nearest_colour(rgb) -> str:
    r, g, b = (float(v) for v in rgb)
    return min(PALETTE, key=lambda name: sum((x - y) ** 2 for x, y in zip((r, g, b), PALETTE[name])))
