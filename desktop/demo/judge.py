"""Judging a generated image automatically: background and shape colour, shape, size, position, edges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desktop.demo.domain import FILL_RATIO, PALETTE, nearest_colour, position_of, size_of

BORDER = 3  # pixels of the frame that decide the background colour
SHAPE_DISTANCE = 80.0  # RGB distance from the background that counts as "shape"
STRAY_DISTANCE = 40.0  # a frame pixel this far from the background, away from the shape, is an artifact
LINE_DISTANCE = 10.0  # a frame side whose median is this far off the background is a line along the edge


@dataclass(frozen=True)
class Verdict:
    colour: str | None
    shape: str | None
    background: str
    fill_ratio: float
    size: str | None = None
    position: str | None = None
    edge_artifacts: int = 0  # stray pixels on the outermost ring, plus 1 per side with a line along it


def judge(image) -> Verdict:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    frame = np.concatenate([
        pixels[:BORDER].reshape(-1, 3), pixels[-BORDER:].reshape(-1, 3),
        pixels[:, :BORDER].reshape(-1, 3), pixels[:, -BORDER:].reshape(-1, 3),
    ])
    background = nearest_colour(np.median(frame, axis=0))
    distance = np.linalg.norm(pixels - np.array(PALETTE[background], dtype=np.float32), axis=2)
    mask = distance > SHAPE_DISTANCE
    artifacts = edge_artifacts(distance, mask)
    if mask.sum() < 16:
        return Verdict(None, None, background, 0.0, edge_artifacts=artifacts)
    colour = nearest_colour(np.median(pixels[mask], axis=0))
    rows = np.flatnonzero(mask.sum(axis=1) >= 2)
    cols = np.flatnonzero(mask.sum(axis=0) >= 2)
    if len(rows) == 0 or len(cols) == 0:
        return Verdict(colour, None, background, 0.0, edge_artifacts=artifacts)
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    fill = float(box.mean())
    shape = min(FILL_RATIO, key=lambda name: abs(FILL_RATIO[name] - fill))
    centre = ((cols[0] + cols[-1] + 1) / 2, (rows[0] + rows[-1] + 1) / 2)
    return Verdict(colour, shape, background, fill, size_of(float(mask.mean())),
                   position_of(*centre, size=pixels.shape[1]), artifacts)


def _grow(mask: np.ndarray, pixels: int, shrink: bool = False) -> np.ndarray:
    """Dilate (or erode) a mask by a number of pixels, 4-connected."""
    out = mask.copy()
    for _ in range(pixels):
        shifted = [out[1:], out[:-1], out[:, 1:], out[:, :-1]]
        step = out.copy()
        combine = np.logical_and if shrink else np.logical_or
        step[:-1] = combine(step[:-1], shifted[0])
        step[1:] = combine(step[1:], shifted[1])
        step[:, :-1] = combine(step[:, :-1], shifted[2])
        step[:, 1:] = combine(step[:, 1:], shifted[3])
        out = step
    return out


def edge_artifacts(distance: np.ndarray, shape: np.ndarray, reach: int = 3) -> int:
    """Off-colour pixels on the outermost ring that the shape does not explain, and lines along a side.

    The shape is the off-background area without specks (an opening removes lone pixels); pixels within
    `reach` of it are its own anti-aliased edge where it touches the frame.
    """
    near = _grow(_grow(shape, 1, shrink=True), reach + 1)
    ring = np.zeros_like(shape)
    ring[0] = ring[-1] = True
    ring[:, 0] = ring[:, -1] = True
    stray = int(((distance > STRAY_DISTANCE) & ring & ~near).sum())
    sides = [(distance[0], near[0]), (distance[-1], near[-1]), (distance[:, 0], near[:, 0]), (distance[:, -1], near[:, -1])]
    lines = sum(1 for d, n in sides if (~n).sum() > 8 and float(np.median(d[~n])) > LINE_DISTANCE)
    return stray + lines
