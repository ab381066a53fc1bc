"""What makes an image: the one value type for a job's settings, an image's metadata and an index row.

Building a GenerationRequest never validates, so a record can hold what another tool wrote (a 1000 px
side, 300 steps); `validated()` is the gate every job passes before it is queued or run.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass

from desktop.engine import schedulers
from desktop.errors import InvalidRequest, LatentStudioError

MIN_SIDE, MAX_SIDE = 64, 2048
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_COUNT = 100
SEED_LIMIT = 2**64  # ComfyUI and Fooocus write 64-bit seeds; torch generators take them
NEW_SEED_LIMIT = 2**32  # seeds this app draws stay 32-bit, so A1111-style tools can remake them

MAX_MASK_BLUR = 64
MAX_MASK_PADDING = 512
MAX_UPSCALE = 4.0
KIND_LABELS = {"txt2img": "text to image", "img2img": "image to image", "inpaint": "inpainting",
               "outpaint": "outpainting", "upscale": "upscale"}
DEFAULT_STRENGTH = {"img2img": 0.75, "inpaint": 1.0, "outpaint": 1.0, "upscale": 0.35}
_HASH = re.compile(r"^[0-9a-f]{64}$")

__all__ = ["Edit", "GenerationRequest", "IMAGE_FIELDS", "InvalidRequest", "parse_size", "validate"]


@dataclass(frozen=True)
class Edit:
    """What an edit starts from and how: the images by content hash (the gallery keeps them in its
    inputs, so the record restores the edit exactly), the strength and the mask's treatment."""

    init_image: str  # sha256 of the init image's pixels (gallery/inputs.py)
    strength: float | None = None  # None: DEFAULT_STRENGTH of the kind
    mask: str | None = None  # sha256 of the mask (white = repaint)
    mask_blur: int = 4  # pixels; the soft band where new and old pixels mix
    only_masked: bool = False  # work on a crop around the mask at the model's size, paste back
    mask_padding: int = 32  # pixels of context around the mask's box, with only_masked
    outpaint: tuple[int, int, int, int] | None = None  # pixels added left, top, right, bottom
    upscale: float | None = None  # resize by this factor, then image-to-image ("hires fix")

    @property
    def kind(self) -> str:
        if self.upscale is not None:
            return "upscale"
        if self.outpaint is not None:
            return "outpaint"
        return "inpaint" if self.mask is not None else "img2img"

    def resolved_strength(self) -> float:
        return float(self.strength if self.strength is not None else DEFAULT_STRENGTH[self.kind])

    def inputs(self) -> tuple[str, ...]:
        return tuple(h for h in (self.init_image, self.mask) if h)

    @classmethod
    def from_dict(cls, data) -> "Edit | None":
        if not isinstance(data, dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("outpaint"), list):
            values["outpaint"] = tuple(values["outpaint"])
        return cls(**values) if "init_image" in values else None


@dataclass(frozen=True)
class GenerationRequest:
    """One job. Fields left as None take the model's defaults when the engine resolves them."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    scheduler: str | None = None
    count: int = 1
    model: str | None = None  # a model reference (name or path); in a record, the model's name
    edit: Edit | None = None  # None: text to image

    @property
    def kind(self) -> str:
        return self.edit.kind if self.edit is not None else "txt2img"

    def validated(self) -> "GenerationRequest":
        """This request with its sampler name made canonical; InvalidRequest says what is wrong."""
        validate(self)
        if self.scheduler is not None:
            return self.replace(scheduler=schedulers.canonical_name(self.scheduler))
        return self

    def with_seed(self) -> "GenerationRequest":
        """The seed fixed: the one place a random seed is drawn, so a queued job makes the same picture."""
        return self if self.seed is not None else self.replace(seed=random_seed())

    def seeds(self) -> list[int]:
        """One seed per image: the request's seed, then the next ones (wrapping at 2^64)."""
        if self.seed is None:
            raise ValueError("fix the seed before asking for the seeds")
        return [(self.seed + i) % SEED_LIMIT for i in range(self.count)]

    def for_image(self, seed: int) -> "GenerationRequest":
        """What made one image of this job."""
        return self.replace(seed=seed, count=1)

    def replace(self, **changes) -> "GenerationRequest":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationRequest":
        """Unknown keys are ignored (a newer version may have written them); values are not checked."""
        values = {k: v for k, v in data.items() if k in FIELDS}
        if "edit" in values:
            values["edit"] = Edit.from_dict(values["edit"])
        return cls(**values)

    def keep_valid(self) -> tuple["GenerationRequest", list[str]]:
        """A valid request from every field that passes validation, and the names of those that did not
        ("reuse settings" from another tool's image)."""
        request, dropped = GenerationRequest(), []
        for name in FIELDS:
            value = getattr(self, name)
            if value is None or value == getattr(request, name):
                continue
            try:
                request = request.replace(**{name: value}).validated()
            except LatentStudioError:
                dropped.append(name)
        return request, dropped


def random_seed() -> int:
    return secrets.randbelow(NEW_SEED_LIMIT)


FIELDS = tuple(f.name for f in dataclasses.fields(GenerationRequest))
IMAGE_FIELDS = tuple(name for name in FIELDS if name != "count")  # what one image records


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(req: GenerationRequest) -> None:
    if not isinstance(req.prompt, str) or not isinstance(req.negative_prompt, str):
        raise InvalidRequest("Prompt and negative prompt must be text.")
    for name in ("width", "height"):
        value = getattr(req, name)
        if value is None:
            continue
        if not _is_int(value) or not MIN_SIDE <= value <= MAX_SIDE:
            raise InvalidRequest(f"{name.capitalize()} must be a whole number from {MIN_SIDE} to {MAX_SIDE} pixels (got {value}).")
        if value % 8:
            lower, upper = value - value % 8, value - value % 8 + 8
            raise InvalidRequest(f"{name.capitalize()} must be a multiple of 8 (got {value}; try {lower} or {upper}).")
    if req.steps is not None and (not _is_int(req.steps) or not 1 <= req.steps <= MAX_STEPS):
        raise InvalidRequest(f"Steps must be a whole number from 1 to {MAX_STEPS} (got {req.steps}).")
    if req.guidance is not None:
        if isinstance(req.guidance, bool) or not isinstance(req.guidance, (int, float)) or not 0 <= req.guidance <= MAX_GUIDANCE:
            raise InvalidRequest(f"Guidance (CFG scale) must be a number from 0 to {MAX_GUIDANCE:g} (got {req.guidance}).")
    if req.seed is not None and (not _is_int(req.seed) or not 0 <= req.seed < SEED_LIMIT):
        raise InvalidRequest(f"Seed must be a whole number from 0 to {SEED_LIMIT - 1} (got {req.seed}).")
    if not _is_int(req.count) or not 1 <= req.count <= MAX_COUNT:
        raise InvalidRequest(f"Image count must be from 1 to {MAX_COUNT} (got {req.count}).")
    if req.scheduler is not None:
        if not isinstance(req.scheduler, str):
            raise InvalidRequest(f"Sampler must be a name (got {req.scheduler!r}).")
        schedulers.canonical_name(req.scheduler)
    if req.model is not None and not isinstance(req.model, str):
        raise InvalidRequest(f"Model must be a name or a path (got {req.model!r}).")
    if req.edit is not None:
        validate_edit(req.edit)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_edit(edit: Edit) -> None:
    for name in ("init_image", "mask"):
        value = getattr(edit, name)
        if value is not None and not (isinstance(value, str) and _HASH.match(value)):
            raise InvalidRequest(f"The edit's {name.replace('_', ' ')} must be a content hash (got {value!r}).")
    if edit.strength is not None and (not _is_number(edit.strength) or not 0 < edit.strength <= 1):
        raise InvalidRequest(f"Strength must be a number above 0 and at most 1 (got {edit.strength}).")
    if not _is_int(edit.mask_blur) or not 0 <= edit.mask_blur <= MAX_MASK_BLUR:
        raise InvalidRequest(f"Mask blur must be a whole number of pixels from 0 to {MAX_MASK_BLUR} (got {edit.mask_blur}).")
    if not _is_int(edit.mask_padding) or not 0 <= edit.mask_padding <= MAX_MASK_PADDING:
        raise InvalidRequest(f"Mask padding must be a whole number of pixels from 0 to {MAX_MASK_PADDING} "
                             f"(got {edit.mask_padding}).")
    if not isinstance(edit.only_masked, bool):
        raise InvalidRequest(f"Only masked must be true or false (got {edit.only_masked!r}).")
    if edit.outpaint is not None:
        sides = edit.outpaint
        if (not isinstance(sides, tuple) or len(sides) != 4 or not all(_is_int(v) and v >= 0 for v in sides)
                or not any(sides)):
            raise InvalidRequest(f"Outpaint takes four whole numbers of pixels, LEFT,TOP,RIGHT,BOTTOM, at least "
                                 f"one above 0 (got {sides!r}).")
        if any(v % 8 for v in sides):
            raise InvalidRequest(f"Outpaint sides must be multiples of 8 pixels (got {','.join(map(str, sides))}).")
        if edit.mask is not None:
            raise InvalidRequest("Outpainting makes its own mask (the new area): leave the mask out.")
    if edit.upscale is not None:
        if not _is_number(edit.upscale) or not 1 < edit.upscale <= MAX_UPSCALE:
            raise InvalidRequest(f"The upscale factor must be above 1 and at most {MAX_UPSCALE:g} (got {edit.upscale}).")
        if edit.mask is not None or edit.outpaint is not None:
            raise InvalidRequest("Upscaling works on the whole image: leave out the mask and outpaint.")


_SIZE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'512x768' -> (512, 768); a single number means a square."""
    match = _SIZE.match(text)
    if match:
        return int(match.group(1)), int(match.group(2))
    if text.strip().isdigit():
        return int(text), int(text)
    raise InvalidRequest(f"Size must look like 512x768 (width x height), got {text!r}.")
