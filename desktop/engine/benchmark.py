"""`latent-studio bench`: speed and memory of the engine, measured in one run.

Each measurement runs in its own subprocess so that peak memory is that variant's alone. The
default model is the real Stable Diffusion 1.5 architecture with random weights, built from the
configs in resources/configs/sd15 (speed does not depend on weight values) and cached on disk.

Parts:
  overhead   the engine vs a bare diffusers StableDiffusionPipeline call, same components/settings
  slicing    attention slicing off / auto / on at each size: seconds per step, decode, peak memory
  precision  CPU fp32 vs bf16: seconds per step and the PSNR between the two images
  edit       one process: text to image, then image to image (strength 0.5), then inpainting, with
             peak memory of each and whether the edit pipelines share the loaded weights; then an
             upscale 2x of a 512 image with the VAE tiled and not tiled (peak memory of each)
  lora       seconds per step with no LoRA, a rank-4 LoRA fused (as the app runs it) and the same
             LoRA unfused, alternating in one process; the ratios to no LoRA
  fast       one image as FastSD CPU makes it, on the SD 2.1-base (SD-Turbo) architecture with random
             weights at 512², 1 step, CFG off: bare diffusers with its defaults (fp32, the full VAE)
             against the app's fast mode (auto precision, TAESD decode); encode, denoise and decode
             seconds of each, the speedup, and TAESD's decode against the VAE's
  lowmem     SDXL's VAE (random weights) decoding a 1024² image whole and in tiles: seconds and
             peak memory of each; on CUDA/MPS also a whole SDXL image with models offloaded or not
  compile    the fast part's UNet step (SD 2.1-base, 512², CFG off) eager against torch.compile: the
             compile's own seconds, the step after it, and how many steps it takes to pay back
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from desktop import paths

log = logging.getLogger(__name__)

RANDOM_SD15 = "sd15-random"
RANDOM_SD21 = "sd21-base-random"  # SD-Turbo's architecture
RANDOM_TAESD = "taesd-random"
PARTS = ("overhead", "slicing", "precision", "edit", "lora", "fast", "lowmem", "compile")
RANDOM_SDXL = "sdxl-random"
FAST_SIZE = 512
PROMPT = "a red circle on a blue background"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=RANDOM_SD15, help=f"model name/path, or {RANDOM_SD15} (default)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    parser.add_argument("--sizes", default="512,768", help="square sizes for the slicing part (default 512,768)")
    parser.add_argument("--steps", type=int, default=3, help="denoising steps per run (default 3)")
    parser.add_argument("--precision-size", type=int, default=256,
                        help="size for the fp32 vs bf16 part (default 256: emulated bf16 is slow)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant in the overhead part (default 2)")
    parser.add_argument("--out", type=Path, help="JSON results file (default: bench-results/bench-<time>.json)")


# --- the model --------------------------------------------------------------------------------


def random_sd15_folder() -> Path:
    """SD 1.5 architecture with random weights, saved once in the cache dir."""
    return random_folder(RANDOM_SD15, "sd15")


def random_folder(name: str, configs_name: str) -> Path:
    """A shipped config's architecture with random weights, saved once in the cache dir."""
    folder = paths.cache_dir() / "bench" / name
    if (folder / "model_index.json").is_file():
        return folder
    import diffusers
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from desktop.engine.tokenizer_files import write_clip_tokenizer

    configs = paths.shipped_configs_dir() / configs_name
    scheduler_class = json.loads((configs / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
    torch.manual_seed(0)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(PROMPT.split(), tmp / "_tok"))
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")),
        scheduler=getattr(diffusers, scheduler_class).from_pretrained(configs / "scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, folder)
    return folder


# --- measuring ----------------------------------------------------------------------------------


class PeakMemory:
    """Peak memory above the level at start: CUDA's allocator stats, else sampled process RSS."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        import psutil
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self._proc = psutil.Process()
            self.base = self._sample()
            self.peak = self.base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> int:
        if self.device == "mps":
            import torch

            return torch.mps.driver_allocated_memory() + self._proc.memory_info().rss
        return self._proc.memory_info().rss

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._sample())

    def __exit__(self, *exc):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._sample())
        self.delta_mb = (self.peak - self.base) / 2**20


def _engine(model: str, device: str | None, precision: str | None, slicing: str):
    from desktop.engine.generation import Engine, EngineOptions

    engine = Engine(options=EngineOptions(device=device, precision=precision, attention_slicing=slicing))
    engine.load(model)
    return engine


def _request(size: int, steps: int, model: str):
    from desktop.engine.request import GenerationRequest

    return GenerationRequest(PROMPT, steps=steps, guidance=7.0, width=size, height=size, seed=1234,
                             scheduler="DPM++ 2M", model=model)


def worker_variant(spec: dict) -> dict:
    """One generation with one setting; reports step time, decode time and peak memory."""
    engine = _engine(spec["model"], spec.get("device"), spec.get("precision"), spec.get("slicing", "off"))
    loaded = engine.loaded
    # Warm-up at the smallest size: pages in the (memory-mapped) weights so the peak below is the
    # generation's own working memory, not the model being read from disk.
    engine.generate(_request(64, 1, spec["model"]))
    loaded.processor.sliced_calls = 0
    with PeakMemory(loaded.placement.device) as mem:
        result, image_s = _timed(lambda: engine.generate(_request(spec["size"], spec["steps"], spec["model"])))
    steps = result.step_seconds[1:] or result.step_seconds  # the first step includes one-off warm-up
    report = {
        "device": loaded.placement.device,
        "precision": loaded.placement.precision,
        "sec_per_step": statistics.median(steps),
        "decode_s": result.timings["decode"],
        "image_s": image_s,
        "peak_mb": mem.delta_mb,
        "sliced_calls": loaded.processor.sliced_calls,
    }
    if spec.get("image_out"):
        result.images[0].save(spec["image_out"])
    return report


def worker_overhead(spec: dict) -> dict:
    """Alternate bare diffusers calls and engine calls on the same pipeline; compare total seconds."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    from desktop.engine import schedulers

    engine = _engine(spec["model"], spec.get("device"), spec.get("precision"), "off")
    loaded = engine.loaded
    pipe = loaded.pipe
    req = engine.resolve(_request(spec["size"], spec["steps"], spec["model"]), loaded)

    def bare() -> float:
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
        pipe.scheduler = schedulers.build(req.scheduler, loaded.base_scheduler_config)
        start = time.perf_counter()
        pipe(PROMPT, num_inference_steps=req.steps, guidance_scale=req.guidance, width=req.width,
             height=req.height, generator=torch.Generator("cpu").manual_seed(req.seed))
        return time.perf_counter() - start

    step_s: list[float] = []

    def ours() -> float:
        pipe.unet.set_attn_processor(loaded.processor)
        pipe.vae.set_attn_processor(loaded.processor)
        start = time.perf_counter()
        step_s.extend(engine.generate(req, on_step=lambda *_: None).step_seconds[1:])
        return time.perf_counter() - start

    engine.generate(req.replace(steps=1))  # warm-up: allocator, kernels
    bare_s, ours_s = [], []
    for _ in range(spec["repeats"]):
        bare_s.append(bare())
        ours_s.append(ours())
    return {
        "preview_pct_of_step": 100 * _preview_seconds(loaded, req) / statistics.median(step_s),
        "device": loaded.placement.device,
        "precision": loaded.placement.precision,
        "bare_s": statistics.median(bare_s),
        "engine_s": statistics.median(ours_s),
        "overhead_pct": 100 * (statistics.median(ours_s) / statistics.median(bare_s) - 1),
        "runs": {"bare": bare_s, "engine": ours_s},
    }


def _preview_seconds(loaded, req, calls: int = 20) -> float:
    import torch

    latent = torch.randn(loaded.pipe.unet.config.in_channels, req.height // loaded.pipe.vae_scale_factor,
                         req.width // loaded.pipe.vae_scale_factor).to(loaded.pipe.device, loaded.pipe.unet.dtype)
    start = time.perf_counter()
    for _ in range(calls):
        loaded.previewer(latent)
    return (time.perf_counter() - start) / calls


def _edit_inputs(size: int):
    """A picture and a centred square mask, with their content hashes."""
    from PIL import Image, ImageDraw

    from desktop.gallery.inputs import pixel_hash

    image = Image.new("RGB", (size, size), (40, 60, 200))
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(220, 30, 30))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle((size // 3, size // 3, 2 * size // 3, 2 * size // 3), fill=255)
    return {pixel_hash(image): image, pixel_hash(mask): mask}, pixel_hash(image), pixel_hash(mask)


def worker_edit(spec: dict) -> dict:
    """Text to image, image to image and inpainting in one process, in that order."""
    import psutil

    from desktop.engine.request import Edit

    engine = _engine(spec["model"], spec.get("device"), spec.get("precision"), "auto")
    loaded = engine.loaded
    engine.generate(_request(64, 1, spec["model"]))  # warm-up (see worker_variant)
    inputs, init, mask = _edit_inputs(spec["size"])
    base = _request(spec["size"], spec["steps"], spec["model"])
    jobs = [("txt2img", base), ("img2img", base.replace(edit=Edit(init, strength=0.5))),
            ("inpaint", base.replace(edit=Edit(init, mask=mask)))]
    rows = {}
    for name, request in jobs:
        engine.generate(request.replace(width=64, height=64, steps=2), inputs=inputs)  # its pipeline built, warm
        with PeakMemory(loaded.placement.device) as mem:
            start = time.perf_counter()
            result = engine.generate(request, inputs=inputs)
            seconds = time.perf_counter() - start
        rows[name] = {"seconds": seconds, "steps_run": len(result.step_seconds), "peak_mb": mem.delta_mb,
                      "rss_mb": psutil.Process().memory_info().rss / 2**20}
    image_pipe = loaded.pipeline("image")
    return {
        "device": loaded.placement.device, "precision": loaded.placement.precision, "rows": rows,
        "img2img_time_ratio": rows["img2img"]["seconds"] / rows["txt2img"]["seconds"],
        "weights_shared": image_pipe.unet is loaded.pipe.unet and image_pipe.vae is loaded.pipe.vae,
        "dtype_kept": str(image_pipe.unet.dtype) == str(loaded.pipe.unet.dtype),
    }


def worker_upscale(spec: dict) -> dict:
    """An upscale 2x of a square image, the VAE tiled as the engine does beyond native size, or not."""
    from desktop.engine import generation
    from desktop.engine.request import Edit

    if not spec["tiling"]:  # the variant without: the engine's tiling switched off for this process
        real = generation.vae_tiling
        generation.vae_tiling = lambda pipe, on: real(pipe, False)
    engine = _engine(spec["model"], spec.get("device"), spec.get("precision"), "auto")
    engine.generate(_request(64, 1, spec["model"]))
    inputs, init, _ = _edit_inputs(spec["size"])
    request = _request(spec["size"], spec["steps"], spec["model"]).replace(
        width=None, height=None, edit=Edit(init, upscale=2.0))
    with PeakMemory(engine.loaded.placement.device) as mem:
        start = time.perf_counter()
        result = engine.generate(request, inputs=inputs)
    return {"tiling": spec["tiling"], "size": list(result.images[0].size), "seconds": time.perf_counter() - start,
            "peak_mb": mem.delta_mb}


def write_random_lora(pipe, path: Path, rank: int = 4) -> None:
    """A kohya-format LoRA with random weights on every attention projection of the UNet and text encoder."""
    import re

    import torch
    from safetensors.torch import save_file

    generator, tensors = torch.Generator().manual_seed(0), {}
    for prefix, model, pattern in (("lora_unet_", pipe.unet, r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$"),
                                   ("lora_te_", pipe.text_encoder, r"self_attn\.(q|k|v|out)_proj$")):
        for name, module in model.named_modules():
            if re.search(pattern, name):
                key = prefix + name.replace(".", "_")
                tensors[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.05
                tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.05
                tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path))


def worker_lora(spec: dict) -> dict:
    """Seconds per step: no LoRA, the LoRA fused, the LoRA unfused; alternated, medians compared."""
    import tempfile

    from desktop.engine import lora_apply

    folder = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    engine = _engine(spec["model"], spec.get("device"), spec.get("precision"), "auto")
    engine.options.lora_folders = (str(folder),)
    loaded = engine.loaded
    write_random_lora(loaded.pipe, folder / "bench.safetensors")
    base = _request(spec["size"], spec["steps"], spec["model"])
    with_lora = base.replace(prompt=PROMPT + " <lora:bench:0.8>")
    engine.generate(with_lora.replace(width=64, height=64, steps=1))  # loads the file, warms up
    times: dict[str, list[float]] = {"none": [], "fused": [], "unfused": []}
    for _ in range(spec["repeats"]):
        times["none"] += engine.generate(base).step_seconds[1:]
        times["fused"] += engine.generate(with_lora).step_seconds[1:]
        lora_apply.unfuse(loaded.pipe, loaded.lora_state)  # same LoRA and weights, peft's unfused layers
        times["unfused"] += engine.generate(with_lora).step_seconds[1:]
        engine.generate(base.replace(width=64, height=64, steps=1))  # back to none (restores the weights)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"device": loaded.placement.device, "precision": loaded.placement.precision,
            "sec_per_step": medians, "fused_vs_none_pct": 100 * (medians["fused"] / medians["none"] - 1),
            "unfused_vs_none_pct": 100 * (medians["unfused"] / medians["none"] - 1)}


def random_taesd_folder() -> Path:
    """TAESD's architecture (diffusers' AutoencoderTiny defaults) with random weights, in its own
    models folder so that the registry finds it the way it finds a downloaded one."""
    folder = paths.cache_dir() / "bench" / "tiny" / RANDOM_TAESD
    if not (folder / "config.json").is_file():
        import torch
        from diffusers import AutoencoderTiny

        torch.manual_seed(0)
        AutoencoderTiny().save_pretrained(folder)
    return folder


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def worker_fast_baseline(spec: dict) -> dict:
    """What FastSD CPU's PyTorch mode does: diffusers with its defaults (fp32, the full VAE), one step,
    CFG off, Euler a with trailing spacing (SD-Turbo's own scheduler); the three parts timed apart."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(spec["model"], safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    size = spec["size"]

    def once() -> dict:
        with torch.inference_mode():
            embeds, seconds = _timed(lambda: pipe.encode_prompt(PROMPT, "cpu", 1, False)[0])
            generator = torch.Generator("cpu").manual_seed(1234)
            latents, denoise = _timed(lambda: pipe(prompt_embeds=embeds, num_inference_steps=1, guidance_scale=0.0,
                                                   width=size, height=size, generator=generator,
                                                   output_type="latent").images)
            _, decode = _timed(lambda: pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample)
        return {"encode_s": seconds, "denoise_s": denoise, "decode_s": decode}

    once()  # warm-up: allocator, kernels, weights paged in
    return _fast_report(once(), "cpu", "fp32", "full VAE")


def worker_fast_app(spec: dict) -> dict:
    """The app's fast mode: auto precision, the tiny autoencoder's decode; the engine's own timings."""
    from desktop.engine.generation import Engine, EngineOptions
    from desktop.engine.models import ModelRegistry
    from desktop.engine.request import GenerationRequest

    registry = ModelRegistry(extra_folders=[Path(spec["tiny_folder"])], include_hf_cache=False)
    engine = Engine(registry, EngineOptions(device="cpu", fast_decode="require"))
    request = GenerationRequest(PROMPT, steps=1, guidance=0.0, scheduler="Euler a", seed=1234, width=spec["size"],
                                height=spec["size"], model=spec["model"])
    engine.generate(request)  # warm-up, as for the baseline
    result = engine.generate(request)
    t = result.timings
    return _fast_report({"encode_s": t["encode"], "denoise_s": t["denoise"], "decode_s": t["decode"]},
                        result.placement.device, result.placement.precision, result.decoder or "VAE")


def worker_compile(spec: dict) -> dict:
    """One UNet step at the fast part's settings, eager or through torch.compile (inductor): the first
    call (for compile: the compile itself) and the best of the next calls, in this process alone."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(spec["model"], safety_checker=None, requires_safety_checker=False)
    unet = torch.compile(pipe.unet) if spec["compiled"] else pipe.unet
    with torch.inference_mode():
        embeds = pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]
        latents = torch.randn(1, 4, spec["size"] // 8, spec["size"] // 8, generator=torch.Generator().manual_seed(0))
        step = lambda: unet(latents, torch.tensor(999), encoder_hidden_states=embeds).sample  # noqa: E731
        _, first = _timed(step)
        steady = min(_timed(step)[1] for _ in range(spec["repeats"]))
    return {"first_s": first, "step_s": steady, "threads": torch.get_num_threads()}


def run_compile(repeats: int) -> dict:
    """Eager and compiled, each in its own process; whether compiling pays, and after how many steps."""
    spec = {"model": str(random_folder(RANDOM_SD21, "sd2-512")), "size": FAST_SIZE, "repeats": max(2, repeats)}
    eager = _run_worker("compile", {**spec, "compiled": False, "label": f"UNet step at {FAST_SIZE}, eager"})
    compiled = _run_worker("compile", {**spec, "compiled": True, "label": f"UNet step at {FAST_SIZE}, torch.compile"})
    if "error" in eager or "error" in compiled:
        return {"eager": eager, "compiled": compiled}
    saved = eager["step_s"] - compiled["step_s"]
    return {"eager": eager, "compiled": compiled, "speedup": eager["step_s"] / compiled["step_s"],
            "compile_s": compiled["first_s"] - compiled["step_s"],
            "pays_back_after_steps": (compiled["first_s"] - compiled["step_s"]) / saved if saved > 0 else None,
            "cpu": cpu_name()}


def worker_vae_tiling(spec: dict) -> dict:
    """SDXL's VAE decoding a 1024² latent, whole or in tiles, as low memory decodes above native size."""
    from types import SimpleNamespace

    import torch
    from diffusers import AutoencoderKL

    from desktop.engine.generation import vae_tiling

    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(paths.shipped_configs_dir() / "sdxl-base" / "vae"))
    vae.to(spec["device"]).eval()
    latents = torch.randn(1, 4, 128, 128, device=spec["device"])
    with torch.inference_mode(), vae_tiling(SimpleNamespace(vae=vae, vae_scale_factor=8), spec["tiled"], 512):
        vae.decode(latents[:, :, :16, :16])  # warm-up
        with PeakMemory(spec["device"]) as mem:
            start = time.perf_counter()
            vae.decode(latents)
            seconds = time.perf_counter() - start
    return {"tiled": spec["tiled"], "seconds": seconds, "peak_mb": mem.delta_mb, "device": spec["device"]}


def worker_offload(spec: dict) -> dict:
    """A whole SDXL image (random weights, 1024², 2 steps) with the app's low memory setting or not."""
    from desktop.engine.generation import Engine, EngineOptions
    from desktop.engine.request import GenerationRequest

    engine = Engine(options=EngineOptions(device=spec["device"], low_memory=spec["low_memory"]))
    request = GenerationRequest(PROMPT, steps=2, width=1024, height=1024, seed=1, model=spec["model"])
    engine.generate(request.replace(steps=1, width=256, height=256))
    with PeakMemory(spec["device"]) as mem:
        result = engine.generate(request)
    return {"low_memory": spec["low_memory"], "seconds": result.timings["total"], "peak_mb": mem.delta_mb,
            "device": spec["device"]}


def run_lowmem(device: str | None) -> dict:
    from desktop.engine.devices import pick_device

    device = pick_device(device)
    rows = {"device": device, "vae": [_run_worker("vae_tiling", {"device": device, "tiled": tiled,
                                                                  "label": f"SDXL VAE at 1024², tiled {tiled}"})
                                      for tiled in (False, True)]}
    if device in ("cuda", "mps"):  # on the CPU the models are in main memory already: nothing to offload
        model = str(random_sdxl_folder())
        rows["offload"] = [_run_worker("offload", {"device": device, "low_memory": low, "model": model,
                                                   "label": f"SDXL 1024², low memory {low}"}) for low in (False, True)]
    return rows


def random_sdxl_folder() -> Path:
    """SDXL base's architecture with random weights (about 7 GB in fp16), saved once in the cache dir."""
    folder = paths.cache_dir() / "bench" / RANDOM_SDXL
    if (folder / "model_index.json").is_file():
        return folder
    import torch

    from desktop.engine.checkpoints import tokenizer
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    configs = paths.shipped_configs_dir() / "sdxl-base"
    torch.manual_seed(0)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = StableDiffusionXLPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(configs / "text_encoder_2")),
        tokenizer=tokenizer("<|endoftext|>"), tokenizer_2=tokenizer("!"),
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")),
        scheduler=EulerDiscreteScheduler.from_pretrained(configs / "scheduler"),
    ).to(torch.float16)
    pipe.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, folder)
    return folder


def _fast_report(parts: dict, device: str, precision: str, decoder: str) -> dict:
    return {**parts, "total_s": sum(parts.values()), "device": device, "precision": precision, "decoder": decoder}


def run_fast() -> dict:
    """Both variants, each in its own process; the ratios the issue's targets are stated in."""
    model = str(random_folder(RANDOM_SD21, "sd2-512"))
    tiny = random_taesd_folder()
    spec = {"model": model, "size": FAST_SIZE}
    baseline = _run_worker("fast_baseline", {**spec, "label": f"bare diffusers, fp32, full VAE at {FAST_SIZE}"})
    fast = _run_worker("fast_app", {**spec, "tiny_folder": str(tiny.parent), "label": f"fast mode at {FAST_SIZE}"})
    if "error" in baseline or "error" in fast:
        return {"baseline": baseline, "app": fast}
    return {"baseline": baseline, "app": fast, "baseline_s": baseline["total_s"], "fast_s": fast["total_s"],
            "speedup": baseline["total_s"] / fast["total_s"], "decode_speedup": baseline["decode_s"] / fast["decode_s"],
            "cpu": cpu_name(), "bf16_native": bf16_native()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def bf16_native() -> bool:
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text() or "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


WORKERS = {"variant": worker_variant, "overhead": worker_overhead, "edit": worker_edit, "upscale": worker_upscale,
           "lora": worker_lora, "fast_baseline": worker_fast_baseline, "fast_app": worker_fast_app,
           "vae_tiling": worker_vae_tiling, "offload": worker_offload, "compile": worker_compile}


def _run_worker(kind: str, spec: dict) -> dict:
    cmd = [sys.executable, "-m", "desktop.engine.benchmark", kind, json.dumps(spec)]
    print(f"  running {kind}: {spec.get('label', '')}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the command --------------------------------------------------------------------------------


def psnr(path_a: str, path_b: str) -> float:
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(path_a), dtype=np.float64)
    b = np.asarray(Image.open(path_b), dtype=np.float64)
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def run(args) -> int:
    import tempfile

    from desktop.errors import LatentStudioError

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise LatentStudioError(f"Unknown bench part(s): {', '.join(sorted(unknown))}. Choose from {', '.join(PARTS)}.")
    sizes = [int(s) for s in args.sizes.split(",")]
    model = str(random_sd15_folder()) if args.model == RANDOM_SD15 else args.model
    base = {"model": model, "steps": args.steps, "device": args.device, "precision": args.precision}
    results: dict = {"model": args.model, "steps": args.steps, "when": datetime.now().isoformat(timespec="seconds")}
    tmp = Path(tempfile.mkdtemp(prefix="latent-bench-"))

    if "overhead" in parts:
        results["overhead"] = _run_worker("overhead", {**base, "size": sizes[0], "repeats": args.repeats,
                                                       "label": f"engine vs bare diffusers at {sizes[0]}"})
    if "slicing" in parts:
        results["slicing"] = [
            {"size": size, "slicing": policy,
             **_run_worker("variant", {**base, "size": size, "slicing": policy, "label": f"slicing {policy} at {size}"})}
            for size in sizes for policy in ("off", "auto", "on")
        ]
    if "precision" in parts:
        rows = []
        for precision in ("fp32", "bf16"):
            out = str(tmp / f"{precision}.png")
            size = args.precision_size
            spec = {**base, "device": "cpu", "precision": precision, "size": size, "slicing": "off",
                    "image_out": out, "label": f"cpu {precision} at {size}"}
            rows.append({"precision": precision, "size": size, **_run_worker("variant", spec)})
        if all("error" not in r for r in rows):
            results["precision_psnr_db"] = psnr(str(tmp / "fp32.png"), str(tmp / "bf16.png"))
        results["precision"] = rows

    if "edit" in parts:
        results["edit"] = _run_worker("edit", {**base, "size": sizes[0], "label": f"txt2img, img2img, inpaint at {sizes[0]}"})
        results["upscale"] = [_run_worker("upscale", {**base, "size": sizes[0], "tiling": tiling,
                                                      "label": f"upscale 2x of {sizes[0]}, VAE tiling {'on' if tiling else 'off'}"})
                              for tiling in (True, False)]

    if "lora" in parts:
        results["lora"] = _run_worker("lora", {**base, "size": sizes[0], "repeats": args.repeats,
                                               "label": f"no LoRA, fused, unfused at {sizes[0]}"})

    if "fast" in parts:
        results["fast"] = run_fast()
    if "lowmem" in parts:
        results["lowmem"] = run_lowmem(args.device)
    if "compile" in parts:
        results["compile"] = run_compile(args.repeats)

    print(format_table(results))
    out = args.out or Path("bench-results") / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return 0


def format_table(results: dict) -> str:
    lines = []
    if "overhead" in results:
        o = results["overhead"]
        lines.append("Engine overhead vs bare diffusers (same pipeline, slicing off)")
        if "error" in o:
            lines.append(f"  failed: {o['error']}")
        else:
            lines.append(f"  bare {o['bare_s']:.2f} s  engine {o['engine_s']:.2f} s  overhead {o['overhead_pct']:+.2f} %"
                         f"  ({o['device']}/{o['precision']})")
            lines.append(f"  step preview costs {o['preview_pct_of_step']:.3f} % of a step")
    for key, title in (("slicing", "Attention slicing"), ("precision", "CPU precision")):
        if key not in results:
            continue
        lines.append(f"\n{title}")
        lines.append(f"  {'size':>5} {'variant':>8} {'s/step':>8} {'decode s':>9} {'peak MB':>9} {'sliced':>7}")
        for row in results[key]:
            variant = row.get("slicing") or row.get("precision")
            size = row.get("size", "")
            if "error" in row:
                lines.append(f"  {size:>5} {variant:>8}  failed: {row['error']}")
                continue
            lines.append(f"  {size:>5} {variant:>8} {row['sec_per_step']:8.2f} {row['decode_s']:9.2f}"
                         f" {row['peak_mb']:9.0f} {row['sliced_calls']:7d}")
    if "precision_psnr_db" in results:
        fp32, bf16 = results["precision"]
        lines.append(f"  bf16 over fp32: {fp32['sec_per_step'] / bf16['sec_per_step']:.2f}x per step, "
                     f"{fp32['image_s'] / bf16['image_s']:.2f}x per image ({fp32['image_s']:.1f} vs {bf16['image_s']:.1f} s, "
                     f"{results['steps']} steps); PSNR {results['precision_psnr_db']:.1f} dB")
    if "edit" in results:
        lines += ["", *_edit_lines(results)]
    if "lora" in results:
        lo = results["lora"]
        lines += ["", "LoRA (rank 4 on every attention projection)"]
        if "error" in lo:
            lines.append(f"  failed: {lo['error']}")
        else:
            s = lo["sec_per_step"]
            lines.append(f"  s/step: none {s['none']:.3f}  fused {s['fused']:.3f} ({lo['fused_vs_none_pct']:+.1f} %)"
                         f"  unfused {s['unfused']:.3f} ({lo['unfused_vs_none_pct']:+.1f} %)  ({lo['device']}/{lo['precision']})")
    if "fast" in results:
        lines += ["", *_fast_lines(results["fast"])]
    if "lowmem" in results:
        lines += ["", f"Low memory ({results['lowmem']['device']}): SDXL at 1024²"]
        for row in results["lowmem"]["vae"] + results["lowmem"].get("offload", []):
            what = f"VAE decode, tiled {row['tiled']}" if "tiled" in row else f"whole image, low memory {row['low_memory']}"
            lines.append(f"  {what}: failed: {row['error']}" if "error" in row else
                         f"  {what}: {row['seconds']:.1f} s, peak {row['peak_mb']:.0f} MB")
    if "compile" in results:
        lines += ["", *_compile_lines(results["compile"])]
    return "\n".join(lines)


def _compile_lines(c: dict) -> list[str]:
    lines = [f"torch.compile: one UNet step, SD 2.1-base architecture at {FAST_SIZE}x{FAST_SIZE}, CFG off"]
    for key in ("eager", "compiled"):
        row = c[key]
        lines.append(f"  {key:>8}: failed: {row['error']}" if "error" in row else
                     f"  {key:>8}: first call {row['first_s']:.1f} s, then {row['step_s']:.2f} s per step")
    if "speedup" in c:
        pays = c["pays_back_after_steps"]
        lines.append(f"  compiled steps {c['speedup']:.2f}x as fast; the compile takes {c['compile_s']:.0f} s and "
                     + (f"pays back after {pays:.0f} steps" if pays is not None else "never pays back") + f"; {c['cpu']}")
    return lines


def _fast_lines(f: dict) -> list[str]:
    lines = [f"Fast mode: SD 2.1-base architecture (random weights), {FAST_SIZE}x{FAST_SIZE}, 1 step, CFG off",
             f"  {'variant':>22} {'encode s':>9} {'denoise s':>10} {'decode s':>9} {'total s':>8}"]
    for key, label in (("baseline", "bare diffusers"), ("app", "fast mode")):
        row = f.get(key, {})
        if "error" in row:
            lines.append(f"  {label:>22}  failed: {row['error']}")
            continue
        name = f"{label} ({row['precision']}, {row['decoder']})"
        lines.append(f"  {name:>22} {row['encode_s']:9.2f} {row['denoise_s']:10.2f} {row['decode_s']:9.2f} {row['total_s']:8.2f}")
    if "speedup" in f:
        lines.append(f"  speedup {f['speedup']:.2f}x (target 3x); decode {f['decode_speedup']:.1f}x faster (target 10x); "
                     f"{f['cpu']}, native bf16: {'yes' if f['bf16_native'] else 'no'}")
    return lines


def _edit_lines(results: dict) -> list[str]:
    e = results["edit"]
    if "error" in e:
        return ["Editing", f"  failed: {e['error']}"]
    lines = [f"Editing, one process ({e['device']}/{e['precision']}): weights shared {e['weights_shared']}, "
             f"dtype kept {e['dtype_kept']}",
             f"  {'job':>8} {'seconds':>8} {'steps':>6} {'peak MB':>8} {'RSS MB':>8}"]
    for name, row in e["rows"].items():
        lines.append(f"  {name:>8} {row['seconds']:8.2f} {row['steps_run']:6d} {row['peak_mb']:8.0f} {row['rss_mb']:8.0f}")
    lines.append(f"  image to image at strength 0.5 took {e['img2img_time_ratio']:.2f}x the text-to-image time")
    for row in results.get("upscale", []):
        if "error" in row:
            lines.append(f"  upscale failed: {row['error']}")
        else:
            lines.append(f"  upscale 2x to {row['size'][0]}x{row['size'][1]}, VAE tiling {'on ' if row['tiling'] else 'off'}: "
                         f"{row['seconds']:.1f} s, peak {row['peak_mb']:.0f} MB")
    return lines


if __name__ == "__main__":  # worker entry: python -m desktop.engine.benchmark KIND JSON
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(WORKERS[sys.argv[1]](json.loads(sys.argv[2]))))
