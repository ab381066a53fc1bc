"""Choosing the device (CUDA > MPS > CPU) and the precision to run on it."""

from __future__ import annotations

import functools
import logging
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)

DEVICE_ENV = "LATENT_STUDIO_DEVICE"
DEVICES = ("cuda", "mps", "cpu")
PRECISIONS = ("fp32", "fp16", "bf16")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


@functools.lru_cache(maxsize=1)
def cpuinfo_has_bf16(text: str) -> bool:
    """From /proc/cpuinfo's text: x86 `flags` lines or Arm `Features` lines name the bf16 units."""
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16, AMX, or Arm's BF16 extension).

    Elsewhere torch emulates bf16 on the CPU, which is slower than fp32.
    """
    system = platform.system()
    if system == "Linux":
        try:
            return cpuinfo_has_bf16(Path("/proc/cpuinfo").read_text())
        except OSError:
            return False
    if system == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return out.stdout.strip() == "1"
    return False


def pick_device(requested: str | None = None) -> str:
    """The device to run on: an explicit request (argument, then LATENT_STUDIO_DEVICE), else the best one."""
    choice = (requested or "").strip().lower() or os.environ.get(DEVICE_ENV, "").strip().lower() or "auto"
    if choice == "auto":
        if cuda_available():
            return "cuda"
        if mps_available():
            return "mps"
        return "cpu"
    if choice not in DEVICES:
        raise LatentStudioError(f"Unknown device {choice!r}: choose auto, cuda, mps or cpu.")
    if choice == "cuda" and not cuda_available():
        raise LatentStudioError(
            "CUDA was requested but no CUDA GPU is usable (no NVIDIA GPU, no driver, or a CPU-only torch build). "
            "Use --device auto or cpu."
        )
    if choice == "mps" and not mps_available():
        raise LatentStudioError("MPS was requested but Apple's Metal backend is not available here. Use --device auto or cpu.")
    return choice


def pick_precision(device: str, requested: str | None = None, model_precision: str | None = None) -> str:
    """fp16 on GPUs; on CPU bf16 only where the hardware has it, else fp32. An explicit choice wins over
    the precision a model names for itself (the one its maker measured it in), which wins over the rule."""
    choice = (requested or "auto").strip().lower()
    if choice == "auto" and model_precision in PRECISIONS:
        return model_precision
    if choice != "auto":
        if choice not in PRECISIONS:
            raise LatentStudioError(f"Unknown precision {choice!r}: choose auto, fp32, fp16 or bf16.")
        if device == "cpu" and choice == "fp16":
            log.warning("fp16 on the CPU is slow and often inaccurate; bf16 or fp32 is the better choice.")
        return choice
    if device in ("cuda", "mps"):
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@dataclass(frozen=True)
class Placement:
    """Where and how a pipeline runs."""

    device: str
    precision: str

    @classmethod
    def choose(cls, device: str | None = None, precision: str | None = None,
               model_precision: str | None = None) -> "Placement":
        dev = pick_device(device)
        return cls(dev, pick_precision(dev, precision, model_precision))


def release_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()
