"""The one path from a request to saved images, used by the CLI and by the window's worker.

Settings become engine options and a model registry here and nowhere else; a job is accepted here
(validated, its seed fixed, its prompt recorded in the history), then run and saved here. No Qt:
the worker wraps this in its thread, the CLI calls it directly.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from desktop.engine.models import ModelRegistry
from desktop.engine.request import Edit, GenerationRequest
from desktop.gallery.files import write_image
from desktop.gallery.records import ImageRecord
from desktop.settings import Settings

if TYPE_CHECKING:  # the engine imports torch: the window must not, before its worker does
    from desktop.engine.generation import EngineOptions, GenerationResult, StepCallback


@dataclass(frozen=True)
class Overrides:
    """How the user overrides the settings for one run (the CLI's --device, --precision, ...)."""

    device: str | None = None
    precision: str | None = None
    attention_slicing: str | None = None
    fast_decode: bool | None = None
    low_memory: bool | None = None


@dataclass(frozen=True)
class SavedImage:
    path: Path
    request: GenerationRequest  # what made this one image (its own seed)
    image: object  # the PIL image, so a caller can show it without reading the file back
    record: ImageRecord | None  # its gallery row; None when written outside the gallery (--out)


@dataclass(frozen=True)
class JobResult:
    saved: list[SavedImage]
    generation: "GenerationResult"

    @property
    def seeds(self) -> list[int]:
        return self.generation.seeds


@dataclass
class GridResult:
    grid: SavedImage  # the labelled grid
    cells: list  # (engine.grid.Cell, JobResult) in the order they ran

    @property
    def saved(self) -> list[SavedImage]:
        """Every image the plot saved: the cells, then the grid (as a JobResult lists them)."""
        return [job.saved[0] for _, job in self.cells] + [self.grid]

    @property
    def seeds(self) -> list[int]:
        return [self.grid.request.seed]

    @property
    def generation(self) -> "GenerationResult":
        """The last cell's result, its total time the whole plot's, every cell's warnings once."""
        last = self.cells[-1][1].generation
        warnings = list(dict.fromkeys(w for _, job in self.cells for w in job.generation.warnings))
        total = sum(job.generation.timings.get("total", 0.0) for _, job in self.cells)
        return dataclasses.replace(last, timings={**last.timings, "total": total}, warnings=warnings)


def accept(request: GenerationRequest, gallery) -> GenerationRequest:
    """Validated, its seed fixed, its prompt in the history: ready to queue (the window) or run (the CLI)."""
    request = request.validated().with_seed()
    gallery.record_prompt(request)
    return request


def edit_inputs(gallery, request: GenerationRequest) -> dict | None:
    """An edit's init image and mask, read back from the gallery's inputs by content hash."""
    if request.edit is None:
        return None
    return {digest: gallery.inputs.get(digest) for digest in request.edit.inputs()}


def keep_edit_images(gallery, init, mask=None, source: Path | None = None, **settings) -> Edit:
    """An Edit of these pictures (PIL), its settings checked first, the pictures then kept in the
    gallery; `source` is the file the init image came from (lineage links a gallery image)."""
    from desktop.engine.editing import check_mask
    from desktop.engine.request import validate_edit
    from desktop.gallery.inputs import normalised

    placeholder = "0" * 64
    edit = Edit(placeholder, mask=placeholder if mask is not None else None, **settings)
    validate_edit(edit)
    if mask is not None:
        check_mask(normalised(mask, mask=True), edit.kind)
    digest = gallery.store_input(init, source=source)
    mask_digest = gallery.store_input(mask, mask=True) if mask is not None else None
    return dataclasses.replace(edit, init_image=digest, mask=mask_digest)


def engine_options(settings: Settings, overrides: Overrides = Overrides()) -> "EngineOptions":
    from desktop.engine.generation import EngineOptions

    return EngineOptions(
        device=overrides.device or settings.device,
        precision=overrides.precision or settings.precision,
        attention_slicing=overrides.attention_slicing or settings.attention_slicing,
        attention_budget_mb=settings.attention_budget_mb,
        lora_folders=tuple(settings.lora_folders),
        embedding_folders=tuple(settings.embedding_folders),
        fast_decode="require" if overrides.fast_decode else "prefer" if settings.fast_decode else "off",
        low_memory=overrides.low_memory if overrides.low_memory is not None else settings.low_memory,
    )


def model_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(extra_folders=[Path(f) for f in settings.model_folders])


class GenerationService:
    """Accepts, runs and saves jobs for one gallery. Used from one thread (the engine's)."""

    def __init__(self, settings: Settings, gallery, overrides: Overrides = Overrides()):
        from desktop.engine.generation import Engine

        self.gallery = gallery
        self.overrides = overrides
        self.engine = Engine(default_model=settings.model)
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        """Settings changed: they apply from the next job; the loaded model stays unless they change it."""
        self.settings = settings
        self.engine.registry = model_registry(settings)
        self.engine.options = engine_options(settings, self.overrides)
        self.engine.default_model = settings.model

    def accept(self, request: GenerationRequest) -> GenerationRequest:
        return accept(request, self.gallery)

    def run(self, request: GenerationRequest, on_step: "StepCallback | None" = None,
            cancel: threading.Event | None = None, out_dir: Path | None = None) -> JobResult:
        """Generate an accepted request and save every image (into the gallery, or `out_dir`)."""
        inputs = edit_inputs(self.gallery, request)
        result = self.engine.generate(request, on_step=on_step, cancel=cancel, inputs=inputs)
        model = result.model.as_dict()
        if result.decoder:
            model["decoder"] = result.decoder  # fast decode: the tiny autoencoder that made the pixels
        networks = tuple({"kind": kind, "name": n.name, "hash": n.short_hash}
                         for kind, used in (("lora", result.loras), ("embedding", result.embeddings)) for n in used)
        saved = [self._save(image, result.request.for_image(seed), model, out_dir, networks)
                 for image, seed in zip(result.images, result.seeds)]
        return JobResult(saved, result)

    def run_grid(self, base: GenerationRequest, x, y=None, z=None, cancel: threading.Event | None = None,
                 out_dir: Path | None = None, on_cell=None) -> GridResult:
        """An X/Y/Z plot (engine/grid.py): each cell generated and saved as a normal image, then one
        labelled grid image with the axes in its metadata. Cancelling keeps the cells already made."""
        from desktop.engine import grid
        from desktop.engine.generation import GenerationCancelled

        base = self.accept(base.replace(count=1).with_seed())
        made: list[tuple[grid.Cell, JobResult]] = []
        for cell in grid.cells(base, x, y, z):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            job = self.run(cell.request.validated().with_seed(), cancel=cancel, out_dir=out_dir)  # history: the base only
            made.append((cell, job))
            if on_cell is not None:
                on_cell(cell, job)
        sheet = grid.compose({cell.position: job.saved[0].image for cell, job in made}, x, y, z)
        record = grid.axes_record(x, y, z)
        record["cells"] = [{"position": list(cell.position), "path": str(job.saved[0].path)} for cell, job in made]
        first = made[0][1].generation
        request = first.request.for_image(base.seed).replace(width=sheet.width, height=sheet.height)
        saved = self._save(sheet, request, first.model.as_dict(), out_dir, (), record)
        return GridResult(saved, made)

    def _save(self, image, request: GenerationRequest, model: dict, out_dir: Path | None,
              networks: tuple[dict, ...], grid: dict | None = None) -> SavedImage:
        strip = self.settings.strip_metadata
        if out_dir is not None:
            path = write_image(image, out_dir, request, model, strip, time.time(), networks, grid)
            return SavedImage(path, request, image, None)
        record = self.gallery.save_image(image, request, model, strip, networks, grid)
        return SavedImage(record.path, request, image, record)
