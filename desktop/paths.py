"""Where things live: user dirs (platformdirs) and shipped resources (source tree or frozen bundle).

`LATENT_STUDIO_HOME`, when set, puts config, data and cache under that one folder, which makes
portable installs possible and keeps tests away from the real user dirs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_DIR_NAME = "LatentStudio"
HOME_ENV = "LATENT_STUDIO_HOME"


def _home_override() -> Path | None:
    home = os.environ.get(HOME_ENV, "").strip()
    return Path(home).expanduser().resolve() if home else None


def _user_dir(kind: str) -> Path:
    home = _home_override()
    if home is not None:
        return home / kind
    getter = {
        "config": platformdirs.user_config_dir,
        "data": platformdirs.user_data_dir,
        "cache": platformdirs.user_cache_dir,
        "log": platformdirs.user_log_dir,
    }[kind]
    return Path(getter(APP_DIR_NAME, appauthor=False))


def config_dir() -> Path:
    return _user_dir("config")


def data_dir() -> Path:
    return _user_dir("data")


def cache_dir() -> Path:
    return _user_dir("cache")


def log_dir() -> Path:
    """Where the window writes latent-studio.log (unexpected errors, with tracebacks)."""
    return _user_dir("log")


def user_models_dir() -> Path:
    """Diffusers folders the user copies in are found here without any setting."""
    return data_dir() / "models"


def default_gallery_dir() -> Path:
    return data_dir() / "gallery"


def resources_dir() -> Path:
    """Shipped data: inside the bundle when frozen (PyInstaller), else next to the package.
    LATENT_STUDIO_RESOURCES points elsewhere (packagers trying a build, tests of a bare install)."""
    override = os.environ.get("LATENT_STUDIO_RESOURCES", "").strip()
    if override:
        return Path(override).expanduser().resolve()
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def shipped_models_dir() -> Path:
    return resources_dir() / "models"


def shipped_configs_dir() -> Path:
    return resources_dir() / "configs"
