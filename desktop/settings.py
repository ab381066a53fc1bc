"""Typed user settings, stored as JSON in the config dir.

Unknown keys are ignored and missing keys take defaults, so old and new versions of the app can
share one file. A file that cannot be read is kept aside as `settings.json.broken` rather than lost.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from desktop import paths
from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")
SLICING_CHOICES = ("auto", "on", "off")


@dataclass
class Settings:
    schema_version: int = SCHEMA_VERSION
    device: str = "auto"
    precision: str = "auto"
    attention_slicing: str = "auto"
    # Largest attention matrix (MiB) one SDPA call may hold when slicing applies (MPS on "auto"; "on").
    attention_budget_mb: int = 512
    model: str | None = None  # name or path of the selected model; None = shipped default
    model_folders: list[str] = field(default_factory=list)
    lora_folders: list[str] = field(default_factory=list)  # besides <data dir>/loras (an A1111 models/Lora)
    embedding_folders: list[str] = field(default_factory=list)  # besides <data dir>/embeddings
    gallery_dir: str | None = None
    strip_metadata: bool = False  # privacy: write images without any text chunks
    fast_decode: bool = False  # decode final images with a tiny autoencoder (TAESD) when one serves the model
    low_memory: bool = False  # CUDA/MPS: models wait in main memory between uses; large images decode in tiles
    window_geometry: str | None = None  # the window's last size and place (Qt's saveGeometry, base64)
    last_request: dict | None = None  # the prompt panel as it was left

    def validate(self) -> None:
        _check_choice("device", self.device, DEVICE_CHOICES)
        _check_choice("precision", self.precision, PRECISION_CHOICES)
        _check_choice("attention_slicing", self.attention_slicing, SLICING_CHOICES)
        if self.attention_budget_mb < 16:
            raise LatentStudioError("attention_budget_mb must be at least 16.")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise LatentStudioError(f"{name} must be one of {', '.join(choices)} (got {value!r}).")


def settings_path() -> Path:
    return paths.config_dir() / "settings.json"


def load_settings(path: Path | None = None) -> Settings:
    path = path or settings_path()
    if not path.exists():
        return Settings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(Settings)}
        settings = Settings(**{k: v for k, v in raw.items() if k in known})
        settings.validate()
        return settings
    except (OSError, ValueError, TypeError, LatentStudioError) as exc:
        broken = path.with_name(path.name + ".broken")
        log.warning("Settings file %s is unreadable (%s); kept as %s, using defaults.", path, exc, broken)
        os.replace(path, broken)
        return Settings()


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write atomically: a crash mid-write leaves the old file, never half a file."""
    settings.validate()
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dataclasses.asdict(settings), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
