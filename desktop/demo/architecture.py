"""The shipped model's components, in the standard Stable Diffusion layout at a small scale.

128x128 images through a VAE that downsamples by 8 (as SD's does) give 16x16x4 latents, which keeps
the UNet cheap enough to train on a laptop CPU.
"""

from __future__ import annotations

from pathlib import Path

from desktop.demo.domain import IMAGE_SIZE, vocabulary
from desktop.engine.tokenizer_files import write_clip_tokenizer

TEXT_WIDTH = 128
MAX_TOKENS = 32  # captions are ~8 tokens; room for longer phrasings


def build_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(write_clip_tokenizer(vocabulary(), folder, max_length=MAX_TOKENS))


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        block_out_channels=(16, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        # 4 channels per norm group: with one channel per group (16 groups of 16 channels) the last
        # GroupNorm erases each channel's mean, and with it the colour of a flat background.
        layers_per_block=1, norm_num_groups=4, sample_size=IMAGE_SIZE,
    )


def build_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(48, 96, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=4, norm_num_groups=16,  # 4 heads (diffusers naming)
    )


def build_scheduler(v_prediction: bool = False):
    """The SD 1.x schedule; with `v_prediction`, the second edition's base model's: v on betas rescaled to
    zero terminal SNR (Lin et al. 2023), sampled from t = T. At the last step the input is then pure noise,
    so the layout has to come from the caption; with SD 1.x's, signal left at t = T let the noise decide it."""
    from diffusers import EulerDiscreteScheduler

    from desktop.engine.checkpoints import V_SCHEDULER  # what v-prediction SDXL fine-tunes run with

    return EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, **(V_SCHEDULER if v_prediction else {"timestep_spacing": "leading"}),
    )


def training_alphas(v_prediction: bool = False):
    """ᾱ_t of `build_scheduler`'s schedule, for t = 0..999: what the denoising losses noise with."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(build_scheduler(v_prediction).config).alphas_cumprod


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())
