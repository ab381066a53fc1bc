import threading

import numpy as np
import pytest

from desktop.engine.generation import BadImageError, GenerationCancelled
from desktop.engine.request import GenerationRequest
from desktop.engine.schedulers import SCHEDULER_NAMES, SCHEDULERS, build

SMALL = dict(width=64, height=64, steps=3)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_same_seed_gives_identical_pixels(engine):
    req = GenerationRequest("a red circle on a blue background", seed=42, **SMALL)
    a = engine.generate(req).images[0]
    b = engine.generate(req).images[0]
    c = engine.generate(req.replace(seed=43)).images[0]
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_seeds_advance_per_image_and_match_single_runs(engine):
    batch = engine.generate(GenerationRequest("a cat", seed=10, count=2, **SMALL))
    assert batch.seeds == [10, 11]
    single = engine.generate(GenerationRequest("a cat", seed=11, **SMALL))
    assert np.array_equal(pixels(batch.images[1]), pixels(single.images[0]))


def test_missing_seed_is_random_and_recorded(engine):
    result = engine.generate(GenerationRequest("a dog", **SMALL))
    assert isinstance(result.request.seed, int)
    again = engine.generate(result.request)
    assert np.array_equal(pixels(result.images[0]), pixels(again.images[0]))


def test_progress_reports_every_step_with_a_preview(engine):
    calls = []
    result = engine.generate(GenerationRequest("a square", seed=1, count=2, **SMALL),
                             on_step=lambda s, t, p: calls.append((s, t, p.noisy, p.clean)))
    assert [(s, t) for s, t, *_ in calls] == [(i, 6) for i in range(1, 7)]
    scale = engine.loaded.pipe.vae_scale_factor
    latent_size = (64 // scale, 64 // scale)  # no tiny autoencoder here: the linear map at latent size
    assert {image.size for *_, noisy, clean in calls for image in (noisy, clean)} == {latent_size}
    assert {image.mode for *_, noisy, clean in calls for image in (noisy, clean)} == {"RGB"}
    assert len(result.step_seconds) == 6


def test_ddim_never_clips_latents_unless_the_model_says_so():
    """DDIM's default clips x̂₀ to [-1, 1], right for pixels and wrong for latents; a model that ships an
    Euler config (SDXL, this project's) does not say, so the app says no."""
    from desktop.engine.schedulers import build

    euler = {"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear", "steps_offset": 1}
    assert build("DDIM", euler).config.clip_sample is False
    assert build("DDIM", {**euler, "clip_sample": True}).config.clip_sample is True  # a model's own word stands


def test_cancel_stops_within_one_step_and_decodes_nothing(engine):
    cancel = threading.Event()
    steps = []
    engine.load()
    vae = engine.loaded.pipe.vae
    decoded = []
    original = vae.decode
    vae.decode = lambda *a, **k: decoded.append(1) or original(*a, **k)

    def on_step(step, total, preview):
        steps.append(step)
        if step == 2:
            cancel.set()

    try:
        with pytest.raises(GenerationCancelled):
            engine.generate(GenerationRequest("a circle", seed=3, width=64, height=64, steps=10),
                            on_step=on_step, cancel=cancel)
    finally:
        vae.decode = original
    assert steps == [1, 2]
    assert decoded == []


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_scheduler_runs(engine, name):
    result = engine.generate(GenerationRequest("a blue triangle", seed=5, scheduler=name, **SMALL))
    assert result.request.scheduler == name
    expected_class, overrides = SCHEDULERS[name]
    scheduler = engine.loaded.pipe.scheduler
    assert type(scheduler).__name__ == expected_class
    assert all(scheduler.config[key] == value for key, value in overrides.items())
    assert result.images[0].size == (64, 64)
    assert pixels(result.images[0]).std() > 0


def test_karras_on_a_zero_terminal_snr_model_spends_its_steps_on_the_image():
    """Rescaled to zero terminal SNR, a schedule's first σ is 4096: Karras spacing put 6 of 10 steps above
    t = 960 and at 30 steps collided timesteps into an IndexError. It now spans the unrescaled range;
    the plain samplers still start from pure noise at t = T."""
    import torch

    from desktop.demo.architecture import build_scheduler

    config = dict(build_scheduler(v_prediction=True).config)
    for steps in (10, 30, 50):
        karras = build("DPM++ 2M Karras", config)
        karras.set_timesteps(steps)
        assert float(karras.sigmas[0]) == pytest.approx(14.6, rel=0.01) and int(karras.timesteps[0]) < 900
        sample = torch.randn(1, 4, 8, 8)
        for t in karras.timesteps:  # the whole loop runs
            sample = karras.step(torch.zeros_like(sample), t, sample).prev_sample
        assert torch.isfinite(sample).all()
    plain = build("DPM++ 2M", config)
    plain.set_timesteps(10)
    assert int(plain.timesteps[0]) == 999
    sd = build("DPM++ 2M Karras", dict(build_scheduler().config))  # a model without the rescale: unchanged
    sd.set_timesteps(10)
    assert float(sd.sigmas[0]) == pytest.approx(14.6, rel=0.01)


def test_scheduler_name_is_case_insensitive():
    assert GenerationRequest(scheduler="dpm++ 2m karras").validated().scheduler == "DPM++ 2M Karras"


def test_resolved_request_records_model_defaults(engine):
    result = engine.generate(GenerationRequest("a cat", seed=1, steps=2))
    req = result.request
    assert (req.width, req.height) == (64, 64)  # tiny model: UNet sample_size 32 x VAE factor 2
    assert req.guidance == 7.0 and req.scheduler == "Euler"
    assert set(result.timings) == {"load", "encode", "denoise", "decode", "total"}
    assert result.timings["encode"] > 0 and result.timings["decode"] > 0


def test_empty_prompt_is_allowed(engine):
    assert engine.generate(GenerationRequest("", seed=1, **SMALL)).images


def test_extra_network_tags_other_than_loras_are_named_as_not_applied(engine):
    result = engine.generate(GenerationRequest("a red circle <hypernet:detail:0.6>", negative_prompt="<lora:x:1>",
                                               seed=1, **SMALL))
    assert result.warnings == ["Not applied (only LoRAs in the prompt are): <hypernet:detail:0.6>, <lora:x:1>."]


def test_nan_output_is_an_error_not_an_image(engine):
    import torch

    engine.load()
    with torch.no_grad():
        engine.loaded.pipe.vae.decoder.conv_out.weight.fill_(float("nan"))
    with pytest.raises(BadImageError, match="fp32"):
        engine.generate(GenerationRequest("a cat", seed=1, **SMALL))


def test_black_output_is_an_error_not_an_image(engine):
    import torch

    engine.load()
    conv = engine.loaded.pipe.vae.decoder.conv_out
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-5.0)
    with pytest.raises(BadImageError, match="black"):
        engine.generate(GenerationRequest("a cat", seed=1, **SMALL))


def test_switching_models_needs_no_restart(engine, tiny_model, other_tiny_model):
    req = GenerationRequest("a cat", seed=1, **SMALL)
    first = engine.generate(req.replace(model=str(tiny_model)))
    pipe = engine.loaded.pipe
    again = engine.generate(req.replace(model=str(tiny_model)))
    assert engine.loaded.pipe is pipe  # cached
    second = engine.generate(req.replace(model=str(other_tiny_model)))
    assert engine.loaded.info.path == other_tiny_model
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    assert not np.array_equal(pixels(first.images[0]), pixels(second.images[0]))


def test_sliced_attention_gives_the_same_image(engine):
    req = GenerationRequest("a red square", seed=9, width=128, height=128, steps=2)
    engine.options.attention_slicing = "off"
    plain = engine.generate(req).images[0]
    engine.options.attention_slicing = "on"
    engine.options.attention_budget_mb = 1  # forces many slices even at this size
    sliced = engine.generate(req).images[0]
    assert engine.loaded.processor.sliced_calls > 0
    assert np.abs(pixels(plain) - pixels(sliced)).max() <= 1


def test_low_memory_decodes_in_tiles_of_half_the_vaes_size(engine, monkeypatch):
    """On the CPU the models stay where they are (nothing to offload to); in low memory an image larger
    than half the VAE's own size (but tiles of at least MIN_TILE) decodes in tiles of that, and the VAE
    is itself again after."""
    from desktop.engine import generation

    engine.load()
    vae = engine.loaded.pipe.vae
    own = vae.tile_sample_min_size  # the tiny test VAE's: 32 px
    seen = []
    original = vae.decode
    vae.decode = lambda *a, **k: seen.append((vae.use_tiling, vae.tile_sample_min_size)) or original(*a, **k)
    request = GenerationRequest("a square", seed=1, steps=1, width=64, height=64)
    try:
        engine.options.low_memory = True
        engine.generate(request)  # 64² fits in one 256 px tile: decoded whole
        monkeypatch.setattr(generation, "MIN_TILE", 16)  # tiles as small as this VAE's half
        low = engine.generate(request)
        assert engine.loaded.offload is False
        engine.options.low_memory = False
        whole = engine.generate(request)
    finally:
        vae.decode = original
    assert seen == [(False, own), (True, own // 2), (False, own)]
    assert (vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size) == (False, own, own // 2)
    difference = np.abs(pixels(low.images[0]).astype(int) - pixels(whole.images[0]).astype(int)).mean()
    assert 0 < difference < 40  # the same picture, blended across tile seams


def test_without_guidance_the_negative_prompt_is_not_encoded(engine):
    """CFG ≤ 1 makes one UNet pass per step and never reads the negative prompt: encoding it would only
    cost time (a whole text-encoder pass, a tenth of a one-step image)."""
    engine.load()
    calls = []
    hook = engine.loaded.pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        request = GenerationRequest("a red circle", negative_prompt="blurry", seed=2, steps=2, width=64, height=64)
        plain = engine.generate(request.replace(guidance=1.0))
        assert len(calls) == 1
        other = engine.generate(request.replace(guidance=1.0, negative_prompt="a square"))
        calls.clear()
        engine.generate(request.replace(guidance=5.0))
        assert len(calls) == 2
    finally:
        hook.remove()
    assert np.array_equal(pixels(plain.images[0]), pixels(other.images[0]))
