"""Which timesteps (and noise levels) a sampler visits for a step count: the data and a plot.

Samplers differ less in their update rule than in where they spend their steps: "leading" spacing
(SD's default) starts one interval below t = 999, "trailing" starts at 999 (what few-step models
need), and Karras sigmas crowd the steps at low noise. This makes that visible for any model's own
schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SPACINGS = ("leading", "trailing", "linspace")
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127)]


@dataclass(frozen=True)
class Visited:
    label: str  # "DPM++ 2M Karras (leading)"
    timesteps: list[float]  # in the order they run
    sigmas: list[float]  # σ = √((1 − ᾱ_t)/ᾱ_t) at each, the noise-to-signal ratio samplers step in


def model_scheduler_config(info) -> dict:
    """A model's own scheduler config, read from its files (no weights loaded)."""
    import json

    from desktop import paths

    if info.path.is_dir():
        folder = info.path / "scheduler"
    else:
        from desktop.engine.checkpoints import identify

        folder = paths.shipped_configs_dir() / identify(info.path).config / "scheduler"
    return json.loads((folder / "scheduler_config.json").read_text(encoding="utf-8"))


def visited(name: str, steps: int, base_config: dict, spacing: str | None = None) -> Visited:
    """The timesteps a sampler runs for `steps` steps on a model's schedule (optionally respaced)."""
    from desktop.engine import schedulers

    config = {**base_config, **({"timestep_spacing": spacing} if spacing else {})}
    scheduler = schedulers.build(name, config)
    scheduler.set_timesteps(steps)
    alphas = scheduler.alphas_cumprod
    timesteps = [float(t) for t in scheduler.timesteps]
    sigmas = []
    for t in timesteps:
        low, frac = int(math.floor(t)), t - math.floor(t)
        a = float(alphas[min(low, len(alphas) - 1)]) * (1 - frac) + float(alphas[min(low + 1, len(alphas) - 1)]) * frac
        a = max(a, 2.0**-24)  # zero terminal SNR: ᾱ_T = 0 is held where diffusers' Euler and DPM hold it (σ 4096)
        sigmas.append(math.sqrt((1 - a) / a))
    label = f"{schedulers.canonical_name(name)} ({config.get('timestep_spacing', 'leading')})"
    return Visited(label, timesteps, sigmas)


def plot(series: list[Visited], total: int = 1000, size: tuple[int, int] = (760, 440)):
    """One chart: the step number across, the timestep visited up; one line and marker set per series."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    font = ImageFont.load_default(size=14)
    left, right, top, bottom = 56, 230, 34, 44
    image = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(image)
    steps = max(len(s.timesteps) for s in series)
    x_of = lambda i: left + (width - left - right) * (i / max(1, steps - 1))  # noqa: E731
    y_of = lambda t: top + (height - top - bottom) * (1 - t / (total - 1))  # noqa: E731
    for t in range(0, total, 250):
        pen.line((left, y_of(t), width - right, y_of(t)), fill=(230, 230, 230))
        pen.text((left - 8, y_of(t)), str(t), fill="black", font=font, anchor="rm")
    pen.text((left - 8, y_of(total - 1)), str(total - 1), fill="black", font=font, anchor="rm")
    pen.line((left, top, left, height - bottom), fill="black")
    pen.line((left, height - bottom, width - right, height - bottom), fill="black")
    for i in range(steps):
        pen.text((x_of(i), height - bottom + 6), str(i + 1), fill="black", font=font, anchor="mt")
    pen.text(((left + width - right) / 2, height - 16), "UNet call (second-order samplers call it twice a step)",
             fill="black", font=font, anchor="mm")
    pen.text((8, 6), "timestep t (999: pure noise)", fill="black", font=font)
    for k, s in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        points = [(x_of(i), y_of(t)) for i, t in enumerate(s.timesteps)]
        if len(points) > 1:
            pen.line(points, fill=colour, width=2)
        for x, y in points:
            pen.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        ly = top + 20 * k
        pen.rectangle((width - right + 12, ly + 3, width - right + 24, ly + 13), fill=colour)
        pen.text((width - right + 30, ly), s.label, fill="black", font=font)
    return image
