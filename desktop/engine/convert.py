"""Converting a pickle checkpoint (.ckpt/.pt/.bin) to .safetensors, explicitly and at arm's length.

`torch.load(weights_only=True)` accepts only tensors and plain containers, and it runs in a separate
process, so even a loader bug cannot touch the app. The result is written to a temp name, renamed,
and then checked like any other checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from desktop.errors import LatentStudioError

WORKER_FLAG = "--convert-pickle-worker"  # argv of the worker process (also inside a frozen app)


def convert_pickle(source: Path, target: Path | None = None, timeout_s: int = 3600) -> Path:
    from desktop.engine.checkpoints import PICKLE_SUFFIXES, identify

    source = Path(source)
    if not source.is_file():
        raise LatentStudioError(f"No file at {source}.")
    if source.suffix.lower() not in PICKLE_SUFFIXES:
        raise LatentStudioError(f"{source.name} is not a pickle checkpoint ({', '.join(PICKLE_SUFFIXES)}).")
    target = Path(target) if target else source.with_suffix(".safetensors")
    if target.exists():
        raise LatentStudioError(f"{target} already exists; pass --out to write somewhere else.")
    tmp = target.with_name(f".{target.name}.partial")
    command = _worker_command(source, tmp)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise LatentStudioError(f"Converting {source.name} took longer than {timeout_s} s; stopped.") from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise LatentStudioError(f"Could not convert {source.name}: {reason}")
    os.replace(tmp, target)
    identify(target)  # a checkpoint this app can load, or a clear error now
    return target


def _worker_command(source: Path, tmp: Path) -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, WORKER_FLAG, str(source), str(tmp)]
    return [sys.executable, "-m", "desktop.engine.convert", str(source), str(tmp)]


def worker(source: str, target: str) -> int:
    """Runs in the separate process: load tensors only, save them as safetensors."""
    import torch
    from safetensors.torch import save_file

    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # the refusal message of weights_only is the useful part
        print(f"it holds more than plain tensors, so it was not loaded ({str(exc).splitlines()[0][:200]})", file=sys.stderr)
        return 1
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    tensors = {k: v.detach().clone().contiguous() for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        print("it holds no tensors", file=sys.stderr)
        return 1
    save_file(tensors, target, metadata={"format": "pt", "converted_from": Path(source).name})
    return 0


if __name__ == "__main__":
    raise SystemExit(worker(sys.argv[1], sys.argv[2]))
