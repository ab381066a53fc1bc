"""One command from nothing to a shipped model: train, export, tune defaults, evaluate, write the card."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from desktop import paths
from desktop.errors import LatentStudioError
from desktop.demo import evaluate as ev
from desktop.demo import export, train

FACTS_FILE = "training.json"
SAMPLES_SHOWN = 72  # the card's contact sheet: the first prompts' images (all of them would add 1.1 MB)
PROVISIONAL_DEFAULTS = {"scheduler": "DPM++ 2M", "steps": 20, "guidance": 5.0, "width": 128, "height": 128}


def hardware(device: str) -> str:
    import torch

    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA)"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores ({device})"


def _engine(device: str):
    from desktop.engine.generation import Engine, EngineOptions

    return Engine(options=EngineOptions(device=device, precision=export.PRECISION))


def checkpoint_dir(out: Path) -> Path:
    return paths.cache_dir() / "demo-training" / out.resolve().name


RECIPES = ("grown", "one-pass")


def make_model(preset: str, device: str, out: Path, max_minutes: float | None = None,
               report: Callable[[str], None] = print, resume: bool = False, recipe: str = "grown") -> dict:
    """From nothing. "grown": the first edition's recipe into the cache, then the second edition grown
    from it (how the shipped files were made). "one-pass": the merged recipe (one_pass.py), on the CPU."""
    command = f"python main.py demo train --recipe {recipe} --preset {preset} --out {out}"
    if recipe == "one-pass":
        if max_minutes is not None:
            raise LatentStudioError("--max-minutes stops the grown recipe's first edition early; "
                                    "the one-pass recipe has no first edition to stop. Leave it out.")
        return one_pass_model(preset, out, command, report, resume)
    cfg = train.PRESETS[preset]
    if max_minutes is not None:
        cfg = dataclasses.replace(cfg, max_minutes=max_minutes)
    first = checkpoint_dir(out) / "first-edition"
    with tempfile.TemporaryDirectory() as work:
        trained = train.train(cfg, device, Path(work), report, checkpoint_dir(out), resume)
        facts = export.save_model(trained, first, PROVISIONAL_DEFAULTS)
    facts.update({"history": trained.history, "hardware": hardware(device), "scaling_factor": trained.vae.config.scaling_factor,
                  "command": command})
    (first / FACTS_FILE).write_text(json.dumps(facts, indent=2))
    grown = grow_model(first, out, preset, report, resume)
    grown["command"] = facts["command"]
    (out / FACTS_FILE).write_text(json.dumps(grown, indent=2))
    return grown


def one_pass_model(preset: str, out: Path, command: str, report: Callable[[str], None] = print,
                   resume: bool = False) -> dict:
    """The second edition by the merged recipe: `out` and its inpainting sibling beside it."""
    from desktop.demo import one_pass

    with tempfile.TemporaryDirectory() as work:
        edition = one_pass.train_one_pass(one_pass.PRESETS[preset], Path(work), report, checkpoint_dir(out), resume)
        return save_edition(edition, out, PROVISIONAL_DEFAULTS, {"recipe": "one-pass", "command": command}, report)


def tune_defaults(out: Path, device: str, report: Callable[[str], None] = print, tune_prompts: int = 36,
                  inpaint_cases: int = 24) -> dict:
    """Choose the default settings by measurement and store them with the model; its inpainting sibling's
    its own, on inpainting cases."""
    engine = _engine(device)
    defaults = store_defaults(out, ev.tune(engine, str(out), n=tune_prompts, report=report), tune_prompts)
    sibling = export.inpainting_sibling(out)
    if sibling.is_dir():
        trials = ev.tune_inpainting(engine, str(sibling), n=inpaint_cases, report=report)
        store_inpaint_defaults(out, trials, inpaint_cases)
    return defaults


def store_defaults(out: Path, trials: list[dict], tune_prompts: int) -> dict:
    """The grid's trials, the defaults `evaluate.choose` takes from them and why, into the model's facts
    and its settings file (and its sibling's, until `store_inpaint_defaults` gives it its own)."""
    chosen = ev.choose(trials, tune_prompts)
    facts = json.loads((out / FACTS_FILE).read_text())
    best = max(t["all"] for t in trials)
    facts["tuning"] = trials
    facts["defaults"] = {**facts.get("defaults", PROVISIONAL_DEFAULTS), **chosen}
    facts["defaults_note"] = (
        f"A grid of {len(trials)} settings ({ev.describe(ev.TUNE_GRID)}) "
        f"was scored on {tune_prompts} prompts apart from the card's (seeds {1000 + ev.CARD_PROMPTS}–"
        f"{999 + ev.CARD_PROMPTS + tune_prompts}); the best reached {100 * best:.0f} % all-attributes-right. Among the "
        f"settings within the budget of {ev.SPEED_BUDGET_S:g} s per image, the cheapest within one prompt of the best "
        "of them was chosen.")
    for folder in (out, export.inpainting_sibling(out)):
        if folder.is_dir():
            export.write_defaults(folder, facts["defaults"])
    (out / FACTS_FILE).write_text(json.dumps(facts, indent=2))
    return facts["defaults"]


def store_inpaint_defaults(out: Path, trials: list[dict], cases: int) -> dict:
    """The inpainting sibling's own defaults, chosen by the same rule on inpainting cases, into the base
    model's facts and the sibling's settings file."""
    chosen = ev.choose(trials, cases)
    facts = json.loads((out / FACTS_FILE).read_text())
    best = max(t["all"] for t in trials)
    facts["inpaint_tuning"] = trials
    facts["inpaint_defaults"] = {**facts["defaults"], **chosen}
    facts["inpaint_defaults_note"] = (
        f"The inpainting sibling has defaults of its own, chosen by the same rule on a grid of {len(trials)} "
        f"settings ({ev.describe(ev.INPAINT_GRID)}), scored on {cases} inpainting cases other "
        f"than the card's; the best placed {100 * best:.0f} % of the asked shapes right.")
    export.write_defaults(export.inpainting_sibling(out), facts["inpaint_defaults"])
    (out / FACTS_FILE).write_text(json.dumps(facts, indent=2))
    return facts["inpaint_defaults"]


def evaluate_model(model: str | Path, device: str, write_card: bool = False, sheet: Path | None = None,
                   edits: bool = False) -> ev.EvalReport:
    """Evaluate at the model's defaults on this machine (with `edits`, the editing suites too);
    optionally rewrite its model card (and its sibling's) with the result."""
    engine = _engine(device)
    folder = engine.registry.resolve(str(model)).path
    result = ev.evaluate(engine, str(model), keep_images=sheet is not None or write_card, edits=edits or write_card)
    if sheet is not None:
        contact_sheet(result.images).save(sheet)
    if write_card:
        facts = json.loads((folder / FACTS_FILE).read_text())
        facts["eval_table"] = result.table()
        placement = engine.loaded.placement
        facts["speed_note"] = (f"Evaluated on {hardware(placement.device)} in {placement.precision}: "
                               f"{result.seconds_per_image:.2f} s per image at the defaults, model load included "
                               "in the first.")
        facts["evaluation"] = {"scores": result.scores, "rows": result.rows, "device": placement.device}
        (folder / FACTS_FILE).write_text(json.dumps(facts, indent=2))
        export.write_card(folder, facts)
        contact_sheet(result.images[:SAMPLES_SHOWN]).save(folder / "samples.png")
        sibling = export.inpainting_sibling(folder)
        if sibling.is_dir():
            shutil.copy2(folder / "README.md", sibling / "README.md")
    return result


def contact_sheet(images: list, columns: int = 8):
    from PIL import Image

    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, rows * h), (40, 40, 40))
    for i, image in enumerate(images):
        sheet.paste(image, ((i % columns) * w, (i // columns) * h))
    return sheet


def grow_model(first_edition: Path, out: Path, preset: str = "full", report: Callable[[str], None] = print,
               resume: bool = False) -> dict:
    """The second edition from the first (see finetune.py): `out` and its inpainting sibling beside it."""
    from desktop.demo import finetune

    cfg = finetune.FINETUNE_PRESETS[preset]
    defaults = {**PROVISIONAL_DEFAULTS, **{k: v for k, v in json.loads(
        (first_edition / export.APP_DEFAULTS_FILE).read_text()).items() if k in PROVISIONAL_DEFAULTS}}
    previous = json.loads((first_edition / FACTS_FILE).read_text()) if (first_edition / FACTS_FILE).is_file() else {}
    with tempfile.TemporaryDirectory() as work:
        edition = finetune.grow(first_edition, cfg, Path(work), report, checkpoint_dir(out), resume)
        return save_edition(edition, out, defaults, {
            "recipe": "grown", "first_edition": {k: previous.get(k) for k in ("history", "hardware", "command", "scaling_factor")},
            "command": f"python main.py demo grow --from {first_edition} --out {out}"}, report)


def save_edition(edition, out: Path, defaults: dict, facts: dict, report: Callable[[str], None]) -> dict:
    """Both models written to `out` and its sibling, with the facts the card is made from."""
    saved = export.save_model(edition, out, defaults, inpaint_sibling=True)
    saved.update({"edition": 2, "growth": edition.history, "scaling_factor": edition.vae.config.scaling_factor,
                  "hardware": hardware("cpu"), "defaults": defaults, "make_seconds": edition.history["total_seconds"],
                  **facts})
    (out / FACTS_FILE).write_text(json.dumps(saved, indent=2))
    report(f"models written to {out} and its sibling ({saved['size_mb']:.1f} MB in all)")
    return saved
