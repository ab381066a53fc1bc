"""Downloading a diffusers model by repo id: only when the user asks, with progress and resume."""

from __future__ import annotations

import re
from pathlib import Path

from desktop.engine.tiny_vae import is_tiny_autoencoder
from desktop.errors import LatentStudioError

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# The weights a text-to-image pipeline needs, safetensors only (never pickles), plus configs and tokenizers.
PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors", "*.md"]
# A tiny autoencoder (madebyollin/taesd, taesdxl) is one model at the top level.
TINY_PATTERNS = ["config.json", "diffusion_pytorch_model.safetensors", "*.md"]


def download(repo_id: str, models_dir: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    if not REPO_ID.match(repo_id):
        raise LatentStudioError(f"{repo_id!r} is not a Hugging Face repo id (it looks like owner/name).")
    target = models_dir / repo_id.split("/")[1]
    try:  # interrupted downloads resume: finished files are kept, partial ones continue
        snapshot_download(repo_id, local_dir=target, allow_patterns=["model_index.json", "config.json"])
        patterns = TINY_PATTERNS if is_tiny_autoencoder(target) else PATTERNS
        snapshot_download(repo_id, local_dir=target, allow_patterns=patterns, ignore_patterns=["*.fp16.*", "*/*non_ema*"])
    except LocalEntryNotFoundError as exc:
        raise LatentStudioError(f"Cannot download {repo_id}: this computer is offline (or HF_HUB_OFFLINE is set). "
                                "Connect and try again, or copy the model folder in by hand.") from exc
    except RepositoryNotFoundError as exc:
        raise LatentStudioError(f"No model {repo_id} on the Hugging Face Hub (or it needs a login).") from exc
    except (HFValidationError, OSError) as exc:
        raise LatentStudioError(f"Downloading {repo_id} failed: {str(exc).splitlines()[0]}") from exc
    if not (target / "model_index.json").is_file() and not is_tiny_autoencoder(target):
        raise LatentStudioError(f"{repo_id} is neither a diffusers pipeline (it has no model_index.json) nor a tiny "
                                "autoencoder.")
    return target
