"""Few-step models: SD-Turbo/SDXL-Turbo, LCM (and LCM-LoRA), SDXL-Lightning, Hyper-SD and TCD.

They are distilled to make an image in 1-8 steps, and only do so with their own sampler, spacing and
guidance: run like an ordinary model (25 steps of DPM++ at CFG 7) they give burnt, noisy images. The
signals, strongest first: the folder's scheduler class (LCMScheduler, TCDScheduler); a single file's
modelspec metadata (title, architecture, description); the file, folder or LoRA name. The values
follow each model's own card. What is found only fills settings the user left open.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FewStep:
    family: str  # "Turbo", "LCM", "Lightning", "Hyper-SD", "TCD"
    scheduler: str  # the sampler menu's name
    steps: int
    guidance: float  # <= 1: one UNet pass per step (no classifier-free guidance)
    steps_range: str  # what the model is made for, shown to the user
    trailing: bool = False  # timesteps spaced from the end ("trailing"), as the distillation used

    @property
    def note(self) -> str:
        cfg = "CFG off" if self.guidance <= 1 else f"CFG {self.guidance:g}"
        return f"{self.family}: {self.steps_range} steps, {cfg}"

    def scheduler_overrides(self) -> dict:
        return {"timestep_spacing": "trailing"} if self.trailing else {}


PROFILES = {
    "turbo": FewStep("Turbo", "Euler a", 1, 0.0, "1–4", trailing=True),
    "lcm": FewStep("LCM", "LCM", 4, 1.5, "2–8"),
    "lightning": FewStep("Lightning", "Euler", 4, 0.0, "1–8", trailing=True),
    "hyper": FewStep("Hyper-SD", "TCD", 8, 0.0, "1–16", trailing=True),
    "tcd": FewStep("TCD", "TCD", 4, 0.0, "2–8"),
}
_SCHEDULER_CLASSES = {"LCMScheduler": "lcm", "TCDScheduler": "tcd"}
# Word-ish matches on names and metadata; "hyper" alone would catch "hypernetwork".
_WORDS = [("lightning", re.compile(r"lightning", re.I)), ("hyper", re.compile(r"hyper[-_ ]?(sd|sdxl)", re.I)),
          ("tcd", re.compile(r"(^|[^a-z])tcd([^a-z]|$)", re.I)), ("lcm", re.compile(r"(^|[^a-z])lcm([^a-z]|$)", re.I)),
          ("turbo", re.compile(r"turbo", re.I))]
_STEPS = re.compile(r"(\d{1,2})[-_ ]?steps?", re.I)
_METADATA_KEYS = ("modelspec.title", "modelspec.architecture", "modelspec.implementation", "modelspec.description",
                  "ss_output_name")


def from_text(*texts: str) -> FewStep | None:
    """A profile from names or metadata: the first family named, with a step count the name gives."""
    for text in texts:
        for family, pattern in _WORDS:
            if text and pattern.search(text):
                profile = PROFILES[family]
                steps = _STEPS.search(text)
                if steps and 1 <= int(steps.group(1)) <= 16:
                    from dataclasses import replace

                    profile = replace(profile, steps=int(steps.group(1)))
                return profile
    return None


def recognise(path: Path, metadata: dict | None = None) -> FewStep | None:
    """The profile of a model folder or single file, or None for an ordinary model."""
    if path.is_dir():
        scheduler = _read_json(path / "scheduler" / "scheduler_config.json").get("_class_name", "")
        if scheduler in _SCHEDULER_CLASSES:
            named = from_text(path.name)
            return named if named and named.scheduler == PROFILES[_SCHEDULER_CLASSES[scheduler]].scheduler \
                else PROFILES[_SCHEDULER_CLASSES[scheduler]]
        return from_text(path.name)
    metadata = metadata if metadata is not None else _file_metadata(path)
    return from_text(*(str(metadata.get(k, "")) for k in _METADATA_KEYS), path.stem)


def from_loras(paths_and_metadata: list[tuple[Path, dict]]) -> FewStep | None:
    """LCM-LoRA, Hyper-SD, TCD and Lightning LoRAs turn an ordinary model into a few-step one."""
    for path, metadata in paths_and_metadata:
        found = from_text(*(str(metadata.get(k, "")) for k in _METADATA_KEYS), path.stem)
        if found is not None and found.family != "Turbo":  # "turbo" in a LoRA's name is usually a style
            return found
    return None


def _file_metadata(path: Path) -> dict:
    from desktop.engine.checkpoints import read_header_and_metadata
    from desktop.errors import LatentStudioError

    try:
        return read_header_and_metadata(path)[1]
    except LatentStudioError:
        return {}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
