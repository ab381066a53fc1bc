"""The shipped model's domain, training pipeline and the shipped weights themselves."""

import dataclasses

import numpy as np
import pytest

from desktop.demo import domain
from desktop.demo.judge import judge
from desktop.demo.render import render


def test_renderer_is_deterministic_by_seed():
    a, b, c = render(5), render(5), render(6)
    assert a.caption == b.caption and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_captions_match_pixels():
    seen = set()
    for seed in range(300):
        sample = render(seed)
        pixels = np.asarray(sample.image)
        assert sample.caption == domain.caption(sample.colour, sample.shape, sample.background)
        assert sample.colour != sample.background
        assert tuple(pixels[0, 0]) == domain.PALETTE[sample.background]
        cx = (sample.box[0] + sample.box[2]) // 2
        cy = sample.box[1] + 2 * (sample.box[3] - sample.box[1]) // 3  # inside every shape, triangles too
        assert tuple(pixels[cy, cx]) == domain.PALETTE[sample.colour]
        covered = (pixels == domain.PALETTE[sample.colour]).all(axis=2).mean()
        assert 0.06 <= covered <= 0.47, (seed, covered)
        verdict = judge(sample.image)
        assert (verdict.colour, verdict.shape, verdict.background) == (sample.colour, sample.shape, sample.background)
        seen.add((sample.shape, sample.colour))
    assert len(seen) == len(domain.SHAPES) * len(domain.COLOURS)


def test_every_domain_word_is_one_token(tmp_path):
    from desktop.demo.architecture import build_tokenizer

    tok = build_tokenizer(tmp_path)
    for word in domain.vocabulary():
        assert len(tok(word).input_ids) == 3, word


def test_eval_prompts_are_balanced():
    from desktop.demo.evaluate import eval_prompts

    items = eval_prompts(48)
    assert len({(c, s, b) for c, s, b, _ in items}) == 48
    assert all(c != b for c, _, b, _ in items)
    for colour in domain.COLOURS:
        assert sum(c == colour for c, *_ in items) == 6
    for shape in domain.SHAPES:
        assert sum(s == shape for _, s, *_ in items) == 16


def test_quick_training_gives_a_model_the_engine_loads_offline(tmp_path):
    from desktop.demo import export, train
    from desktop.engine.generation import Engine, EngineOptions
    from desktop.engine.request import GenerationRequest

    cfg = dataclasses.replace(train.PRESETS["quick"], vae_steps=3, pool=32, unet_steps=4, ema_start=2)
    trained = train.train(cfg, "cpu", tmp_path / "work", report=lambda line: None)
    folder = tmp_path / "model"
    facts = export.save_model(trained, folder, {"scheduler": "Euler", "steps": 3, "guidance": 4.0,
                                                "width": 128, "height": 128})
    assert facts["size_mb"] < 25
    assert (folder / "model_index.json").is_file() and (folder / "latent_preview.json").is_file()
    assert not list(folder.rglob("*.bin"))  # safetensors only
    engine = Engine(options=EngineOptions(device="cpu", precision="fp32"))
    result = engine.generate(GenerationRequest("a red circle on a blue background", model=str(folder), seed=1))
    assert result.request.steps == 3 and result.request.scheduler == "Euler"
    assert result.images[0].size == (128, 128)


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path):
    import torch

    from desktop.demo import train
    from desktop.errors import LatentStudioError

    cfg = dataclasses.replace(train.PRESETS["quick"], vae_steps=2, pool=16, unet_steps=4, unet_batch=4,
                              ema_start=1, checkpoint_every=2)
    quiet = dict(report=lambda line: None)
    whole = train.train(cfg, "cpu", tmp_path / "w1", checkpoint_dir=tmp_path / "c1", **quiet)
    stopped = train.train(dataclasses.replace(cfg, max_minutes=1e-9), "cpu", tmp_path / "w2",
                          checkpoint_dir=tmp_path / "c2", **quiet)
    assert stopped.history["unet_steps_done"] == 1
    assert (tmp_path / "c2" / "vae.pt").is_file() and (tmp_path / "c2" / "denoiser.pt").is_file()
    lines = []
    resumed = train.train(cfg, "cpu", tmp_path / "w3", checkpoint_dir=tmp_path / "c2", resume=True,
                          report=lines.append)
    assert any("resuming the UNet at step 1" in line for line in lines)
    assert resumed.history["unet_steps_done"] == 4
    for a, b in zip(whole.unet.state_dict().values(), resumed.unet.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(LatentStudioError, match="other training settings"):
        train.train(dataclasses.replace(cfg, unet_lr=1.0), "cpu", tmp_path / "w4", checkpoint_dir=tmp_path / "c2",
                    resume=True, **quiet)
