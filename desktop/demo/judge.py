"""Judging a generated image automatically: background and shape colour, shape, size, position, edges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desktop.demo.domain import PALETTE, nearest_colour, position_of, size_of

BORDER = 3  # pixels of the frame that decide the background colour
SHAPE_DISTANCE = 80.0  # RGB distance from the background that surely is shape: what its colour is read from
STRAY_DISTANCE = 40.0  # a frame pixel this far from the background, away from the shape, is an artifact
LINE_DISTANCE = 10.0  # a frame side whose median is this far off the background is a line along the edge
# Fill ratios (of the shape's box) below which a shape is judged a triangle, then a circle (above: a
# square). Drawn sharp they fill 1/2, pi/4 and all of it, but the decoder draws slightly soft: small
# squares come back with rounded corners (fill 0.85-0.99) and small triangles with a blunt apex (up to
# 0.73), so the midpoints of the sharp ratios (0.64, 0.89) misjudged 6 % of the small squares and 10 % of
# the small triangles that came back as well as the decoder draws them. These cuts, from
# `evaluate.calibrate_shape_cuts` on its round trip of 2,000 rendered images, misjudge 3.
SHAPE_CUTS = (("triangle", 0.732), ("circle", 0.865))


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
    if mask.sum() < 16:
        return Verdict(None, None, background, 0.0, edge_artifacts=edge_artifacts(distance, mask))
    colour = nearest_colour(np.median(pixels[mask], axis=0))
    edge = max(half_contrast(colour, background), STRAY_DISTANCE)
    # what explains frame pixels reaches out to the soft edge, even where the pair is far apart
    artifacts = edge_artifacts(distance, distance > min(edge, SHAPE_DISTANCE))
    mask = distance > edge
    rows = np.flatnonzero(mask.sum(axis=1) >= 2)
    cols = np.flatnonzero(mask.sum(axis=0) >= 2)
    if len(rows) == 0 or len(cols) == 0:
        return Verdict(colour, None, background, 0.0, edge_artifacts=artifacts)
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    fill = float(box.mean())
    shape = next((name for name, cut in SHAPE_CUTS if fill < cut), "square")
    centre = ((cols[0] + cols[-1] + 1) / 2, (rows[0] + rows[-1] + 1) / 2)
    return Verdict(colour, shape, background, fill, size_of(float(mask.mean())),
                   position_of(*centre, size=pixels.shape[1]), artifacts)


def half_contrast(colour: str, background: str) -> float:
    """Where a soft edge lies: halfway from the background to the shape's colour. A blur keeps that contour
    in place, where a higher cut rounds a small shape's corners off and shrinks it; the fixed SHAPE_DISTANCE
    is nearly all of a low-contrast pair's (yellow and orange are 91 apart)."""
    return float(np.linalg.norm(np.subtract(PALETTE[colour], PALETTE[background]))) / 2


def _grow(mask: np.ndarray, pixels: int, shrink: bool = False, diagonal: bool = False) -> np.ndarray:
    """Dilate (or erode) a mask by a number of pixels, 4-connected (8-connected with `diagonal`)."""
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if diagonal or abs(dy) + abs(dx) < 2]
    combine = np.logical_and if shrink else np.logical_or
    out = mask
    for _ in range(pixels):
        padded = np.pad(out, 1, constant_values=shrink)  # beyond the image: neither grows nor erodes the mask
        step = out.copy()
        for dy, dx in steps:
            step = combine(step, padded[1 + dy : 1 + dy + out.shape[0], 1 + dx : 1 + dx + out.shape[1]])
        out = step
    return out


def edge_artifacts(distance: np.ndarray, shape: np.ndarray, reach: int = 3) -> int:
    """Off-colour pixels on the outermost ring that the shape does not explain, and lines along a side.

    The shape is the off-background area without specks (an opening removes lone pixels); pixels within
    `reach` of it, diagonals included, are its own soft edge where it comes near the frame.
    """
    near = _grow(_grow(shape, 1, shrink=True), reach + 1, diagonal=True)
    ring = np.zeros_like(shape)
    ring[0] = ring[-1] = True
    ring[:, 0] = ring[:, -1] = True
    stray = int(((distance > STRAY_DISTANCE) & ring & ~near).sum())
    sides = [(distance[0], near[0]), (distance[-1], near[-1]), (distance[:, 0], near[:, 0]), (distance[:, -1], near[:, -1])]
    lines = sum(1 for d, n in sides if (~n).sum() > 8 and float(np.median(d[~n])) > LINE_DISTANCE)
    return stray + lines
