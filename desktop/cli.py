"""Headless commands: generate, models, bench.

User errors print one line and exit 2; Ctrl+C exits 130; nothing prints a traceback unless
--verbose is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from desktop import APP_NAME, __version__, paths
from desktop.errors import LatentStudioError
from desktop.settings import DEVICE_CHOICES, PRECISION_CHOICES, SLICING_CHOICES, load_settings

log = logging.getLogger(__name__)

EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's default prints the whole usage)
        self.exit(EXIT_USER_ERROR, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="latent-studio", description=f"{APP_NAME} {__version__}: offline text-to-image.")
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    gen = sub.add_parser("generate", help="generate images from a prompt")
    gen.add_argument("prompt", nargs="?", help="what to draw (omit with --from-file)")
    gen.add_argument("--from-file", type=Path, metavar="FILE", help="one prompt per line, each generated in turn")
    gen.add_argument("--count", type=int, default=1, help="images per prompt (default 1)")
    gen.add_argument("--animation", type=Path, metavar="FILE",
                     help="also write the denoising as an animated .webp or .gif: one frame per step, then the image")
    _add_request_args(gen)

    grid = sub.add_parser("grid", help="an X/Y/Z plot: one setting per axis, every combination, one labelled grid")
    grid.add_argument("prompt", help="what to draw (the prompt axis searches and replaces in it)")
    for flag, need in (("--x", True), ("--y", False), ("--z", False)):
        grid.add_argument(flag, required=need, metavar="NAME=V1,V2,...",
                          help=f"axis: {', '.join(_grid_axis_names())} (values with spaces or commas in quotes)")
    _add_request_args(grid)

    upscale = sub.add_parser("upscale", help="enlarge an image and redraw its detail (hires fix)")
    upscale.add_argument("image", type=Path, help="the image to enlarge")
    upscale.add_argument("--scale", type=float, required=True, metavar="F", help="factor, above 1 up to 4")
    upscale.add_argument("--strength", type=float, metavar="S", help="how much to redraw (default 0.35)")
    upscale.add_argument("--prompt", help="default: the prompt in the image's metadata")
    upscale.add_argument("--negative", help="default: the negative prompt in the image's metadata")
    upscale.add_argument("--steps", type=int, help="default: the image's, else the model's")
    upscale.add_argument("--seed", type=int, help="default: the image's seed")
    upscale.add_argument("--model", help="default: the image's model when installed, else the default model")
    _add_placement_args(upscale)
    upscale.add_argument("--out", type=Path, metavar="DIR", help="folder for the image (default: the gallery)")
    upscale.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    explain = sub.add_parser("explain", help="see how diffusion works, on your own images")
    explain_sub = explain.add_subparsers(dest="explain_command", parser_class=_Parser, required=True)
    forward = explain_sub.add_parser("forward", help="an image noised step by step with the model's schedule")
    forward.add_argument("image", type=Path, help="any image file")
    forward.add_argument("--t", default="0,250,500,750,999", help="timesteps, comma-separated (default 0,250,500,750,999)")
    forward.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="where to write the labelled strip")
    forward.add_argument("--model", help="whose VAE and schedule (default: the default model)")
    forward.add_argument("--seed", type=int, default=0, help="seed of the fixed noise ε (default 0)")
    forward.add_argument("--json", action="store_true")
    _add_placement_args(forward)

    schedule = explain_sub.add_parser("schedule", help="which timesteps each sampler visits, plotted")
    schedule.add_argument("--samplers", default="Euler,DPM++ 2M,DPM++ 2M Karras,DDIM",
                          help="comma-separated sampler names (default: Euler,DPM++ 2M,DPM++ 2M Karras,DDIM)")
    schedule.add_argument("--steps", type=int, default=10, help="step count (default 10)")
    schedule.add_argument("--spacing", default="", help="also respace: leading, trailing and/or linspace, comma-separated")
    schedule.add_argument("--model", help="whose noise schedule (default: the default model)")
    schedule.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="where to write the plot")
    schedule.add_argument("--json", action="store_true")

    models = sub.add_parser("models", help="list the models the app can see; convert a pickle checkpoint")
    models.add_argument("--json", action="store_true")
    models_sub = models.add_subparsers(dest="models_command", parser_class=_Parser)
    convert = models_sub.add_parser("convert", help="turn a .ckpt/.pt/.bin checkpoint into .safetensors (tensors only)")
    convert.add_argument("file", type=Path)
    convert.add_argument("--out", type=Path, help="where to write (default: beside it, .safetensors)")
    fetch = models_sub.add_parser("download", help="download a diffusers model by Hugging Face repo id (needs network)")
    fetch.add_argument("repo_id", help="e.g. stable-diffusion-v1-5/stable-diffusion-v1-5")

    lora_list = sub.add_parser("loras", help="list the LoRAs the app can see (use them as <lora:NAME:WEIGHT>)")
    lora_list.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="train and evaluate the shipped model (see README)")
    demo_sub = demo.add_subparsers(dest="demo_command", parser_class=_Parser, required=True)
    train = demo_sub.add_parser("train", help="train the shipped models from scratch (first edition, then grown)")
    train.add_argument("--preset", choices=("full", "quick"), default="full")
    train.add_argument("--recipe", choices=("grown", "one-pass"), default="grown",
                       help="grown: a first edition, then the second grown from it (how the shipped files were made); "
                            "one-pass: the merged recipe, the second edition in one run on the CPU")
    train.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    train.add_argument("--out", type=Path, required=True, help="model folder to write")
    train.add_argument("--max-minutes", type=float, help="stop training early at this time budget")
    train.add_argument("--no-tune", action="store_true", help="skip choosing defaults by measurement")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this model")
    train.add_argument("--no-card", action="store_true", help="skip the final evaluation and model card")
    grow = demo_sub.add_parser("grow", help="the second edition from the first: sizes, positions, inpainting sibling")
    grow.add_argument("--from", dest="first", type=Path, default=Path("resources/models/latent-shapes"),
                      help="the first edition's folder")
    grow.add_argument("--out", type=Path, required=True, help="model folder to write (its sibling goes beside it)")
    grow.add_argument("--preset", choices=("full", "quick"), default="full")
    grow.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this model")
    grow.add_argument("--no-tune", action="store_true", help="skip choosing defaults by measurement")
    grow.add_argument("--no-card", action="store_true", help="skip the final evaluation and model card")
    evaluate = demo_sub.add_parser("evaluate", help="judge the model card's fixed prompts at the model's defaults")
    evaluate.add_argument("--model", help="model name or folder (default: the shipped model)")
    evaluate.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    evaluate.add_argument("--card", action="store_true", help="rewrite the model card with the result")
    evaluate.add_argument("--sheet", type=Path, help="save a contact sheet of the judged images")
    evaluate.add_argument("--edits", action="store_true", help="also judge image to image and inpainting")
    evaluate.add_argument("--json", action="store_true")

    from desktop import cli_gallery

    cli_gallery.add_parser(sub)

    package = sub.add_parser("package", help="build the standalone app with PyInstaller (see README)")
    package.add_argument("--dist", type=Path, default=Path("dist"), help="output folder (default: ./dist)")
    package.add_argument("--check", action="store_true", help="then run the built app's --self-test")

    bench = sub.add_parser("bench", help="measure speed and memory (see README)")
    from desktop.engine import benchmark

    benchmark.add_arguments(bench)
    _add_placement_args(bench)
    return parser


def _add_request_args(parser) -> None:
    """The flags that describe one image, shared by generate and grid."""
    parser.add_argument("--negative", default="", help="what to keep out of the image")
    parser.add_argument("--model", help="model name (see `models`) or path to a diffusers folder")
    parser.add_argument("--steps", type=int, help="denoising steps, 1-150 (default: the model's)")
    parser.add_argument("--guidance", type=float, help="CFG scale, 0-30 (default: the model's)")
    parser.add_argument("--size", metavar="WxH", help="image size, multiples of 8 from 64 to 2048 (default: the model's)")
    parser.add_argument("--seed", type=int, help="seed of the first image; the next images use the following seeds")
    parser.add_argument("--scheduler", help="sampler: " + ", ".join(_scheduler_names()))
    _add_placement_args(parser)
    parser.add_argument("--out", type=Path, metavar="DIR", help="folder for the images (default: the gallery)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    edit = parser.add_argument_group("editing an image (see README: Editing images)")
    edit.add_argument("--init-image", type=Path, metavar="PATH", help="start from this image (image to image)")
    edit.add_argument("--strength", type=float, metavar="S",
                      help="how much to change it, above 0 to 1 (default 0.75; 1.0 with a mask or outpaint)")
    edit.add_argument("--mask", type=Path, metavar="PATH", help="repaint where this mask is white (inpainting)")
    edit.add_argument("--mask-blur", type=int, default=4, metavar="PX", help="soft edge of the mask in pixels (default 4)")
    edit.add_argument("--only-masked", action="store_true",
                      help="work on the masked area at the model's size, then paste it back (detail for small areas)")
    edit.add_argument("--mask-padding", type=int, default=32, metavar="PX",
                      help="context around the mask with --only-masked (default 32)")
    edit.add_argument("--outpaint", metavar="LEFT,TOP,RIGHT,BOTTOM", help="extend the canvas by these pixels (multiples of 8)")


def _grid_axis_names() -> tuple[str, ...]:
    from desktop.engine.grid import AXIS_NAMES

    return AXIS_NAMES


def _add_placement_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICE_CHOICES, help="where to run (default: auto = cuda > mps > cpu)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, help="number format (default: auto per device)")
    parser.add_argument("--attention-slicing", choices=SLICING_CHOICES, help="bound attention memory (default: auto)")
    parser.add_argument("--fast-decode", action="store_const", const=True, default=None,
                        help="decode the final image with a tiny autoencoder (TAESD/TAESDXL): much faster, a little "
                             "less detail; exits 2 when none serves the model")
    parser.add_argument("--low-memory", action="store_const", const=True, default=None,
                        help="on CUDA and MPS keep each model in main memory until it is used; decode images "
                             "larger than the model's native size in tiles")


def _scheduler_names() -> tuple[str, ...]:
    from desktop.engine.schedulers import SCHEDULER_NAMES

    return SCHEDULER_NAMES


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from desktop.app import setup_logging

    setup_logging(args.verbose)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except LatentStudioError as exc:
        if args.verbose:
            log.exception("user error")
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("Cancelled.", file=sys.stderr)
        return EXIT_CANCELLED


# --- commands ---------------------------------------------------------------------------------


def _overrides(args):
    from desktop.service import Overrides

    return Overrides(device=args.device, precision=args.precision, attention_slicing=args.attention_slicing,
                     fast_decode=getattr(args, "fast_decode", None), low_memory=getattr(args, "low_memory", None))


def cmd_models(args) -> int:
    from desktop.engine.models import model_size

    if args.models_command == "convert":
        from desktop.engine.convert import convert_pickle

        print(convert_pickle(args.file, args.out))
        return 0
    if args.models_command == "download":
        from desktop.engine.download import download

        print(download(args.repo_id, paths.user_models_dir()))
        return 0
    settings = load_settings()
    from desktop.service import model_registry

    from desktop.engine.fewstep import recognise

    registry = model_registry(settings)
    models = registry.list() + registry.tiny_autoencoders()  # the tiny ones last, with kind TAESD/TAESDXL
    fast = {m.path: recognise(m.path) for m in models}
    if args.json:
        print(json.dumps([{**m.as_dict(), "size_bytes": model_size(m), "fast": fast[m.path].note if fast[m.path] else None}
                          for m in models], indent=2))
        return 0
    if not models:
        print(f"No models found. Copy a diffusers model folder or a .safetensors checkpoint into "
              f"{paths.user_models_dir()}, add a models folder in the settings, or pass --model PATH.")
        return 0
    rows = [(m.name, m.kind + (f" ({fast[m.path].note})" if fast[m.path] else ""), f"{model_size(m) / 1e9:.2f} GB",
             m.source, str(m.path)) for m in models]
    _print_table(("NAME", "KIND", "SIZE", "SOURCE", "PATH"), rows)
    return 0


def _print_table(titles: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Aligned columns; the last (a path) is left as long as it is."""
    rows = [titles, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(titles) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1])


def _prompts(args) -> list[str]:
    if args.from_file is not None:
        if args.prompt:
            raise LatentStudioError("Give either a prompt or --from-file, not both.")
        try:
            lines = args.from_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise LatentStudioError(f"Cannot read prompts from {args.from_file}: {exc}") from exc
        prompts = [line.strip() for line in lines if line.strip()]
        if not prompts:
            raise LatentStudioError(f"{args.from_file} has no prompts (one per line).")
        return prompts
    if args.prompt is None:
        raise LatentStudioError("Give a prompt, e.g. generate \"a red circle on a blue background\", or --from-file FILE.")
    return [args.prompt]


def cmd_generate(args) -> int:
    from desktop.engine.request import SEED_LIMIT, GenerationRequest, parse_size
    from desktop.gallery.store import open_gallery
    from desktop.service import GenerationService

    settings = load_settings()
    width = height = None
    if args.size:
        width, height = parse_size(args.size)
    prompts = _prompts(args)
    if args.animation is not None:
        from desktop.engine.explain import check_animation_path

        check_animation_path(args.animation)  # before a model loads for nothing
    base = GenerationRequest(
        prompt=prompts[0], negative_prompt=args.negative, steps=args.steps, guidance=args.guidance,
        width=width, height=height, seed=args.seed, scheduler=args.scheduler, count=args.count,
        model=args.model,
    ).validated().with_seed()  # every flag checked before the model loads
    edit = _edit_settings(args)
    with open_gallery(settings) as gallery:  # opened before the model loads: problems show at once
        if edit is not None:
            base = base.replace(edit=_keep_edit(gallery, args, edit)).validated()
        service = GenerationService(settings, gallery, _overrides(args))
        reports, seed = [], base.seed
        for prompt in prompts:  # each prompt continues the seeds where the last one stopped
            request = service.accept(base.replace(prompt=prompt, seed=seed))
            job = _generate_with_progress(service, request, args.out, args.animation)
            reports.append(_report(job))
            for warning in job.generation.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            if not args.json:
                for saved in job.saved:
                    print(saved.path)
            seed = (seed + request.count) % SEED_LIMIT
    if args.json:
        print(json.dumps(reports if args.from_file else reports[0], indent=2, ensure_ascii=False))
    return 0


def cmd_grid(args) -> int:
    from desktop.engine import grid
    from desktop.engine.request import GenerationRequest, parse_size
    from desktop.gallery.store import open_gallery
    from desktop.service import GenerationService

    axes = [grid.parse_axis(text, flag) if text else None
            for flag, text in (("--x", args.x), ("--y", args.y), ("--z", args.z))]
    if axes[2] is not None and axes[1] is None:
        raise LatentStudioError("--z needs a --y axis too.")
    width, height = parse_size(args.size) if args.size else (None, None)
    base = GenerationRequest(prompt=args.prompt, negative_prompt=args.negative, steps=args.steps,
                             guidance=args.guidance, width=width, height=height, seed=args.seed,
                             scheduler=args.scheduler, model=args.model).validated().with_seed()
    edit = _edit_settings(args)
    settings = load_settings()
    with open_gallery(settings) as gallery:
        if edit is not None:
            base = base.replace(edit=_keep_edit(gallery, args, edit)).validated()
        grid.cells(base, *axes)  # every axis checked against the request before a model loads
        service = GenerationService(settings, gallery, _overrides(args))
        total = len(grid.cells(base, *axes))

        def on_cell(cell, job) -> None:
            labels = [axis.labels[i] for axis, i in zip(axes, cell.position) if axis is not None]
            print(f"[{len(done) + 1}/{total}] {', '.join(labels)}: {job.saved[0].path}", file=sys.stderr, flush=True)
            done.append({"position": list(cell.position), "labels": labels, "path": str(job.saved[0].path),
                         "seed": job.saved[0].request.seed})

        done: list[dict] = []
        result = service.run_grid(base, *axes, out_dir=args.out, on_cell=on_cell)
    if args.json:
        print(json.dumps({"grid": str(result.grid.path), "axes": {k: a.as_dict() for k, a in zip("xyz", axes) if a},
                          "cells": done}, indent=2, ensure_ascii=False))
    else:
        print(result.grid.path)
    return 0


def _edit_settings(args) -> dict | None:
    """The edit flags as Edit settings; a mask or outpaint without an init image is an error."""
    from desktop.errors import InvalidRequest

    if args.init_image is None:
        given = [flag for flag, value in (("--mask", args.mask), ("--outpaint", args.outpaint),
                                          ("--strength", args.strength), ("--only-masked", args.only_masked))
                 if value]
        if given:
            raise InvalidRequest(f"{given[0]} needs an image to work on: add --init-image PATH.")
        return None
    if args.only_masked and args.mask is None:
        raise InvalidRequest("--only-masked needs a --mask.")
    settings = {"strength": args.strength, "mask_blur": args.mask_blur, "only_masked": args.only_masked,
                "mask_padding": args.mask_padding}
    if args.outpaint is not None:
        settings["outpaint"] = _outpaint_sides(args.outpaint)
    return settings


def _outpaint_sides(text: str) -> tuple[int, int, int, int]:
    from desktop.errors import InvalidRequest

    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise InvalidRequest(f"--outpaint takes LEFT,TOP,RIGHT,BOTTOM in pixels, e.g. 0,0,128,0 (got {text!r}).")
    return tuple(int(p) for p in parts)


def _keep_edit(gallery, args, settings: dict):
    """Read the init image and mask (checked before any model loads), keep them in the gallery."""
    from desktop.engine.editing import open_image
    from desktop.service import keep_edit_images

    init = open_image(args.init_image)
    mask = open_image(args.mask, "mask") if args.mask is not None else None
    return keep_edit_images(gallery, init, mask, source=args.init_image, **settings)


def cmd_upscale(args) -> int:
    from desktop.engine.editing import open_image
    from desktop.engine.request import GenerationRequest
    from desktop.gallery.metadata import read_image_metadata
    from desktop.gallery.store import open_gallery
    from desktop.service import GenerationService, keep_edit_images

    image = open_image(args.image, "image")
    try:
        recorded = read_image_metadata(args.image)[1].request.keep_valid()[0]
    except (OSError, ValueError, SyntaxError):
        recorded = GenerationRequest()  # not a PNG, or no metadata: the flags and the model's defaults
    settings = load_settings()
    request = GenerationRequest(
        prompt=args.prompt if args.prompt is not None else recorded.prompt,
        negative_prompt=args.negative if args.negative is not None else recorded.negative_prompt,
        steps=args.steps if args.steps is not None else recorded.steps, guidance=recorded.guidance,
        seed=args.seed if args.seed is not None else recorded.seed, scheduler=recorded.scheduler,
        model=args.model or _installed(recorded.model, settings)).validated().with_seed()
    with open_gallery(settings) as gallery:
        edit = keep_edit_images(gallery, image, source=args.image, upscale=args.scale, strength=args.strength)
        service = GenerationService(settings, gallery, _overrides(args))
        job = _generate_with_progress(service, service.accept(request.replace(edit=edit)), args.out)
    for warning in job.generation.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(_report(job), indent=2, ensure_ascii=False) if args.json else job.saved[0].path)
    return 0


def _installed(model: str | None, settings) -> str | None:
    """The recorded model when this machine has it; else None (the default model), said on stderr."""
    if not model:
        return None
    from desktop.service import model_registry

    try:
        model_registry(settings).resolve(model)
        return model
    except LatentStudioError:
        print(f"warning: the image was made with {model}, which is not installed; using the default model.",
              file=sys.stderr)
        return None


def _generate_with_progress(service, request, out_dir, animation=None):
    from tqdm import tqdm

    bar, frames = None, []

    def on_step(step: int, total: int, preview) -> None:
        nonlocal bar
        if bar is None:  # created at the first step, so loading errors print cleanly
            bar = tqdm(total=total, file=sys.stderr, unit="step", leave=False, dynamic_ncols=True)
        bar.update(step - bar.n)
        if animation is not None and step <= total // request.count:  # the first image's steps
            frames.append(preview.clean or preview.noisy)

    try:
        job = service.run(request, on_step=on_step, out_dir=out_dir)
    finally:
        if bar is not None:
            bar.close()
    if animation is not None:
        from desktop.engine.explain import save_animation

        save_animation(frames + [job.saved[0].image], animation)
    return job


def _report(job) -> dict:
    result = job.generation
    return {
        "kind": result.request.kind,
        "images": [{"path": str(saved.path), "seed": saved.request.seed} for saved in job.saved],
        "request": result.request.to_dict(),
        "model": result.model.as_dict(),
        "device": result.placement.device,
        "precision": result.placement.precision,
        "decoder": result.decoder or "vae",
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
        "warnings": result.warnings,
    }


def cmd_explain(args) -> int:
    if args.explain_command == "schedule":
        return _explain_schedule(args)
    from PIL import Image, UnidentifiedImageError

    from desktop.engine import explain
    from desktop.engine.generation import Engine
    from desktop.service import engine_options, model_registry

    try:
        with Image.open(args.image) as opened:
            if opened.width * opened.height > 100_000_000:
                raise LatentStudioError(f"{args.image} is {opened.width}x{opened.height}: too large to explore.")
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise LatentStudioError(f"Cannot read {args.image} as an image: {exc}.") from exc
    settings = load_settings()
    engine = Engine(model_registry(settings), engine_options(settings, _overrides(args)), default_model=settings.model)
    loaded = engine.load(args.model)
    steps = explain.parse_timesteps(args.t, len(loaded.pipe.scheduler.alphas_cumprod))
    image = explain.model_input(image, max(loaded.defaults.width, loaded.defaults.height))
    frames = explain.forward_frames(loaded.pipe, image, steps, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    explain.labelled_strip(frames).save(args.out)
    if args.json:
        print(json.dumps({"out": str(args.out), "model": loaded.info.name, "size": list(image.size),
                          "frames": [{"t": f.t, "alpha_bar": f.alpha_bar} for f in frames]}, indent=2))
    else:
        print(args.out)
    return 0


def _explain_schedule(args) -> int:
    from desktop.engine import sampler_schedule as ss
    from desktop.engine.schedulers import canonical_name
    from desktop.errors import InvalidRequest
    from desktop.service import model_registry

    if not 1 <= args.steps <= 150:
        raise InvalidRequest(f"--steps must be 1-150 (got {args.steps}).")
    names = [canonical_name(n) for n in args.samplers.split(",") if n.strip()]
    spacings = [s.strip().lower() for s in args.spacing.split(",") if s.strip()] or [None]
    bad = [s for s in spacings if s is not None and s not in ss.SPACINGS]
    if bad:
        raise InvalidRequest(f"--spacing {bad[0]!r}: choose from {', '.join(ss.SPACINGS)}.")
    info = model_registry(load_settings()).resolve(args.model)
    config = ss.model_scheduler_config(info)
    series = [ss.visited(name, args.steps, config, spacing) for name in names for spacing in spacings]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ss.plot(series, total=int(config.get("num_train_timesteps", 1000))).save(args.out)
    if args.json:
        print(json.dumps({"out": str(args.out), "model": info.name, "steps": args.steps,
                          "samplers": [{"label": s.label, "timesteps": s.timesteps, "sigmas": s.sigmas} for s in series]},
                         indent=2))
    else:
        print(args.out)
    return 0


def cmd_loras(args) -> int:
    from desktop.engine import loras

    folders = loras.lora_folders(load_settings().lora_folders)
    good, bad = loras.list_loras(folders)
    if args.json:
        rows = [lora.as_dict() for lora in good]
        rows += [{"name": path.stem, "path": str(path), "error": problem} for path, problem in bad]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not good and not bad:
        print(f"No LoRAs found. Copy .safetensors LoRA files into {folders[0]} (or add a LoRA folder in the "
              "settings), then write <lora:NAME:0.8> in a prompt.")
        return 0
    rows = [(lora.name, lora.base, f"{lora.size / 1e6:.1f} MB", lora.short_hash, str(lora.path)) for lora in good]
    _print_table(("NAME", "BASE", "SIZE", "HASH", "PATH"), rows)
    for path, problem in bad:
        print(f"cannot use {path}: {problem}")
    return 0


def cmd_bench(args) -> int:
    from desktop.engine import benchmark

    return benchmark.run(args)


def cmd_demo(args) -> int:
    from desktop.demo import make
    from desktop.engine.devices import pick_device

    report = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.demo_command == "grow":  # on the CPU: the recipe's budget is a laptop's
        device = "cpu"
        make.grow_model(args.first, args.out, args.preset, report, args.resume)
    else:
        device = pick_device(args.device)
    if args.demo_command == "train":
        make.make_model(args.preset, device, args.out, args.max_minutes, report, args.resume, args.recipe)
    if args.demo_command in ("train", "grow"):
        if not args.no_tune:
            make.tune_defaults(args.out, device, report)
        if not args.no_card:
            print(make.evaluate_model(args.out, device, write_card=True).table())
        return 0
    result = make.evaluate_model(args.model or "", device, write_card=args.card, sheet=args.sheet, edits=args.edits)
    if args.json:
        print(json.dumps({"settings": result.settings, "scores": result.scores, "rows": result.rows,
                          "seconds_per_image": result.seconds_per_image, "edits": result.edits}, indent=2))
    else:
        print(f"settings: {result.settings}")
        print(result.table())
        print(f"{result.seconds_per_image:.2f} s per image")
    return 0


def cmd_gallery(args) -> int:
    from desktop import cli_gallery

    return cli_gallery.run(args)


def cmd_package(args) -> int:
    from desktop import packaging

    return packaging.run(args)


COMMANDS = {"package": cmd_package, "generate": cmd_generate, "grid": cmd_grid, "upscale": cmd_upscale, "loras": cmd_loras, "explain": cmd_explain, "models": cmd_models, "bench": cmd_bench, "demo": cmd_demo,
            "gallery": cmd_gallery}
