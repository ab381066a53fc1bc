"""Judging a generated image automatically: background colour, shape colour, shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desktop.demo.domain import FILL_RATIO, PALETTE, nearest_colour

BORDER = 3  # pixels of the frame that decide the background colour
SHAPE_DISTANCE = 80.0  # RGB distance from the background that counts as "shape"


@dataclass(frozen=True)
class Verdict:
    colour: str | None
    shape: str | None
    background: str
    fill_ratio: float


def judge(image) -> Verdict:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    frame = np.concatenate([
        pixels[:BORDER].reshape(-1, 3), pixels[-BORDER:].reshape(-1, 3),
        pixels[:, :BORDER].reshape(-1, 3), pixels[:, -BORDER:].reshape(-1, 3),
    ])
    background = nearest_colour(np.median(frame, axis=0))
    distance = np.linalg.norm(pixels - np.array(PALETTE[background], dtype=np.float32), axis=2)
    mask = distance > SHAPE_DISTANCE
    if mask.sum() < 16:
        return Verdict(None, None, background, 0.0)
    colour = nearest_colour(np.median(pixels[mask], axis=0))
    rows = np.flatnonzero(mask.sum(axis=1) >= 2)
    cols = np.flatnonzero(mask.sum(axis=0) >= 2)
    if len(rows) == 0 or len(cols) == 0:
        return Verdict(colour, None, background, 0.0)
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    fill = float(box.mean())
    shape = min(FILL_RATIO, key=lambda name: abs(FILL_RATIO[name] - fill))
    return Verdict(colour, shape, background, fill)
