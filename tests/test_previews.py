import json

import torch

from desktop.engine.previews import PREVIEW_FILE, SD15_FACTORS, LatentPreviewer, PreviewFactors


def test_model_may_ship_its_own_factors(tmp_path):
    (tmp_path / PREVIEW_FILE).write_text(json.dumps({"factors": [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]],
                                                      "bias": [0.1, 0.2, 0.3]}))
    factors = PreviewFactors.for_model(tmp_path)
    assert factors.factors[0] == (1.0, 0.0, 0.0) and factors.bias == (0.1, 0.2, 0.3)


def test_unreadable_factors_fall_back_to_sd15(tmp_path):
    (tmp_path / PREVIEW_FILE).write_text("{broken")
    assert PreviewFactors.for_model(tmp_path).factors == SD15_FACTORS


def test_preview_maps_latent_channels_to_colours():
    identity = PreviewFactors(((1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)))
    latent = torch.zeros(4, 8, 10)
    latent[0] = 0.8  # red channel high, others at zero -> (229, 127, 127)
    image = LatentPreviewer(identity)(latent)
    assert image.size == (10, 8) and image.getpixel((0, 0)) == (229, 127, 127)


def test_noisy_latents_are_rescaled_not_saturated():
    image = LatentPreviewer(PreviewFactors(SD15_FACTORS))(torch.randn(4, 64, 64) * 14.6)
    pixels = torch.tensor(list(image.getdata()), dtype=torch.float32)
    assert (pixels == 0).float().mean() < 0.2 and (pixels == 255).float().mean() < 0.2
