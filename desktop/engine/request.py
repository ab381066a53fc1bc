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

__all__ = ["GenerationRequest", "IMAGE_FIELDS", "InvalidRequest", "parse_size", "validate"]


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
        return cls(**{k: v for k, v in data.items() if k in FIELDS})

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


_SIZE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'512x768' -> (512, 768); a single number means a square."""
    match = _SIZE.match(text)
    if match:
        return int(match.group(1)), int(match.group(2))
    if text.strip().isdigit():
        return int(text), int(text)
    raise InvalidRequest(f"Size must look like 512x768 (width x height), got {text!r}.")
