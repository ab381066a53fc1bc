"""Single-file Stable Diffusion checkpoints (`.safetensors`): checked, identified, assembled offline.

A checkpoint is identified from its header alone (tensor names and shapes; nothing is loaded),
then assembled with the component configs and tokenizer files shipped in resources/configs, so no
network is ever needed. Pickle files (.ckpt/.pt/.bin/.pth) can run code when loaded: they are
refused, and converting one is an explicit step done in a separate process with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from desktop.errors import LatentStudioError

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MAX_HEADER = 100 * 2**20

UNET = "model.diffusion_model."
SD1_TEXT = "cond_stage_model.transformer."
SD2_TEXT = "cond_stage_model.model."
XL_TEXT_1 = "conditioner.embedders.0.transformer."
XL_TEXT_2 = "conditioner.embedders.1.model."


@dataclass(frozen=True)
class Architecture:
    kind: str  # shown to the user
    config: str  # folder in resources/configs
    pipeline: str  # diffusers pipeline class


SD1 = Architecture("SD 1.x", "sd15", "StableDiffusionPipeline")
SD2 = Architecture("SD 2.x", "sd2-512", "StableDiffusionPipeline")
SD2_V = Architecture("SD 2.x (768, v)", "sd2-768-v", "StableDiffusionPipeline")
SDXL = Architecture("SDXL", "sdxl-base", "StableDiffusionXLPipeline")
# SDXL fine-tunes trained for v-prediction with zero terminal SNR (they mark it with `v_pred` and
# `ztsnr` keys or modelspec): the scheduler must predict v, rescale betas and space steps trailing.
SDXL_V = Architecture("SDXL (v, zero terminal SNR)", "sdxl-base", "StableDiffusionXLPipeline")
# Dedicated inpainting checkpoints: the UNet also reads the mask and the masked image (9 input channels).
INPAINTING = {
    SD1: Architecture("SD 1.x inpainting", "sd15-inpaint", "StableDiffusionInpaintPipeline"),
    SD2: Architecture("SD 2.x inpainting", "sd2-inpaint", "StableDiffusionInpaintPipeline"),
    SDXL: Architecture("SDXL inpainting", "sdxl-inpaint", "StableDiffusionXLInpaintPipeline"),
}
V_SCHEDULER = {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}


class CheckpointError(LatentStudioError):
    """The file cannot be used; the message names it and says why and what to do."""


class PickleRefused(CheckpointError):
    pass


def read_header(path: Path) -> dict:
    """The safetensors header ({name: {dtype, shape, data_offsets}}), after checking the file is whole."""
    return read_header_and_metadata(path)[0]


def read_header_and_metadata(path: Path) -> tuple[dict, dict]:
    """The header and the file's `__metadata__` (modelspec.* and other tools' notes)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            start = fh.read(64)
            fh.seek(0)
            if size == 0:
                raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish. Get it again.")
            if start.startswith(b"version https://git-lfs"):
                raise CheckpointError(f"{path} is a Git LFS pointer, not the weights: run `git lfs pull` in its "
                                      "repository, or download the file itself.")
            pickle_like = start.startswith(b"PK\x03\x04") or (start[:1] == b"\x80" and start[1:2] in b"\x02\x03\x04\x05")
            if pickle_like and start[8:9] != b"{":  # a safetensors header is JSON from byte 8
                raise CheckpointError(f"{path} is a pickle (PyTorch .ckpt) file with a .safetensors name. It is not "
                                      "loaded: pickles can run code. Get the real .safetensors file.")
            (length,) = struct.unpack("<Q", fh.read(8)) if size >= 8 else (0,)
            if not 2 <= length <= min(MAX_HEADER, size - 8):
                raise CheckpointError(f"{path} is not a valid .safetensors file (damaged, or another format renamed).")
            header = json.loads(fh.read(length))
    except OSError as exc:
        raise CheckpointError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid .safetensors file (its header is not readable).") from exc
    metadata = header.pop("__metadata__", None)
    end = max((t["data_offsets"][1] for t in header.values() if isinstance(t, dict) and "data_offsets" in t), default=0)
    if 8 + length + end > size:
        raise CheckpointError(f"{path} is cut short ({size:,} of {8 + length + end:,} bytes): an unfinished download. "
                              "Download it again.")
    return header, metadata if isinstance(metadata, dict) else {}


def check_suffix(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise PickleRefused(
            f"{path.name} is a pickle-based checkpoint ({suffix}); loading one can run any code hidden in it, so "
            f"Latent Studio does not. Convert it once with `python main.py models convert \"{path}\"` (loads only "
            "tensors, in a separate process) or download the .safetensors version.")
    if suffix not in SAFE_SUFFIXES:
        raise CheckpointError(f"{path.name} is not a model file this app reads (.safetensors checkpoints or diffusers folders).")


def identify(path: Path) -> Architecture:
    """Which Stable Diffusion family a checkpoint is, from its tensor names and shapes."""
    check_suffix(path)
    header, metadata = read_header_and_metadata(path)
    names = header.keys()
    shape = lambda name: header.get(name, {}).get("shape")  # noqa: E731
    conv_in = shape(UNET + "input_blocks.0.0.weight")
    if conv_in is None:
        raise CheckpointError(f"{path.name} holds no Stable Diffusion UNet: {_what_else(names)}.")
    if conv_in[1] not in (4, 9):
        raise CheckpointError(f"{path.name} has a UNet with {conv_in[1]} input channels; only text-to-image models "
                              "(4 channels) and inpainting models (9) are supported.")
    family = _family(path, header, metadata)
    if conv_in[1] == 9:
        if family not in INPAINTING:
            raise CheckpointError(f"{path.name} is an inpainting checkpoint of {family.kind}, which has no "
                                  "inpainting configuration here; use an SD 1.x, SD 2.x or SDXL inpainting model.")
        return INPAINTING[family]
    return family


def _family(path: Path, header: dict, metadata: dict) -> Architecture:
    names = header.keys()
    shape = lambda name: header.get(name, {}).get("shape")  # noqa: E731
    if any(n.startswith(XL_TEXT_1) for n in names) and any(n.startswith(XL_TEXT_2) for n in names):
        return SDXL_V if _declared_prediction(metadata) == "v" or "v_pred" in header else SDXL
    if any(n.startswith("conditioner.") for n in names):
        raise CheckpointError(f"{path.name} looks like an SDXL refiner (it refines images, it does not make them "
                              "from text); use an SDXL base model.")
    context = shape(UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
    if any(n.startswith(SD2_TEXT) for n in names) or (context and context[-1] == 1024):
        return SD2_V if _is_v_prediction(path, header, metadata) else SD2
    if any(n.startswith(SD1_TEXT) for n in names) and context and context[-1] == 768:
        return SD1
    raise CheckpointError(f"{path.name} has a UNet but no text encoder this app recognises; it may be a "
                          "partial or unusual checkpoint.")


def _declared_prediction(metadata: dict) -> str | None:
    """What the file's own modelspec says: "v", "epsilon" or None."""
    declared = str(metadata.get("modelspec.prediction_type", "")).strip().lower()
    if declared in ("v", "v_prediction", "v-prediction"):
        return "v"
    return "epsilon" if declared in ("epsilon", "eps") else None


V_STATISTIC = UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"


def _is_v_prediction(path: Path, header: dict, metadata: dict) -> bool:
    """SD 2.x: v or epsilon. The file's modelspec first, then the markers tools leave (a `v_pred` key,
    A1111's .yaml beside the file), then the weights themselves: the spread of one late norm's bias
    is above ~0.09 in v models (the test ComfyUI uses). The name ("768") only when all are silent."""
    declared = _declared_prediction(metadata)
    if declared:
        return declared == "v"
    if "v_pred" in header:
        return True
    sidecar = path.with_suffix(".yaml")  # AUTOMATIC1111's convention: the model's original config
    if sidecar.is_file() and re.search(r"parameterization:\s*[\"']?v[\"']?", sidecar.read_text(errors="replace")):
        return True
    if V_STATISTIC in header:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            bias = fh.get_tensor(V_STATISTIC).float()
        return float(bias.std(unbiased=False)) > 0.09
    return "768" in path.stem


def _what_else(names) -> str:
    names = list(names)
    if any(n.startswith(("lora_", "lora_unet", "lora_te")) or ".lora_" in n for n in names):
        return "it is a LoRA, which adds to a model rather than being one"
    if names and all(n.startswith(("encoder.", "decoder.", "first_stage_model.", "quant", "post_quant")) for n in names):
        return "it is a VAE on its own"
    if any(n.startswith(("double_blocks.", "transformer_blocks.", "joint_blocks.")) for n in names):
        return "it looks like a Flux or SD3 model, which this app does not run"
    return "it is not a Stable Diffusion 1.x, 2.x or SDXL checkpoint"


def tokenizer(pad_token: str = "<|endoftext|>", max_length: int = 77):
    """The CLIP tokenizer of SD 1.x/2.x/SDXL from the shipped vocabulary (SD 2 and SDXL's second pad with '!')."""
    from transformers import CLIPTokenizer

    from desktop import paths

    folder = paths.shipped_configs_dir() / "clip-tokenizer"
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad_token,
                         model_max_length=max_length)


def load_single_file(path: Path, dtype):
    """A pipeline from a .safetensors checkpoint, offline: shipped configs and tokenizers, no Hub."""
    import diffusers

    from desktop import paths

    arch = identify(path)
    pipeline_class = getattr(diffusers, arch.pipeline)
    xl = arch.pipeline.startswith("StableDiffusionXL")
    tokenizers = {"tokenizer": tokenizer("!" if arch.config.startswith("sd2") else "<|endoftext|>")}
    if xl:
        tokenizers["tokenizer_2"] = tokenizer("!")
    extra = {} if xl else {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    try:
        pipe = pipeline_class.from_single_file(str(path), config=str(paths.shipped_configs_dir() / arch.config),
                                               local_files_only=True, torch_dtype=dtype, **tokenizers, **extra)
    except LatentStudioError:
        raise
    except Exception as exc:  # diffusers raises many types for a checkpoint it cannot assemble
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path.name} looked like {arch.kind} but its tensors do not fit that architecture "
                              f"({first}). It may be damaged or a kind of model this app does not run.") from exc
    if arch is SDXL_V:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **V_SCHEDULER)
    return pipe
