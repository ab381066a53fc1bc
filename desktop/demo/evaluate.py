"""Evaluating the shipped model through the app's own engine, and choosing its default settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from desktop.demo.domain import COLOURS, SHAPES, caption
from desktop.demo.judge import judge

TARGETS = {"shape_colour": 0.95, "background": 0.95, "shape": 0.90, "all": 0.85}


def eval_prompts(n: int = 48) -> list[tuple[str, str, str, int]]:
    """Fixed, balanced prompts: each colour and shape equally often, backgrounds varied; with seeds."""
    items = []
    for i in range(n):
        colour_index = i % len(COLOURS)
        background = COLOURS[(colour_index + 1 + (i // len(COLOURS)) % (len(COLOURS) - 1)) % len(COLOURS)]
        items.append((COLOURS[colour_index], SHAPES[i % len(SHAPES)], background, 1000 + i))
    return items


@dataclass
class EvalReport:
    settings: dict
    rows: list[dict] = field(default_factory=list)
    seconds_per_image: float = 0.0
    images: list = field(default_factory=list)  # kept only when asked (contact sheets)

    def rate(self, key: str) -> float:
        return sum(r[key] for r in self.rows) / max(1, len(self.rows))

    @property
    def scores(self) -> dict[str, float]:
        return {key: self.rate(key) for key in TARGETS}

    def table(self) -> str:
        lines = ["| measure | result | target |", "| --- | --- | --- |"]
        names = {"shape_colour": "shape colour", "background": "background colour", "shape": "shape",
                 "all": "all three right"}
        for key, target in TARGETS.items():
            lines.append(f"| {names[key]} | {100 * self.rate(key):.1f} % ({sum(r[key] for r in self.rows)}/{len(self.rows)})"
                         f" | ≥ {100 * target:.0f} % |")
        return "\n".join(lines)


def evaluate(engine, model: str | None, steps=None, guidance=None, scheduler=None, n: int = 48,
             keep_images: bool = False) -> EvalReport:
    from desktop.engine.request import GenerationRequest

    report = EvalReport({"steps": steps, "guidance": guidance, "scheduler": scheduler})
    started = time.perf_counter()
    for colour, shape, background, seed in eval_prompts(n):
        request = GenerationRequest(caption(colour, shape, background), seed=seed, steps=steps,
                                    guidance=guidance, scheduler=scheduler, model=model)
        result = engine.generate(request)
        verdict = judge(result.images[0])
        row = {
            "prompt": request.prompt, "seed": seed,
            "shape_colour": verdict.colour == colour, "background": verdict.background == background,
            "shape": verdict.shape == shape, "judged": [verdict.colour, verdict.shape, verdict.background],
        }
        row["all"] = row["shape_colour"] and row["background"] and row["shape"]
        report.rows.append(row)
        if keep_images:
            report.images.append(result.images[0])
    report.seconds_per_image = (time.perf_counter() - started) / n
    report.settings = {k: getattr(result.request, k) for k in ("steps", "guidance", "scheduler", "width", "height")}
    return report


TUNE_GRID = {
    "scheduler": ("DPM++ 2M", "Euler", "UniPC"),
    "steps": (10, 15, 25),
    "guidance": (3.0, 5.0, 7.5),
}


def tune(engine, model: str, n: int = 24, report=print) -> tuple[dict, list[dict]]:
    """Try the grid on n prompts; pick the cheapest setting within one prompt of the best score."""
    trials = []
    for scheduler in TUNE_GRID["scheduler"]:
        for steps in TUNE_GRID["steps"]:
            for guidance in TUNE_GRID["guidance"]:
                result = evaluate(engine, model, steps, guidance, scheduler, n=n)
                trials.append({"scheduler": scheduler, "steps": steps, "guidance": guidance,
                               **result.scores, "seconds_per_image": result.seconds_per_image})
                report(f"tune {scheduler:>9} {steps:>3} steps cfg {guidance:>4}: all {100 * result.rate('all'):.0f} %")
    best = max(t["all"] for t in trials)
    good = [t for t in trials if t["all"] >= best - 1.0 / n]
    chosen = min(good, key=lambda t: (t["steps"], -t["all"], -t["shape_colour"]))
    return {k: chosen[k] for k in ("scheduler", "steps", "guidance")}, trials
