"""`package`: build the standalone app with PyInstaller (one folder; a .app bundle on macOS)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from desktop import paths
from desktop.errors import LatentStudioError

SPEC = Path(__file__).resolve().parent.parent / "resources" / "packaging" / "latent-studio.spec"
NAME = "LatentStudio"


def bundle_executable(dist: Path) -> Path:
    if sys.platform == "darwin":
        return dist / "Latent Studio.app" / "Contents" / "MacOS" / NAME
    return dist / NAME / (NAME + ".exe" if sys.platform == "win32" else NAME)


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def build(dist: Path, work: Path | None = None) -> Path:
    if importlib.util.find_spec("PyInstaller") is None:
        raise LatentStudioError("Packaging needs PyInstaller: python -m pip install pyinstaller")
    if not any(paths.shipped_models_dir().glob("*/model_index.json")):
        raise LatentStudioError("No shipped model in resources/models: the app would start empty. Train or restore it first.")
    work = work or Path(tempfile.mkdtemp(prefix="latent-studio-build-"))
    command = [sys.executable, "-m", "PyInstaller", str(SPEC), "--noconfirm", "--distpath", str(dist),
               "--workpath", str(work), "--log-level", "WARN"]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise LatentStudioError(f"PyInstaller failed:\n{tail}")
    executable = bundle_executable(dist)
    print(f"built {executable} in {time.monotonic() - started:.0f} s; "
          f"{folder_size(executable.parents[1 if sys.platform == 'darwin' else 0]) / 1e6:.0f} MB", file=sys.stderr)
    return executable


def self_test(executable: Path, home: Path, timeout_s: int = 600) -> subprocess.CompletedProcess:
    """The bundle's own --self-test, headless, with user data in `home` (never the real dirs)."""
    env = {**os.environ, "LATENT_STUDIO_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([str(executable), "--self-test"], capture_output=True, text=True, timeout=timeout_s, env=env)


def run(args) -> int:
    executable = build(args.dist.resolve())
    print(executable)
    if args.check:
        with tempfile.TemporaryDirectory(prefix="latent-studio-check-") as home:
            proc = self_test(executable, Path(home))
        print(proc.stdout.strip() or proc.stderr.strip()[-2000:])
        return 0 if proc.returncode == 0 else 1
    return 0
