"""LoRA files: where they live, what base model they fit, their AUTOMATIC1111 hash, and which the
prompt asks for. Applying them to a pipeline is engine/lora_apply.py (torch); nothing here loads weights.

A LoRA is found by its file stem, as `<lora:NAME:W>` names it: `<data dir>/loras/` and the folders
in Settings (`lora_folders`), searched recursively. Only `.safetensors` files are read; a pickled
`.pt`/`.ckpt` is refused with the convert command that makes a safe copy.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from desktop import paths
from desktop.errors import LatentStudioError

SUFFIX = ".safetensors"
PICKLES = (".pt", ".ckpt", ".pth", ".bin")
# Cross-attention width of each base: the second dimension of a LoRA's down projection of attn2.to_k.
BASES = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
LYCORIS = {"hada_w1_a": "LyCORIS LoHa", "lokr_w1": "LyCORIS LoKr", "oft_blocks": "LyCORIS OFT",
           "oft_diag": "LyCORIS OFT", "a1.weight": "LyCORIS GLoRA", "lora_mid": "LyCORIS LoCon (Tucker)"}


class LoraError(LatentStudioError):
    """A LoRA that cannot be used: the message names the file and why."""


@dataclass(frozen=True)
class LoraFile:
    name: str  # the file stem: what <lora:NAME:W> names
    path: Path
    base: str  # "SD 1.x", "SD 2.x", "SDXL", or "custom base (N wide)" for another width
    context: int | None  # the cross-attention width it was trained for (None: text encoder only)
    format: str  # "kohya" (A1111's) or "diffusers"
    size: int
    short_hash: str  # as A1111 writes it in "Lora hashes"

    def as_dict(self) -> dict:
        return {"name": self.name, "base": self.base, "format": self.format, "size": self.size,
                "hash": self.short_hash, "path": str(self.path)}


@dataclass(frozen=True)
class LoraUse:
    """One `<lora:NAME:TE:UNET>` tag: the weight on the text encoders and on the denoiser."""

    name: str
    te: float
    unet: float


def lora_folders(extra: list[str] | tuple[str, ...] = ()) -> list[Path]:
    return [paths.data_dir() / "loras", *(Path(f).expanduser() for f in extra)]


def files_by_stem(folders: list[Path], suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Files with these suffixes under the folders, by name (the first folder wins when two share a stem)."""
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in suffixes and path.is_file():
                    found.setdefault(path.stem, path)
    return found


def find_files(folders: list[Path]) -> dict[str, Path]:
    """Every LoRA file by name."""
    return files_by_stem(folders, (SUFFIX,))


def list_loras(folders: list[Path]) -> tuple[list[LoraFile], list[tuple[Path, str]]]:
    """What is installed, and the files that cannot be used with why (for `loras` to show)."""
    good, bad = [], []
    for path in find_files(folders).values():
        try:
            good.append(read(path))
        except LoraError as exc:
            bad.append((path, str(exc)))
    return good, bad


def read(path: Path) -> LoraFile:
    """A LoRA file identified from its header alone (and hashed): broken files are named as such."""
    header, metadata = read_header(path)
    context, fmt = identify(path, header)
    base = BASES.get(context, f"custom base ({context} wide)") if context else "text encoder only"
    return LoraFile(path.stem, path, base, context, fmt, path.stat().st_size, short_hash(path, metadata))


def read_header(path: Path) -> tuple[dict, dict]:
    """The tensors' names and shapes and the file's metadata, checked as checkpoints are (whole,
    not a pickle, not a Git LFS pointer); a pickled LoRA is refused with the convert command."""
    from desktop.engine.checkpoints import CheckpointError, read_header_and_metadata

    if path.suffix.lower() in PICKLES:
        raise LoraError(f"{path.name} is a pickled LoRA ({path.suffix}), which can run code when loaded; convert it "
                        f"once with `python main.py models convert \"{path}\"` and use the .safetensors file.")
    try:
        return read_header_and_metadata(path)
    except CheckpointError as exc:
        raise LoraError(str(exc)) from exc


def identify(path: Path, header: dict) -> tuple[int | None, str]:
    """(cross-attention width, format) from tensor names and shapes; other networks are refused by name."""
    names = list(header)
    for marker, kind in LYCORIS.items():
        if any(marker in name for name in names):
            raise LoraError(f"{path.name} is a {kind} network, which is not supported (only LoRA: kohya/A1111 and "
                            "diffusers files).")
    kohya = any(n.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for n in names)
    diffusers = any(".lora_A." in n or ".lora.down." in n or ".lora_down." in n for n in names)
    if not (kohya or diffusers):
        raise LoraError(f"{path.name} holds no LoRA weights (no lora_unet_/lora_te_ or lora_A tensors); it may be a "
                        "model, a VAE or an embedding.")
    context = None
    for name in names:
        if re.search(r"attn2[._]to_k[._]", name) and re.search(r"(lora_down|lora_A|lora\.down)\.weight$", name):
            shape = header[name].get("shape", [])
            if len(shape) == 2:
                context = int(shape[1])
                break
    return context, "kohya" if kohya else "diffusers"


def short_hash(path: Path, metadata: dict) -> str:
    """A1111's: the file's `sshs_model_hash` metadata when it has one, else the sha256 of the file after
    its header; the first 12 hex digits either way."""
    declared = str(metadata.get("sshs_model_hash", "")).strip().lower()
    if re.fullmatch(r"[0-9a-f]{12,64}", declared):
        return declared[:12]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(8 + struct.unpack("<Q", fh.read(8))[0])
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def uses_in(prompt: str) -> list[LoraUse]:
    """The LoRAs a prompt asks for: `<lora:NAME>`, `<lora:NAME:W>` or `<lora:NAME:TE:UNET>` (A1111's).
    The same name twice adds up, as A1111 applies both."""
    from desktop.engine.prompt_syntax import strip_extra_networks

    uses: dict[str, LoraUse] = {}
    for kind, args in strip_extra_networks(prompt)[1]:
        if kind.lower() != "lora":
            continue
        parts = [p.strip() for p in args.split(":")]
        name, numbers = parts[0], [_weight(p, args) for p in parts[1:3]]
        te = numbers[0] if numbers else 1.0
        unet = numbers[1] if len(numbers) > 1 else te
        previous = uses.get(name)
        uses[name] = LoraUse(name, te + (previous.te if previous else 0), unet + (previous.unet if previous else 0))
    return list(uses.values())


def _weight(text: str, tag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LatentStudioError(f"<lora:{tag}> has a weight that is not a number ({text!r}).") from None


def resolve(uses: list[LoraUse], folders: list[Path]) -> list[tuple[LoraUse, LoraFile]]:
    """The files the uses name; a missing name lists the closest installed names."""
    files = find_files(folders)
    resolved = []
    for use in uses:
        path = files.get(use.name) or next((p for n, p in files.items() if n.lower() == use.name.lower()), None)
        if path is None:
            close = difflib.get_close_matches(use.name, files, n=3, cutoff=0.4)
            hint = f" Closest installed: {', '.join(close)}." if close else (
                " None is installed." if not files else f" Installed: {', '.join(sorted(files)[:8])}.")
            raise LoraError(f"No LoRA named {use.name!r} in {', '.join(str(f) for f in folders)}.{hint}")
        resolved.append((use, read(path)))
    return resolved


def check_fits(lora: LoraFile, model_context: int, model_kind: str, model_name: str) -> None:
    """A LoRA for another base (an SDXL LoRA on SD 1.5) names both."""
    if lora.context is not None and lora.context != model_context:
        raise LoraError(f"The LoRA {lora.name} is for {lora.base}; the model {model_name} is {model_kind}. "
                        "Use a LoRA made for this model's base, or choose a matching model.")


def hashes_field(loras: list[LoraFile]) -> str:
    """A1111's `Lora hashes` value: "name: hash, name: hash"."""
    return ", ".join(f"{lora.name}: {lora.short_hash}" for lora in loras)
