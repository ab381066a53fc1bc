"""X/Y/Z plots: one setting varied along each axis, every combination generated, one labelled grid.

As A1111's X/Y/Z plot script: an axis is `name=v1,v2,...` over steps, guidance, sampler, seed,
prompt search/replace (the first value is the text searched for; each value replaces it, the first
leaving the prompt as it is), strength (of an edit) or lora (the weight of the prompt's one
`<lora:NAME:W>` tag). Values with commas or spaces are quoted, CSV style: `sampler=Euler,"DPM++ 2M"`.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import re
from dataclasses import dataclass

from desktop.engine.request import GenerationRequest
from desktop.errors import InvalidRequest

AXIS_NAMES = ("steps", "guidance", "sampler", "seed", "prompt", "strength", "lora")
_ALIASES = {"cfg": "guidance", "scheduler": "sampler", "prompt_sr": "prompt", "denoise": "strength",
            "lora_weight": "lora"}
_LORA_TAG = re.compile(r"<lora:([^:>]+)(:[^>]*)?>", re.I)
MAX_CELLS = 100


@dataclass(frozen=True)
class Axis:
    name: str  # one of AXIS_NAMES
    values: tuple  # typed: int, float or str

    @property
    def labels(self) -> tuple[str, ...]:
        if self.name == "prompt":
            return tuple(f'"{v}"' for v in self.values)
        title = {"guidance": "CFG", "lora": "LoRA weight"}.get(self.name, self.name.capitalize())
        return tuple(f"{title}: {v:g}" if isinstance(v, float) else f"{title}: {v}" for v in self.values)

    def as_dict(self) -> dict:
        return {"name": self.name, "values": list(self.values)}


@dataclass(frozen=True)
class Cell:
    position: tuple[int, int, int]  # x, y, z indices
    request: GenerationRequest


def axes_record(x: Axis, y: Axis | None = None, z: Axis | None = None) -> dict:
    """The axes as plain data ({"x": {"name", "values"}, ...}): a queued job and the grid's metadata keep this."""
    return {key: axis.as_dict() for key, axis in (("x", x), ("y", y), ("z", z)) if axis is not None}


def axes_from_record(record: dict) -> tuple[Axis, Axis | None, Axis | None]:
    """axes_record() read back; the values are parsed again, so a stored job is checked like a typed one."""
    def axis(key: str) -> Axis | None:
        data = record.get(key)
        if not data:
            return None
        values = ",".join('"' + str(v).replace('"', '""') + '"' for v in data["values"])
        return parse_axis(f"{data['name']}={values}", f"--{key}")

    x, y, z = axis("x"), axis("y"), axis("z")
    if x is None or (z is not None and y is None):
        raise InvalidRequest("A grid needs an x axis, and a y axis before a z axis.")
    return x, y, z


def parse_axis(text: str, flag: str = "--x") -> Axis:
    """`name=v1,v2,...` into a typed Axis; anything wrong is one line naming the flag and the value."""
    from desktop.engine.schedulers import canonical_name

    name, sep, rest = text.partition("=")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if not sep or name not in AXIS_NAMES:
        raise InvalidRequest(f"{flag} {text!r}: write NAME=V1,V2,... with NAME one of {', '.join(AXIS_NAMES)}.")
    try:
        raw = [v.strip() for v in next(csv.reader([rest], skipinitialspace=True))]
    except (csv.Error, StopIteration):
        raw = []
    if not raw or any(v == "" for v in raw):
        raise InvalidRequest(f"{flag} {name}: give one or more values separated by commas (got {rest!r}).")
    kind = {"steps": int, "seed": int, "guidance": float, "strength": float, "lora": float}.get(name, str)
    try:
        values = tuple(canonical_name(v) if name == "sampler" else kind(v) for v in raw)
    except ValueError:
        bad = next(v for v in raw if not _parses(kind, v))
        raise InvalidRequest(f"{flag} {name}: {bad!r} is not {'a whole number' if kind is int else 'a number'}.") from None
    if len(set(values)) != len(values):
        raise InvalidRequest(f"{flag} {name}: a value is given twice ({', '.join(raw)}).")
    return Axis(name, values)


def _parses(kind, text: str) -> bool:
    try:
        kind(text)
        return True
    except ValueError:
        return False


def apply(request: GenerationRequest, axis: Axis, value) -> GenerationRequest:
    """The request with this axis set to this value."""
    if axis.name == "steps":
        return request.replace(steps=value)
    if axis.name == "guidance":
        return request.replace(guidance=value)
    if axis.name == "sampler":
        return request.replace(scheduler=value)
    if axis.name == "seed":
        return request.replace(seed=value)
    if axis.name == "prompt":
        search = axis.values[0]
        return request.replace(prompt=request.prompt.replace(search, value),
                               negative_prompt=request.negative_prompt.replace(search, value))
    if axis.name == "strength":
        return request.replace(edit=dataclasses.replace(request.edit, strength=value))
    return request.replace(prompt=_LORA_TAG.sub(lambda m: f"<lora:{m.group(1)}:{value:g}>", request.prompt))


def check(base: GenerationRequest, axes: list[Axis]) -> None:
    """What the axes need from the request, and a sane size, said before anything runs."""
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise InvalidRequest(f"Each setting can be on one axis only ({', '.join(names)}).")
    for axis in axes:
        if axis.name == "prompt" and axis.values[0] not in base.prompt + base.negative_prompt:
            raise InvalidRequest(f"The prompt axis searches for {axis.values[0]!r}, which is not in the prompt.")
        if axis.name == "strength" and base.edit is None:
            raise InvalidRequest("The strength axis needs an image to edit: add --init-image PATH.")
        if axis.name == "lora" and len(_LORA_TAG.findall(base.prompt)) != 1:
            raise InvalidRequest("The lora axis sets the weight of the prompt's <lora:NAME:W> tag: the prompt "
                                 "needs exactly one.")
    count = 1
    for axis in axes:
        count *= len(axis.values)
    if count > MAX_CELLS:
        raise InvalidRequest(f"The grid would have {count} images; keep it to {MAX_CELLS} or fewer.")


def cells(base: GenerationRequest, x: Axis, y: Axis | None = None, z: Axis | None = None) -> list[Cell]:
    """Every combination, z slowest then y then x (the order they are drawn in); each validated."""
    axes = [a for a in (x, y, z) if a is not None]
    check(base, axes)
    ranges = [range(len(a.values)) if a is not None else range(1) for a in (x, y, z)]
    out = []
    for k, j, i in itertools.product(ranges[2], ranges[1], ranges[0]):
        request = base
        for axis, index in ((x, i), (y, j), (z, k)):
            if axis is not None:
                request = apply(request, axis, axis.values[index])
        out.append(Cell((i, j, k), request.validated()))
    return out


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def compose(images: dict[tuple[int, int, int], object], x: Axis, y: Axis | None = None, z: Axis | None = None):
    """One image: a labelled x-by-y grid for each z value, side by side (A1111 lays them out so)."""
    from PIL import Image, ImageDraw

    first = next(iter(images.values()))
    w, h = first.size
    font_size = max(14, min(32, w // 12))
    font = _font(font_size)
    top, left = 2 * font_size + 12, (w if y is not None else 0)
    title = 2 * font_size + 12 if z is not None else 0
    columns, rows, blocks = len(x.values), len(y.values) if y else 1, len(z.values) if z else 1
    gap = 16 if z is not None else 0
    block_w = left + columns * w
    sheet = Image.new("RGB", (blocks * block_w + (blocks - 1) * gap, title + top + rows * h), "white")
    pen = ImageDraw.Draw(sheet)
    for k in range(blocks):
        ox = k * (block_w + gap)
        if z is not None:
            _centred(pen, z.labels[k], (ox, 0, ox + block_w, title), font)
        for i, label in enumerate(x.labels):
            _centred(pen, label, (ox + left + i * w, title, ox + left + (i + 1) * w, title + top), font)
        for j in range(rows):
            if y is not None:
                _centred(pen, y.labels[j], (ox, title + top + j * h, ox + left, title + top + (j + 1) * h), font)
            for i in range(columns):
                image = images.get((i, j, k))
                if image is not None:
                    sheet.paste(image.convert("RGB").resize((w, h)), (ox + left + i * w, title + top + j * h))
    return sheet


def _centred(pen, text: str, box: tuple[int, int, int, int], font) -> None:
    """Text centred in a box, wrapped onto a second line (and cut with …) when it is too wide."""
    x0, y0, x1, y1 = box
    lines = _wrap(pen, text, font, x1 - x0 - 8)
    heights = [pen.textbbox((0, 0), line, font=font)[3] for line in lines]
    y = y0 + (y1 - y0 - sum(heights) - 4 * (len(lines) - 1)) / 2
    for line, height in zip(lines, heights):
        width = pen.textlength(line, font=font)
        pen.text((x0 + (x1 - x0 - width) / 2, y), line, fill="black", font=font)
        y += height + 4


def _wrap(pen, text: str, font, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if pen.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    lines.append(line)
    if len(lines) > 2:
        lines = [lines[0], " ".join(lines[1:])]
    while pen.textlength(lines[-1], font=font) > width and len(lines[-1]) > 1:
        lines[-1] = lines[-1][:-2] + "…"
    return lines
