"""What the user asks for: a validated, serialisable generation request."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from desktop.engine import schedulers
from desktop.errors import LatentStudioError

MIN_SIDE, MAX_SIDE = 64, 2048
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_COUNT = 100
SEED_LIMIT = 2**32  # seeds are 32-bit, as in other SD tools, so they can be shared


class InvalidRequest(LatentStudioError):
    """A request field is out of range; the message says which and what is allowed."""


@dataclass(frozen=True)
class GenerationRequest:
    """One text-to-image job. Fields left as None take the model's defaults when resolved."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    scheduler: str | None = None
    count: int = 1
    model: str | None = None

    def __post_init__(self) -> None:
        validate(self)
        if self.scheduler is not None:
            object.__setattr__(self, "scheduler", schedulers.canonical_name(self.scheduler))

    def seeds(self) -> list[int]:
        """One seed per image: the request's seed, then the next ones (wrapping at 2^32)."""
        if self.seed is None:
            raise ValueError("resolve the request before asking for its seeds")
        return [(self.seed + i) % SEED_LIMIT for i in range(self.count)]

    def replace(self, **changes) -> "GenerationRequest":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationRequest":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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


_SIZE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'512x768' -> (512, 768); a single number means a square."""
    match = _SIZE.match(text)
    if match:
        return int(match.group(1)), int(match.group(2))
    if text.strip().isdigit():
        return int(text), int(text)
    raise InvalidRequest(f"Size must look like 512x768 (width x height), got {text!r}.")
