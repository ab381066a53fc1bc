"""Running a request through a diffusers pipeline: the Engine.

The Engine owns at most one loaded pipeline (models are gigabytes), reuses it while the model,
device and precision stay the same, and swaps it when they change. It is used from one thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from pathlib import Path
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from desktop.engine import attention, conditioning, fewstep, inpainting, schedulers, tiny_vae
from desktop.engine.fewstep import FewStep
from desktop.engine.editing import denoising_steps
from desktop.engine.lora_apply import LoraState
from desktop.engine.devices import Placement, release_memory, torch_dtype
from desktop.engine.models import (APP_DEFAULTS_FILE, ModelDefaults, ModelInfo, ModelRegistry, inpainting_sibling,
                                   load_pipeline, read_defaults)
from desktop.engine.previews import LatentPreviewer, PreviewFactors, StepPreview, tracking_clean
from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)

OFFLOAD_DEVICES = ("cuda", "mps")  # on the CPU the models are in main memory already
MIN_TILE = 256  # smaller VAE tiles show their seams

StepCallback = Callable[[int, int, StepPreview], None]  # (step, total, the step's pictures)


class GenerationCancelled(Exception):
    """The user cancelled; nothing was decoded or returned."""


class BadImageError(LatentStudioError):
    """The model produced NaN or an all-black image."""


@dataclass
class GenerationResult:
    images: list  # PIL images, one per seed
    request: GenerationRequest  # every value resolved (seed, steps, size, scheduler, model)
    seeds: list[int]
    model: ModelInfo
    placement: Placement
    timings: dict[str, float]  # seconds: load, encode, denoise, decode, total
    step_seconds: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    loras: list = field(default_factory=list)  # the LoraFiles applied
    embeddings: list = field(default_factory=list)  # the Embeddings the prompts used
    decoder: str | None = None  # the tiny autoencoder that made the final pixels (fast decode); None: the VAE


@dataclass
class LoadedModel:
    info: ModelInfo
    placement: Placement
    pipe: object
    processor: attention.SlicedSDPAProcessor
    base_scheduler_config: dict
    defaults: ModelDefaults
    previewer: LatentPreviewer
    encode_clock: list[float]  # seconds spent in text encoders, accumulated by hooks
    load_seconds: float
    edit_pipes: dict = field(default_factory=dict)  # "image"/"inpaint" -> a pipeline sharing pipe's modules
    lora_state: LoraState = field(default_factory=LoraState)
    embeddings: dict = field(default_factory=dict)  # name -> Embedding loaded into the text encoders
    fast: FewStep | None = None  # a few-step model's profile (engine/fewstep.py)
    offload: bool = False  # low memory: models offloaded to the CPU between uses
    tiny: ModelInfo | None = None  # a tiny autoencoder that decodes this model's latents (tiny_vae.py)
    tiny_decoder: tiny_vae.TinyDecoder | None = None  # loaded on first use

    def tiny_decode(self) -> tiny_vae.TinyDecoder | None:
        if self.tiny is not None and self.tiny_decoder is None:
            self.tiny_decoder = tiny_vae.TinyDecoder(self.tiny, self.placement.device, self.pipe.unet.dtype)
        return self.tiny_decoder

    def clean_picture(self, latent):
        """x̂₀ (C, h, w) as a picture: full size through the tiny autoencoder, else the linear map."""
        try:
            decoder = self.tiny_decode()
        except LatentStudioError as exc:  # previews go on without it; fast decode reports it
            log.warning("Previews without the tiny autoencoder: %s", exc)
            self.tiny, decoder = None, None
        return decoder(latent) if decoder is not None else self.previewer(latent, noisy=False)

    def pipeline(self, task: str):
        """The pipeline for a task ("text", "image" or "inpaint"), sharing this model's weights."""
        if task == "text":
            return self.pipe
        if task not in self.edit_pipes:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = AutoPipelineForImage2Image if task == "image" else AutoPipelineForInpainting
            dtype = self.pipe.unet.dtype  # explicit: from_pipe otherwise casts the shared modules to fp32
            vae_dtype = self.pipe.vae.dtype
            self.edit_pipes[task] = auto.from_pipe(self.pipe, torch_dtype=dtype)
            self.edit_pipes[task].set_progress_bar_config(disable=True)
            self.pipe.vae.to(vae_dtype)  # from_pipe cast the shared VAE too (SDXL's stays fp32)
        edit_pipe = self.edit_pipes[task]
        edit_pipe.scheduler = self.pipe.scheduler
        return edit_pipe


@dataclass
class EngineOptions:
    device: str | None = None  # None/"auto": best available
    precision: str | None = None  # None/"auto": per device
    attention_slicing: str = "auto"
    attention_budget_mb: int = attention.DEFAULT_BUDGET_BYTES // 2**20
    lora_folders: tuple[str, ...] = ()  # besides <data dir>/loras
    embedding_folders: tuple[str, ...] = ()  # besides <data dir>/embeddings
    # The final decode through a tiny autoencoder (TAESD) instead of the VAE: "off", "prefer" (the window's
    # setting: the VAE, with a note, when none serves the model) or "require" (--fast-decode: an error).
    fast_decode: str = "off"
    low_memory: bool = False  # offload models to the CPU between uses (CUDA, MPS); tile large decodes


class Engine:
    def __init__(self, registry: ModelRegistry | None = None, options: EngineOptions | None = None,
                 default_model: str | None = None):
        self.registry = registry or ModelRegistry()
        self.options = options or EngineOptions()
        self.default_model = default_model
        self._loaded: LoadedModel | None = None

    # --- models -----------------------------------------------------------------------------

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def load(self, spec: str | None = None) -> LoadedModel:
        """The pipeline for a model, loaded now or reused from the last call."""
        return self.load_model(self.registry.resolve(spec if spec is not None else self.default_model))

    def load_model(self, info: ModelInfo) -> LoadedModel:
        current = self._loaded
        same_model = current is not None and current.info.path == info.path
        defaults = current.defaults if same_model else read_defaults(info.path)  # read once per load, as before
        placement = Placement.choose(self.options.device, self.options.precision, defaults.precision)
        offload = self.options.low_memory and placement.device in OFFLOAD_DEVICES
        if same_model and current.placement == placement and current.offload == offload:
            self._apply_attention_options(current)
            return current
        tiny = tiny_vae.choose(self.registry.tiny_autoencoders(), info)
        if self.options.fast_decode == "require" and tiny is None:
            raise LatentStudioError(tiny_vae.missing_message(info))  # before the model loads for nothing
        self.unload()
        self._loaded = self._load(info, defaults, placement, tiny, offload)
        return self._loaded

    def unload(self) -> None:
        if self._loaded is not None:
            device = self._loaded.placement.device
            self._loaded = None
            release_memory(device)

    def _load(self, info: ModelInfo, defaults: ModelDefaults, placement: Placement, tiny: ModelInfo | None,
              offload: bool) -> LoadedModel:
        import torch

        start = time.perf_counter()
        dtype = torch_dtype(placement.precision)
        pipe = load_pipeline(info, dtype)
        if dtype == torch.float16 and info.kind.startswith("SDXL") and getattr(pipe.vae.config, "force_upcast", False):
            pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16; its config asks for fp32
        try:
            if offload:  # each model moves to the device for its turn, then back (accelerate's hooks)
                pipe.enable_model_cpu_offload(device=placement.device)
            else:
                pipe.to(placement.device)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            raise LatentStudioError(f"Not enough memory on {placement.device} to load {info.name}: {exc}") from exc
        processor = attention.install(pipe)
        clock = [0.0]
        for name in ("text_encoder", "text_encoder_2"):
            module = getattr(pipe, name, None)
            if module is not None:
                _time_module(module, clock)
        fast = fewstep.recognise(info.path)
        loaded = LoadedModel(
            tiny=tiny,
            offload=offload,
            info=info,
            placement=placement,
            pipe=pipe,
            processor=processor,
            base_scheduler_config=dict(pipe.scheduler.config),
            defaults=defaults,
            fast=fast,
            previewer=LatentPreviewer(PreviewFactors.for_model(info.path, is_sdxl=info.kind.startswith("SDXL"))),
            encode_clock=clock,
            load_seconds=time.perf_counter() - start,
        )
        self._apply_attention_options(loaded)
        log.info("Loaded %s (%s) on %s/%s in %.1f s", info.name, info.kind, placement.device,
                 placement.precision, loaded.load_seconds)
        return loaded

    def _apply_attention_options(self, loaded: LoadedModel) -> None:
        loaded.processor.configure(self.options.attention_slicing, self.options.attention_budget_mb * 2**20,
                                   loaded.placement.device)

    # --- generation -------------------------------------------------------------------------

    def few_step(self, loaded: LoadedModel, request: GenerationRequest) -> FewStep | None:
        """The model's few-step profile, or one a LoRA in the prompt brings (LCM-LoRA, Hyper-SD, ...)."""
        if loaded.fast is not None:
            return loaded.fast
        from desktop.engine import loras

        uses = loras.uses_in(request.prompt)
        if not uses:
            return None
        files = loras.find_files(loras.lora_folders(self.options.lora_folders))
        found = []
        for use in uses:
            path = files.get(use.name)
            if use.te or use.unet:
                try:  # a broken file is reported, by name, when the LoRAs are applied
                    found.append((path, loras.read_header(path)[1]) if path else (Path(use.name), {}))
                except loras.LoraError:
                    found.append((path, {}))
        return fewstep.from_loras(found)

    def resolve(self, request: GenerationRequest, loaded: LoadedModel, inputs: dict | None = None) -> GenerationRequest:
        """Fill every value left open from the model's defaults (a few-step model's own, when it is one;
        stored app defaults win); a random seed when none was given. An edit's size is its result's
        (see editing.py) and its strength is made explicit."""
        return self._resolve(request, loaded, inputs, self.few_step(loaded, request))

    def _resolve(self, request: GenerationRequest, loaded: LoadedModel, inputs: dict | None,
                 fast: FewStep | None) -> GenerationRequest:
        d = loaded.defaults
        if fast is not None and not has_stored_defaults(loaded.info):
            d = dataclasses.replace(d, steps=fast.steps, guidance=fast.guidance, scheduler=fast.scheduler)
        scheduler = request.scheduler or d.scheduler or schedulers.name_of_config(loaded.base_scheduler_config)
        req = request.with_seed().replace(
            steps=request.steps if request.steps is not None else d.steps,
            guidance=float(request.guidance if request.guidance is not None else d.guidance),
            scheduler=scheduler,
            model=loaded.info.ref,
        )
        if req.edit is None:
            return req.replace(width=req.width or d.width, height=req.height or d.height).validated()
        width, height = self._edit_plan(req, loaded, inputs, req.seed).size
        edit = dataclasses.replace(req.edit, strength=req.edit.resolved_strength())
        return req.replace(width=width, height=height, edit=edit).validated()

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None,
                 cancel: threading.Event | None = None, inputs: dict | None = None) -> GenerationResult:
        """`inputs`: an edit's images (PIL) by content hash, as the request's Edit names them."""
        cancel = cancel or threading.Event()
        started = time.perf_counter()
        request = request.validated()  # before a model is loaded for nothing
        info = self.registry.resolve(request.model if request.model is not None else self.default_model)
        info, notes = for_task(info, request)
        check_task(info, request)
        was_loaded = self._loaded
        loaded = self.load_model(info)
        load_seconds = loaded.load_seconds if loaded is not was_loaded else 0.0
        if cancel.is_set():  # cancelled while the model loaded
            raise GenerationCancelled()
        fast = self.few_step(loaded, request)  # reads the prompt's LoRA headers once
        req = self._resolve(request, loaded, inputs, fast)
        pipe = loaded.pipe
        applied = self._apply_loras(loaded, req)
        embeddings = self._load_embeddings(loaded, req)
        pipe.scheduler = schedulers.build(req.scheduler, {**loaded.base_scheduler_config,
                                                          **(fast.scheduler_overrides() if fast else {})})
        if fast is not None and request.steps is None and not has_stored_defaults(loaded.info):
            notes = notes + [f"{fast.note}: ran {req.steps} step{'s' * (req.steps > 1)}, CFG {req.guidance:g}, "
                             f"{req.scheduler}; set steps, guidance or sampler to override."]
        warnings = notes + prompt_warnings(pipe, req)
        for text in warnings:
            log.warning(text)

        images, step_seconds = [], []
        decoder = self._fast_decoder(loaded, warnings)
        loaded.encode_clock[0] = 0.0
        denoise = decode = 0.0
        for index, seed in enumerate(req.seeds()):
            if cancel.is_set():
                raise GenerationCancelled()
            plan = self._edit_plan(req, loaded, inputs, seed) if req.edit is not None else None
            t0 = time.perf_counter()
            latents = self._denoise(loaded, req, seed, index, on_step, cancel, step_seconds, plan)
            t1 = time.perf_counter()
            tile = self._tiles(loaded, req, plan) if decoder is None else None
            if decoder is not None:
                image = decoder.final_image(pipe, latents)
            else:
                with vae_tiling(pipe, tile is not None, tile):
                    image = decode_latents(pipe, latents)
            images.append(plan.finish(image) if plan is not None else image)
            denoise += t1 - t0
            decode += time.perf_counter() - t1
        encode = loaded.encode_clock[0]
        timings = {
            "load": load_seconds,
            "encode": encode,
            "denoise": denoise - encode,
            "decode": decode,
            "total": time.perf_counter() - started,
        }
        return GenerationResult(images, req, req.seeds(), loaded.info, loaded.placement, timings, step_seconds, warnings,
                                applied, embeddings, decoder.info.name if decoder else None)

    def _fast_decoder(self, loaded: LoadedModel, warnings: list[str]) -> tiny_vae.TinyDecoder | None:
        """The tiny autoencoder for the final decode, when fast decode is on. "require" (the CLI flag)
        lets its errors through; "prefer" (the window's setting) falls back to the VAE and says why."""
        if self.options.fast_decode == "off":
            return None
        try:
            decoder = loaded.tiny_decode()
        except LatentStudioError as exc:
            if self.options.fast_decode == "require":
                raise
            warnings.append(f"Fast decode is on, but {exc} Decoded with the model's VAE.")
            return None
        if decoder is None and self.options.fast_decode == "require":
            raise LatentStudioError(tiny_vae.missing_message(loaded.info))
        if decoder is None and self.options.fast_decode == "prefer":
            warnings.append(f"Fast decode is on, but no tiny autoencoder serves {loaded.info.name}: decoded with its VAE.")
        return decoder

    def _tiles(self, loaded: LoadedModel, req: GenerationRequest, plan) -> int | None:
        """The VAE's tile size for this decode (None: whole). An edit beyond the model's native size
        decodes in the VAE's own tiles; in low memory anything larger than half the VAE's own size
        decodes in tiles of that half, never under 256 px (SDXL at 1024²: four 512² tiles, 3.8x less
        memory on the CPU; the shipped 128² models: never tiled)."""
        own = loaded.pipe.vae.tile_sample_min_size
        own = own[0] if isinstance(own, (list, tuple)) else own
        half = max(own // 2, MIN_TILE)
        if self.options.low_memory and req.width * req.height > half * half:
            return half
        return own if plan is not None and plan.tiled_vae else None

    def _load_embeddings(self, loaded: LoadedModel, req: GenerationRequest) -> list:
        """Embeddings the prompts name, loaded into the text encoders the first time (then kept)."""
        from desktop.engine import embeddings

        folders = embeddings.embedding_folders(self.options.embedding_folders)
        used = []
        for path in embeddings.named_in([req.prompt, req.negative_prompt], folders):
            known = loaded.embeddings.get(path.stem)
            if known is None or known.path != path or known.stamp != embeddings.file_stamp(path):
                embedding = embeddings.read(path)
                if known is None:
                    embeddings.load_into(loaded.pipe, embedding)
                else:  # the file changed (or another folder's file took the name) since it was loaded
                    embeddings.replace_in(loaded.pipe, known, embedding)
                loaded.embeddings[path.stem] = embedding
            used.append(loaded.embeddings[path.stem])
        return used

    def _apply_loras(self, loaded: LoadedModel, req: GenerationRequest) -> list:
        """The prompt's <lora:...> tags, resolved, checked against the model and made active (files
        stay loaded across jobs). Returns the LoraFiles applied (weight not 0), for the metadata."""
        from desktop.engine import lora_apply, loras

        uses = loras.uses_in(req.prompt)
        if not uses and not loaded.lora_state.active:
            return []
        wanted = loras.resolve(uses, loras.lora_folders(self.options.lora_folders))
        unet = loaded.pipe.unet.config
        for _, lora in wanted:
            loras.check_fits(lora, unet.cross_attention_dim, loaded.info.kind, loaded.info.name)
        lora_apply.apply(loaded.pipe, loaded.lora_state, wanted)
        return [lora for use, lora in wanted if use.te or use.unet]

    @staticmethod
    def _edit_plan(req: GenerationRequest, loaded: LoadedModel, inputs: dict | None, seed: int):
        from desktop.engine import editing

        edit = req.edit
        missing = [digest[:12] for digest in edit.inputs() if not inputs or digest not in inputs]
        if missing:
            raise LatentStudioError(f"The edit's input images are missing ({', '.join(missing)}).")
        native = (loaded.defaults.width, loaded.defaults.height)
        planned = req if edit.kind in ("img2img", "inpaint") else req.replace(width=None, height=None)
        return editing.plan(edit, inputs[edit.init_image], inputs.get(edit.mask), planned, native, seed)

    def _denoise(self, loaded: LoadedModel, req: GenerationRequest, seed: int, index: int,
                 on_step: StepCallback | None, cancel: threading.Event, step_seconds: list[float], plan=None):
        import torch

        generator = torch.Generator("cpu").manual_seed(seed)  # the noise: the same image on every device
        blending = contextlib.nullcontext()
        if plan is None:
            pipe = loaded.pipe
            task_inputs = {"latents": initial_latents(pipe, req, seed), "width": req.width, "height": req.height}
            steps = req.steps
        else:
            dedicated = plan.mask is not None and loaded.pipe.unet.config.in_channels == 9
            pipe = loaded.pipeline("inpaint" if dedicated else "image")
            steps = denoising_steps(req.steps, req.edit.strength)
            task_inputs = {"image": plan.image, "strength": min(1.0, (steps + 1e-6) / req.steps)}
            if dedicated:
                task_inputs.update(mask_image=plan.mask, width=plan.image.width, height=plan.image.height)
            elif plan.mask is not None:
                blending = inpainting.keep_unmasked(pipe.unet, *inpainting.latent_inputs(pipe, plan.image, plan.mask),
                                                    pipe.scheduler)
        last, clean = [time.perf_counter()], [None]
        text, schedule = self._text_inputs(pipe, req.replace(steps=steps))
        extra_inputs = ["add_text_embeds"] if "pooled_prompt_embeds" in text else []

        def step_end(pipeline, step, timestep, kwargs):
            now = time.perf_counter()
            step_seconds.append(now - last[0])
            last[0] = now
            if cancel.is_set():
                raise GenerationCancelled()
            if on_step is not None:
                per_image = pipeline.num_timesteps
                predicted = loaded.clean_picture(clean[0][0]) if clean[0] is not None else None
                on_step(index * per_image + step + 1, per_image * req.count,
                        StepPreview(loaded.previewer(kwargs["latents"][0]), predicted))
            if schedule is not None and schedule.changes_after(step + 1):  # prompt editing: the next span
                kwargs.update(schedule.at(step + 2, pipeline.do_classifier_free_guidance))
            return kwargs

        try:
            with (vae_tiling(pipe, plan is not None and plan.tiled_vae), mean_encoding(pipe.vae), blending,
                  tracking_clean(pipe.scheduler, clean)):
                out = pipe(
                    **text,
                    **task_inputs,
                    num_inference_steps=req.steps,
                    guidance_scale=req.guidance,
                    generator=generator,
                    output_type="latent",
                    callback_on_step_end=step_end,
                    callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", *extra_inputs],
                )
        except GenerationCancelled:
            raise
        except torch.cuda.OutOfMemoryError as exc:
            raise LatentStudioError(_oom_message(req)) from exc
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise LatentStudioError(_oom_message(req)) from exc
            raise
        return out.images

    @staticmethod
    def _text_inputs(pipe, req: GenerationRequest):
        """A1111 prompt syntax (weights, long prompts, BREAK, editing) as embeddings for SD 1.x/2.x and
        SDXL, with the conditioning schedule when the prompt edits itself; others get the strings."""
        if not conditioning.supports(pipe):
            return {"prompt": req.prompt, "negative_prompt": req.negative_prompt or None}, None
        guided = req.guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None  # as diffusers
        built = conditioning.build(pipe, req.prompt, req.negative_prompt, req.steps, guided)
        return built.first(), built if built.scheduled else None


def has_stored_defaults(info: ModelInfo) -> bool:
    """Whether the model's maker stored its defaults with it (they win over a few-step profile)."""
    return (info.path / APP_DEFAULTS_FILE).is_file()


def for_task(info: ModelInfo, request: GenerationRequest) -> tuple[ModelInfo, list[str]]:
    """The model that does the job: inpainting goes to a model's dedicated sibling when it ships one."""
    sibling = inpainting_sibling(info) if request.kind in ("inpaint", "outpaint") else None
    if sibling is None:
        return info, []
    return sibling, [f"Inpainting with {sibling.name}, the inpainting edition of {info.name}."]


def check_task(info: ModelInfo, request: GenerationRequest) -> None:
    """A dedicated inpainting model (9 input channels) only repaints masked images: said before it loads."""
    if "inpainting" in info.kind and request.kind not in ("inpaint", "outpaint"):
        name = info.path.name if info.path.is_file() else info.name
        raise LatentStudioError(
            f"{name} is an inpainting model: it repaints a masked part of an image and cannot "
            f"{'make an image from text' if request.edit is None else 'run ' + request.kind}. Give it an init "
            "image and a mask (or outpaint), or choose another model.")


@contextmanager
def vae_tiling(pipe, on: bool, tile: int | None = None):
    """Encode and decode in tiles while a large image is worked on (memory grows with tile, not image);
    `tile`: the tile's side in pixels (default: the VAE's own size)."""
    if not on:
        yield
        return
    vae = pipe.vae
    sizes = vae.tile_sample_min_size, vae.tile_latent_min_size
    if tile is not None:
        vae.tile_sample_min_size, vae.tile_latent_min_size = tile, tile // pipe.vae_scale_factor
    vae.enable_tiling()
    try:
        yield
    finally:
        vae.disable_tiling()
        vae.tile_sample_min_size, vae.tile_latent_min_size = sizes


@contextmanager
def mean_encoding(vae):
    """Encode images to the mean of the VAE's posterior, as the shipped model was trained (its VAE
    never learned a useful spread: about 1, so a sample is noise and an edit loses its image). diffusers
    draws a sample; with Stable Diffusion's VAE the two differ by a negligible spread. The VAE's dtype is
    restored afterwards: SDXL's edit pipelines cast an upcast VAE back to fp16 after encoding."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    encode, dtype = vae.encode, vae.dtype

    def mean_encode(x, return_dict=True):
        dist = encode(x).latent_dist
        fixed = DiagonalGaussianDistribution(dist.parameters, deterministic=True)
        return _encoder_output(fixed, return_dict)

    vae.encode = mean_encode
    try:
        yield
    finally:
        del vae.encode
        vae.to(dtype)


def _encoder_output(dist, return_dict: bool):
    from diffusers.models.modeling_outputs import AutoencoderKLOutput

    return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)


def initial_latents(pipe, req: GenerationRequest, seed: int):
    """Starting noise drawn on the CPU, so a seed gives the same image on every device."""
    import torch

    scale = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, req.height // scale, req.width // scale)
    noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
    return noise.to(pipe.device, pipe.unet.dtype)


def decode_latents(pipe, latents, check: bool = True, vae=None):
    """VAE-decode one latent to a PIL image; NaN or all-black output is an error, never an image
    (`check=False` decodes whatever the latent is: the explorer shows pure noise on purpose). `vae`: a
    tiny autoencoder instead of the pipeline's (its scaling factor is 1: it reads the latents as they are)."""
    import torch

    vae = vae if vae is not None else pipe.vae
    with torch.inference_mode():
        if check and not torch.isfinite(latents).all():
            raise BadImageError(_bad_image_message("NaN"))
        latents = latents.to(vae.dtype) / vae.config.scaling_factor
        shift = getattr(vae.config, "shift_factor", None)
        if shift:
            latents = latents + shift
        pixels = vae.decode(latents, return_dict=False)[0]
        if check and not torch.isfinite(pixels).all():
            raise BadImageError(_bad_image_message("NaN"))
        if check and float(pixels.float().max()) <= -1.0 + 2.0 / 255:
            raise BadImageError(_bad_image_message("black"))
        return pipe.image_processor.postprocess(pixels.float(), output_type="pil")[0]


def prompt_warnings(pipe, req: GenerationRequest) -> list[str]:
    """What of the prompt the model will not use: extra-network tags other than the prompt's LoRAs, and
    for pipelines without A1111-style chunking (an SDXL refiner) the tokens past the encoder's window."""
    from desktop.engine.prompt_syntax import strip_extra_networks

    warnings = []
    tags = [(kind, args) for kind, args in strip_extra_networks(req.prompt)[1] if kind.lower() != "lora"]
    tags += strip_extra_networks(req.negative_prompt)[1]  # A1111 reads extra networks in the prompt only
    if tags:
        warnings.append("Not applied (only LoRAs in the prompt are): "
                        + ", ".join(f"<{kind}:{args}>" for kind, args in tags) + ".")
    if conditioning.supports(pipe):
        return warnings
    tokenizer = pipe.tokenizer
    limit = tokenizer.model_max_length
    for label, text in (("prompt", req.prompt), ("negative prompt", req.negative_prompt)):
        if not text:
            continue
        ids = tokenizer(text, truncation=False, add_special_tokens=True, verbose=False).input_ids
        if len(ids) > limit:
            dropped = ids[limit - 1 : -1]
            ignored = tokenizer.decode(dropped).strip()
            warnings.append(
                f"The {label} is {len(ids) - 2} tokens long but the model reads only {limit - 2}: "
                f"the last {len(dropped)} tokens are ignored (\u201c{ignored[:120]}\u201d)."
            )
    return warnings


def _time_module(module, clock: list[float]) -> None:
    """Accumulate the wall time spent in a module's forward into clock[0]."""
    begun = [0.0]

    def before(*_):
        begun[0] = time.perf_counter()

    def after(*_):
        clock[0] += time.perf_counter() - begun[0]

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def _bad_image_message(what: str) -> str:
    return (
        f"The model produced an all-{what} image, so nothing was saved. "
        "This usually means the precision is too low for this model or device: try --precision fp32 "
        "(or set Precision to fp32 in the settings), or turn attention slicing off."
    )


def _oom_message(req: GenerationRequest) -> str:
    return (
        f"Out of memory generating {req.width}x{req.height}. Try a smaller size, fewer images at once, "
        "attention slicing 'on', or a lower precision."
    )
