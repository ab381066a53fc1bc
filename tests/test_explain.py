"""How diffusion works, on real pipelines: the forward process and the denoising animation."""

import json

import numpy as np
import pytest
from PIL import Image

from desktop.engine import explain
from test_cli import run_cli


@pytest.fixture(scope="module")
def shipped():
    from desktop.engine.generation import Engine, EngineOptions

    return Engine(options=EngineOptions(device="cpu", precision="fp32")).load()


def test_the_forward_process_is_the_formula_and_equals_add_noise(shipped):
    import torch
    from diffusers import DDPMScheduler

    process = explain.ForwardProcess.of_pipe(shipped.pipe)
    ddpm = DDPMScheduler.from_config(shipped.pipe.scheduler.config)  # the forward process in its own (x_t) terms
    x0, noise = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    for t in (0, 1, 250, 500, 999):
        alpha_bar = torch.tensor(process.alpha_bar(t))
        by_hand = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
        ours = explain.noised(x0, noise, float(alpha_bar))
        assert torch.allclose(ours, by_hand, atol=1e-6)
        assert torch.allclose(ours, ddpm.add_noise(x0, noise, torch.tensor([t])), atol=1e-5)
    assert process.alpha_bar(999) == 0.0  # zero terminal SNR: the shipped model's last step is pure noise


def test_frames_get_noisier_and_t0_is_the_vae_round_trip(shipped):
    import torch

    from desktop.demo.render import render
    from desktop.engine.generation import decode_latents

    image = render(seed=5).image  # the shipped model's own kind of picture
    pipe = shipped.pipe
    frames = explain.forward_frames(pipe, image, [0, 300, 999], seed=1)
    assert [f.t for f in frames] == [0, 300, 999] and frames[0].alpha_bar > frames[1].alpha_bar > frames[2].alpha_bar
    with torch.inference_mode():
        latent = pipe.vae.encode(pipe.image_processor.preprocess(image)).latent_dist.mean
        round_trip = decode_latents(pipe, latent * pipe.vae.config.scaling_factor)
    original = np.asarray(image, dtype=float)
    diffs = [np.abs(np.asarray(f.image, dtype=float) - original).mean() for f in frames]
    assert np.abs(np.asarray(frames[0].image, dtype=float) - np.asarray(round_trip, dtype=float)).mean() < 3
    assert diffs[0] < diffs[1] < diffs[2]


def test_cli_writes_one_labelled_strip_in_order(tmp_path):
    from desktop.demo.render import render

    source = tmp_path / "in.png"
    render(seed=9).image.save(source)
    out = tmp_path / "strip.png"
    proc = run_cli("explain", "forward", source, "--t", "0,250,500,750,999", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [f["t"] for f in report["frames"]] == [0, 250, 500, 750, 999]
    width, height = report["size"]
    strip = Image.open(out)
    assert strip.size == (5 * width, height + explain.LABEL_HEIGHT)
    bad = run_cli("explain", "forward", source, "--t", "0,5000", "--out", out)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "from 0 to 999" in bad.stderr
    unreadable = tmp_path / "not an image.png"
    unreadable.write_text("hello")
    bad = run_cli("explain", "forward", unreadable, "--out", out)
    assert bad.returncode == 2 and "Cannot read" in bad.stderr


def test_an_animation_has_one_frame_per_step_plus_the_image(tiny_model, tmp_path):
    animation = tmp_path / "steps.webp"
    proc = run_cli("generate", "a red circle", "--model", tiny_model, "--size", "64x64", "--steps", "5", "--seed", "3",
                   "--count", "2", "--out", tmp_path / "out", "--animation", animation, "--json")
    assert proc.returncode == 0, proc.stderr
    with Image.open(animation) as movie:
        assert movie.n_frames == 5 + 1 and movie.size == (64, 64)
    gif = run_cli("generate", "a red circle", "--model", tiny_model, "--size", "64x64", "--steps", "3",
                  "--out", tmp_path / "out", "--animation", tmp_path / "steps.gif")
    assert gif.returncode == 0, gif.stderr
    with Image.open(tmp_path / "steps.gif") as movie:
        assert movie.n_frames == 3 + 1
    wrong = run_cli("generate", "x", "--model", tiny_model, "--size", "64x64", "--steps", "2",
                    "--animation", tmp_path / "steps.mp3")
    assert wrong.returncode == 2 and ".webp or .gif" in wrong.stderr


def test_each_sampler_visits_its_own_timesteps():
    from desktop.engine import sampler_schedule as ss

    config = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
              "steps_offset": 1, "timestep_spacing": "leading"}
    leading = ss.visited("Euler", 10, config)
    trailing = ss.visited("euler", 10, config, "trailing")
    karras = ss.visited("DPM++ 2M Karras", 10, config)
    assert leading.timesteps[:2] == [901.0, 801.0] and leading.label == "Euler (leading)"
    assert trailing.timesteps[0] == 999.0 and trailing.label == "Euler (trailing)"
    assert all(a > b for a, b in zip(karras.timesteps, karras.timesteps[1:]))
    assert sum(t < 250 for t in karras.timesteps) > sum(t < 250 for t in leading.timesteps)  # Karras: low noise
    assert all(a > b for a, b in zip(leading.sigmas, leading.sigmas[1:]))
    assert len(ss.visited("Heun", 10, config).timesteps) == 19  # a second-order sampler: two calls a step
    image = ss.plot([leading, trailing, karras])
    assert image.size == (760, 440)


def test_a_zero_terminal_snr_schedule_is_plotted_with_a_finite_first_sigma():
    from desktop.engine import sampler_schedule as ss

    config = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
              "steps_offset": 1, "timestep_spacing": "trailing", "prediction_type": "v_prediction",
              "rescale_betas_zero_snr": True}
    ddim = ss.visited("DDIM", 10, config)  # DDIM keeps ᾱ_T at 0
    assert ddim.timesteps[0] == 999.0 and ddim.sigmas[0] == pytest.approx(4096, rel=1e-3)
    assert ss.plot([ddim, ss.visited("DPM++ 2M Karras", 10, config)]).size == (760, 440)


def test_cli_plots_the_schedules(tmp_path):
    out = tmp_path / "schedule.png"
    proc = run_cli("explain", "schedule", "--steps", "6", "--samplers", "Euler,DDIM", "--spacing", "leading,trailing",
                   "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [s["label"] for s in report["samplers"]] == ["Euler (leading)", "Euler (trailing)", "DDIM (leading)",
                                                         "DDIM (trailing)"]
    assert all(len(s["timesteps"]) == 6 for s in report["samplers"]) and Image.open(out).size == (760, 440)
    for args, message in ((["--samplers", "Fast"], "Unknown scheduler"), (["--spacing", "late"], "--spacing"),
                          (["--steps", "0"], "1-150")):
        proc = run_cli("explain", "schedule", *args, "--out", out)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
