"""Tiny Stable-Diffusion-shaped pipelines built in code (random weights, seconds to run on a CPU)."""

from __future__ import annotations

from pathlib import Path

from desktop.engine.tokenizer_files import write_clip_tokenizer

WORDS = "a an the of on in red green blue circle square triangle background photo cat dog".split()


def build_tiny_pipeline(tokenizer_dir: Path, seed: int = 0):
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    write_clip_tokenizer(WORDS, tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8,
    )
    vae, scheduler = _tiny_vae_and_scheduler()
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _tiny_vae_and_scheduler():
    from diffusers import AutoencoderKL, EulerDiscreteScheduler

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=8, sample_size=32,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1)
    return vae, scheduler


def save_tiny_model(folder: Path) -> Path:
    pipe = build_tiny_pipeline(folder / "_tokenizer_src")
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_sdxl_pipeline(tokenizer_dir: Path, seed: int = 0):
    """SDXL's shape in miniature: two text encoders (the second with a projection), a UNet with
    SDXL's text-and-time conditioning."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    write_clip_tokenizer(WORDS, tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)

    def text_config(hidden: int) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                              num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77,
                              projection_dim=hidden, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)

    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=8,
    )
    vae, scheduler = _tiny_vae_and_scheduler()
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_config(32)), text_encoder_2=CLIPTextModelWithProjection(text_config(32)),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )


def save_tiny_inpainting_model(folder: Path) -> Path:
    """A dedicated inpainting model (9 input channels: latents, mask, masked image), as a folder."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    base = build_tiny_pipeline(folder / "_tokenizer_src", seed=3)
    unet = UNet2DConditionModel(**{**base.unet.config, "in_channels": 9})
    pipe = StableDiffusionInpaintPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=unet, scheduler=base.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def write_random_lora(path: Path, pipe, fmt: str = "kohya", seed: int = 0, rank: int = 4, scale: float = 0.3,
                      text_encoder: bool = True, only: tuple[str, ...] | None = None) -> Path:
    """A LoRA with random weights for `pipe`'s attention layers, as kohya/A1111 or diffusers write one.

    SDXL pipes get both text encoders (kohya's lora_te1_/lora_te2_); `only` keeps just the named parts.
    """
    import re

    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    kohya_prefix = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if sdxl else "lora_te_",
                    "text_encoder_2": "lora_te2_"}
    parts = [("unet", pipe.unet, r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$")]
    if text_encoder:
        parts += [(name, getattr(pipe, name), r"self_attn\.(q_proj|k_proj|v_proj|out_proj)$")
                  for name in ("text_encoder", "text_encoder_2") if getattr(pipe, name, None) is not None]
    for part, model, pattern in parts:
        if only is not None and part not in only:
            continue
        for name, module in model.named_modules():
            if not re.search(pattern, name):
                continue
            down = torch.randn(rank, module.in_features, generator=generator) * scale
            up = torch.randn(module.out_features, rank, generator=generator) * scale
            if fmt == "kohya":
                prefix = kohya_prefix[part] + name.replace(".", "_")
                tensors.update({f"{prefix}.lora_down.weight": down, f"{prefix}.lora_up.weight": up,
                                f"{prefix}.alpha": torch.tensor(float(rank))})
            else:
                tensors.update({f"{part}.{name}.lora_A.weight": down, f"{part}.{name}.lora_B.weight": up})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
