"""Finding and loading models, offline only.

Sources: the model shipped in `resources/models/`, diffusers folders and single-file `.safetensors`
checkpoints in the user's models dir or in folders named in settings (an AUTOMATIC1111
`models/Stable-diffusion` or ComfyUI `models/checkpoints` folder works as is), a path given
directly, and repos already in the Hugging Face cache. Nothing here ever reaches the network
(`local_files_only=True`), and nothing runs code a model folder names outside diffusers/transformers.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from desktop import paths
from desktop.engine.tiny_vae import is_tiny_autoencoder, kind_of as tiny_kind
from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)

MODEL_INDEX = "model_index.json"
# Per-model defaults this app reads (steps, guidance, scheduler, size); optional.
APP_DEFAULTS_FILE = "latent_studio.json"
TEXT_TO_IMAGE_PIPELINES = {
    "StableDiffusionPipeline": "SD",
    "StableDiffusionXLPipeline": "SDXL",
    # Dedicated inpainting models: they only repaint masked images (the engine says so for text to image).
    "StableDiffusionInpaintPipeline": "SD",
    "StableDiffusionXLInpaintPipeline": "SDXL",
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # "SD 1.x", "SD 2.x", "SD 2.x (v)", "SDXL", or the pipeline class
    source: str  # "shipped", "user", "folder", "path", "hf-cache"
    path: Path

    @property
    def ref(self) -> str:
        """What resolves to this model again: its path when it was given as one, else its name."""
        return str(self.path) if self.source == "path" else self.name

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source, "path": str(self.path)}


@dataclass(frozen=True)
class ModelDefaults:
    steps: int = 25
    guidance: float = 7.0
    scheduler: str | None = None  # None: the scheduler the model ships with
    width: int = 512
    height: int = 512
    negative_prompt: str = ""
    example_prompt: str = ""
    inpainting_model: str = ""  # a sibling folder (same parent) that inpaints for this model
    precision: str = ""  # what `auto` runs it in, where its maker measured that the usual rule costs quality



def is_diffusers_folder(path: Path) -> bool:
    return (path / MODEL_INDEX).is_file()


def read_model_index(folder: Path) -> dict:
    try:
        return json.loads((folder / MODEL_INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LatentStudioError(f"Model folder {folder} has an unreadable {MODEL_INDEX} ({exc}).") from exc


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def detect_kind(folder: Path) -> str:
    """A short human label for the model family, read from its configs (no weights loaded)."""
    index = read_model_index(folder)
    class_name = index.get("_class_name", "")
    suffix = " inpainting" if "Inpaint" in class_name else ""
    return _family_kind(folder, index) + suffix if class_name in TEXT_TO_IMAGE_PIPELINES else class_name or "unknown"


def _family_kind(folder: Path, index: dict) -> str:
    family = TEXT_TO_IMAGE_PIPELINES.get(index.get("_class_name", ""))
    if family == "SDXL":
        return "SDXL"
    if family == "SD":
        text = _read_json(folder / "text_encoder" / "config.json")
        sched = _read_json(folder / "scheduler" / "scheduler_config.json")
        if text.get("hidden_size") == 1024:
            return "SD 2.x (v)" if sched.get("prediction_type") == "v_prediction" else "SD 2.x"
        if text.get("hidden_size") == 768 or not text:
            return "SD 1.x"
    return "SD (custom)"


def cross_attention_width(info: ModelInfo) -> int | None:
    """What LoRAs and embeddings must fit: 768 for SD 1.x, 1024 for SD 2.x, 2048 for SDXL (configs only)."""
    for prefix, width in (("SDXL", 2048), ("SD 2.x", 1024), ("SD 1.x", 768)):
        if info.kind.startswith(prefix):
            return width
    if info.path.is_dir():
        width = _read_json(info.path / "unet" / "config.json").get("cross_attention_dim")
        return width if isinstance(width, int) else None
    return None


def read_defaults(folder: Path) -> ModelDefaults:
    """Defaults stored with the model by whoever made it; else sensible ones for its family."""
    unet = _read_json(folder / "unet" / "config.json")
    vae = _read_json(folder / "vae" / "config.json")
    scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    sample = unet.get("sample_size", 64)
    side = (sample[0] if isinstance(sample, list) else sample) * scale
    base = {"width": side, "height": side}
    stored = _read_json(folder / APP_DEFAULTS_FILE)
    known = ModelDefaults.__dataclass_fields__
    base.update({k: v for k, v in stored.items() if k in known})
    return ModelDefaults(**base)


def inpainting_sibling(info: ModelInfo) -> ModelInfo | None:
    """The dedicated inpainting model a model names beside itself (the shipped model has one), if present."""
    if not info.path.is_dir() or "inpainting" in info.kind:
        return None
    name = read_defaults(info.path).inpainting_model
    sibling = info.path.parent / name if name else None
    if sibling is None or Path(name).name != name or not is_diffusers_folder(sibling):
        return None
    return _info(sibling, info.source)


def _info(folder: Path, source: str, name: str | None = None) -> ModelInfo:
    return ModelInfo(name or folder.name, detect_kind(folder), source, folder)


def _file_info(path: Path, source: str) -> ModelInfo:
    from desktop.engine.checkpoints import identify

    return ModelInfo(path.stem, identify(path).kind, source, path)


def is_checkpoint_file(path: Path) -> bool:
    from desktop.engine.checkpoints import SAFE_SUFFIXES

    return path.is_file() and path.suffix.lower() in SAFE_SUFFIXES


def _folder_models(root: Path, source: str, depth: int = 2) -> list[ModelInfo]:
    """A folder that is a model, or models inside it: diffusers folders and .safetensors checkpoints
    (subfolders too, as A1111 and ComfyUI users organise them). Unusable files are logged, not listed."""
    if not root.is_dir():
        return []
    if is_diffusers_folder(root):
        return [_info(root, source)]
    found = []
    for child in sorted(root.iterdir(), key=lambda p: p.name.lower()):
        try:
            if is_tiny_autoencoder(child):
                continue  # listed apart: it decodes other models' latents (tiny_autoencoders())
            if child.is_dir() and is_diffusers_folder(child):
                found.append(_info(child, source))
            elif is_checkpoint_file(child):
                found.append(_file_info(child, source))
            elif child.is_dir() and depth > 1 and not child.name.startswith("."):
                found += _folder_models(child, source, depth - 1)
        except LatentStudioError as exc:
            log.warning("Skipping model %s: %s", child, exc)
    return found


def _folder_tinies(root: Path, source: str, depth: int = 2) -> list[ModelInfo]:
    """Tiny autoencoders (TAESD, TAESDXL) in a models folder: the folder itself, or folders inside it."""
    if is_tiny_autoencoder(root):
        return [ModelInfo(root.name, tiny_kind(root), source, root)]
    if depth < 1 or not root.is_dir() or is_diffusers_folder(root):
        return []
    found = []
    for child in sorted(root.iterdir(), key=lambda p: p.name.lower()):
        if child.is_dir() and not child.name.startswith("."):
            found += _folder_tinies(child, source, depth - 1)
    return found


def model_size(info: ModelInfo) -> int:
    """Bytes on disk (a folder's files followed through the HF cache's links)."""
    if info.path.is_file():
        return info.path.stat().st_size
    return sum(f.stat().st_size for f in info.path.rglob("*") if f.is_file())


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (huggingface_hub reads it once)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _hf_cache_snapshots() -> list[tuple[str, Path]]:
    """(repo id, newest snapshot folder) of every model repo in the Hugging Face cache."""
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir(hf_cache_dir())
    except Exception as exc:  # no cache yet, or an unreadable one: nothing to list
        log.debug("No Hugging Face cache to scan: %s", exc)
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type == "model" and repo.revisions:
            newest = max(repo.revisions, key=lambda r: r.last_modified)
            found.append((repo.repo_id, Path(newest.snapshot_path)))
    return found


def _hf_cache_models() -> list[ModelInfo]:
    return [_info(path, "hf-cache", repo) for repo, path in _hf_cache_snapshots() if is_diffusers_folder(path)]


def _hf_cache_tinies() -> list[ModelInfo]:
    return [ModelInfo(repo, tiny_kind(path), "hf-cache", path) for repo, path in _hf_cache_snapshots()
            if is_tiny_autoencoder(path)]


@dataclass
class ModelRegistry:
    """Lists every model the app can see and resolves what the user asked for."""

    extra_folders: list[Path] = field(default_factory=list)
    include_hf_cache: bool = True

    def list(self) -> list[ModelInfo]:
        models = _folder_models(paths.shipped_models_dir(), "shipped")
        models += _folder_models(paths.user_models_dir(), "user")
        for folder in self.extra_folders:
            models += _folder_models(Path(folder).expanduser(), "folder")
        if self.include_hf_cache:
            models += _hf_cache_models()
        return models

    def tiny_autoencoders(self) -> list[ModelInfo]:
        """TAESD-style decoders (kind TAESD or TAESDXL), the user's folders first, then the HF cache."""
        tinies = _folder_tinies(paths.user_models_dir(), "user")
        for folder in self.extra_folders:
            tinies += _folder_tinies(Path(folder).expanduser(), "folder")
        return tinies + (_hf_cache_tinies() if self.include_hf_cache else [])

    def default(self) -> ModelInfo:
        shipped = _folder_models(paths.shipped_models_dir(), "shipped")
        if shipped:
            return shipped[0]
        others = self.list()
        if others:
            return others[0]
        raise LatentStudioError(
            "No model is installed. Add a Stable Diffusion model in diffusers format: copy its folder into "
            f"{paths.user_models_dir()}, or pass --model PATH, or add a models folder in the settings."
        )

    def resolve(self, spec: str | Path | None) -> ModelInfo:
        """A model by path, by listed name (case-insensitive) or Hugging Face repo id; None = default."""
        if spec is None or str(spec).strip() == "":
            return self.default()
        path = Path(spec).expanduser()
        if path.is_file():
            from desktop.engine.checkpoints import check_suffix

            check_suffix(path)
            return _file_info(path.resolve(), "path")
        if path.exists():
            if not path.is_dir() or not is_diffusers_folder(path):
                raise LatentStudioError(
                    f"{path} is not a diffusers model folder (it has no {MODEL_INDEX}). "
                    "Point --model at the folder that contains model_index.json."
                )
            return _info(path.resolve(), "path")
        wanted = str(spec).strip().lower()
        models = self.list()
        for info in models:
            if info.name.lower() == wanted:
                return info
        names = ", ".join(m.name for m in models) or "none installed"
        raise LatentStudioError(f"No model named or at {spec!r}. Available: {names}.")


def import_diffusers():
    """diffusers, with the libraries' own progress bars and chatter turned down (we report progress)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return diffusers


def load_pipeline(info: ModelInfo, dtype):
    """Load a diffusers text-to-image pipeline from local files; a broken model is one clear error."""
    import warnings

    diffusers = import_diffusers()
    if info.path.is_file():
        from desktop.engine.checkpoints import load_single_file

        pipe = load_single_file(info.path, dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    index = read_model_index(info.path)
    class_name = index.get("_class_name", "")
    if class_name not in TEXT_TO_IMAGE_PIPELINES:
        raise LatentStudioError(
            f"{info.path} holds a {class_name or 'unknown'} pipeline; Latent Studio runs Stable Diffusion "
            f"text-to-image models ({', '.join(TEXT_TO_IMAGE_PIPELINES)})."
        )
    check_trusted_code(info.path, index)
    extra = {"safety_checker": None, "requires_safety_checker": False} if TEXT_TO_IMAGE_PIPELINES[class_name] == "SD" else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # `torch_dtype` renamed in new diffusers; old ones need it
            pipe = getattr(diffusers, class_name).from_pretrained(
                info.path, torch_dtype=dtype, local_files_only=True, **extra
            )
    except Exception as exc:  # diffusers raises many types for a broken folder
        raise LatentStudioError(f"Could not load the model at {info.path}: {_first_line(exc)}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


TRUSTED_LIBRARIES = {"diffusers", "transformers", None}


def check_trusted_code(folder: Path, index: dict) -> None:
    """A model_index.json may name any Python module as a component's library; loading it would
    import (run) that code. Only diffusers and transformers classes are loaded."""
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library = value[0]
        if library not in TRUSTED_LIBRARIES:
            raise LatentStudioError(
                f"{folder} asks to load its {name!r} from {library!r}, code outside diffusers and transformers. "
                "Latent Studio does not run code that comes with a model; use a standard model folder.")
    if (folder / "pipeline.py").exists() or index.get("_custom_pipeline"):
        raise LatentStudioError(f"{folder} comes with its own pipeline code, which Latent Studio does not run.")


def _first_line(exc: BaseException) -> str:
    """The message's first line; with the line after it when that one only announces it (diffusers'
    "Failed to import X because of the following error (...):" puts the cause there)."""
    text = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not text:
        return type(exc).__name__
    return f"{text[0]} {text[1].strip()}" if text[0].endswith(":") and len(text) > 1 else text[0]
