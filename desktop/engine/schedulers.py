"""The named samplers users pick from, mapped to diffusers scheduler classes.

Names follow AUTOMATIC1111 so that settings read from other tools' images match.
"""

from __future__ import annotations

from desktop.errors import InvalidRequest

# name -> (diffusers class name, config overrides)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "TCD": ("TCDScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
}
FALLBACK = "Euler"  # for models that ship a scheduler not in the menu
SCHEDULER_NAMES = tuple(SCHEDULERS)


def canonical_name(name: str) -> str:
    """Match a user-typed sampler name case-insensitively; unknown names are a clear error."""
    wanted = name.strip().lower()
    for known in SCHEDULERS:
        if known.lower() == wanted:
            return known
    raise InvalidRequest(f"Unknown scheduler {name!r}. Choose one of: {', '.join(SCHEDULERS)}.")


def build(name: str, base_config):
    """A fresh scheduler of the named kind, from the model's own (unmodified) scheduler config."""
    import diffusers

    class_name, overrides = SCHEDULERS[canonical_name(name)]
    # DDIM and DDPM clip x̂₀ to [-1, 1] unless told not to: right for pixels, wrong for latents (Stable
    # Diffusion's own configs say false). A model that ships another sampler's config does not say.
    unsaid = {"clip_sample": False} if "clip_sample" not in base_config else {}
    # Heun, LMS and PNDM cannot rescale to zero terminal SNR: they step on the betas before the rescale
    # (σ_T 14.6). Given the rescaled ones, Heun's averaged slope from σ 4096 broke the image.
    scheduler = getattr(diffusers, class_name).from_config(base_config, **{**unsaid, **overrides})
    if scheduler.config.get("use_karras_sigmas") and scheduler.config.get("rescale_betas_zero_snr"):
        scheduler.register_to_config(sigma_max=_unrescaled_sigma_max(base_config))
    return scheduler


def _unrescaled_sigma_max(config) -> float:
    """σ at t = T of the model's betas before the zero-terminal-SNR rescale (14.6 for SD's).

    Karras spacing runs from the last σ to the first; rescaled, the first is 4096 (ᾱ_T is held at 2⁻²⁴),
    so 6 of 10 steps land above t = 960, where nothing of the image exists yet, and at 30 steps several
    round to the same timestep and diffusers' DPM++ fails with an IndexError. Karras on such a model
    spans the σ range its schedule had before the rescale; the other samplers still start at t = T.
    """
    from diffusers import DDPMScheduler

    last = float(DDPMScheduler.from_config(config, rescale_betas_zero_snr=False).alphas_cumprod[-1])
    return ((1 - last) / last) ** 0.5


def name_of_config(config: dict) -> str:
    """The menu name for a model's own scheduler; FALLBACK when it is not in the menu."""
    class_name = config.get("_class_name", "")
    karras = bool(config.get("use_karras_sigmas", False))
    for name, (cls, overrides) in SCHEDULERS.items():
        if cls == class_name and overrides.get("use_karras_sigmas", False) == karras:
            return name
    return FALLBACK
