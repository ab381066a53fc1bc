"""A full-size SD 1.5 checkpoint with random weights, written in the original single-file (LDM) layout.

The key conversion is the inverse of diffusers' (after diffusers' own
scripts/convert_diffusers_to_original_stable_diffusion.py), written here so the test owns it.
"""

from __future__ import annotations

from pathlib import Path


def _unet_layer_map(levels: int = 4, down_attention=(0, 1, 2), up_attention=(1, 2, 3)) -> list[tuple[str, str]]:
    """SD 1.x/2.x by default; SDXL has 3 levels, attention on down levels 1-2 and up levels 0-1."""
    pairs = []  # (ldm prefix, diffusers prefix)
    for i in range(levels):
        for j in range(2):
            pairs.append((f"input_blocks.{3 * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if i in down_attention:
                pairs.append((f"input_blocks.{3 * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(3):
            pairs.append((f"output_blocks.{3 * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if i in up_attention:
                pairs.append((f"output_blocks.{3 * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < levels - 1:
            pairs.append((f"input_blocks.{3 * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            pairs.append((f"output_blocks.{3 * i + 2}.{2 if i in up_attention else 1}.", f"up_blocks.{i}.upsamplers.0."))
    pairs.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return pairs


UNET_DIRECT = [("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
               ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
               ("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2.")]
UNET_RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
               ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]


def unet_to_ldm(state: dict, layers: list[tuple[str, str]] | None = None) -> dict:
    out = {}
    layers = layers or _unet_layer_map()
    for name, tensor in state.items():
        new = name
        for ldm, hf in UNET_DIRECT:
            if new.startswith(hf):
                new = ldm + new[len(hf):]
        if "resnets" in new:
            for ldm, hf in UNET_RESNET:
                new = new.replace(hf, ldm)
        for ldm, hf in layers:
            new = new.replace(hf, ldm)
        out["model.diffusion_model." + new] = tensor
    return out


def _vae_map() -> list[tuple[str, str]]:
    pairs = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"), ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(4):
        for j in range(2):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < 3:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{3 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        for j in range(3):
            pairs.append((f"decoder.up.{3 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
    for i in range(2):
        pairs.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    return pairs


VAE_ATTENTION = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]


def vae_to_ldm(state: dict) -> dict:
    out = {}
    pairs = _vae_map()
    for name, tensor in state.items():
        new = name
        for ldm, hf in pairs:
            new = new.replace(hf, ldm)
        if "attentions" in name:
            for ldm, hf in VAE_ATTENTION:
                new = new.replace(hf, ldm)
            if new.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")) and tensor.dim() == 2:
                tensor = tensor.reshape(*tensor.shape, 1, 1)  # LDM used 1x1 convolutions
        out["first_stage_model." + new] = tensor
    return out


def _unet_and_vae(configs: Path, layers: list[tuple[str, str]] | None = None) -> dict:
    """A random UNet and VAE from shipped configs, fp16, in the original keys (seeded; the fp32 UNet is
    freed before the VAE is made: SDXL's alone is 10 GB)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    with torch.no_grad():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet"))
        half = {k: v.half() for k, v in unet.state_dict().items()}
        del unet
        state = unet_to_ldm(half, layers)
        del half
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae"))
        state.update(vae_to_ldm({k: v.half() for k, v in vae.state_dict().items()}))
    return state


def _clip_to_ldm(text, prefix: str) -> dict:
    """A transformers CLIP text model under `prefix`, fp16; the original layout names its weights
    text_model.* (newer transformers drop that level)."""
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v.half()
            for k, v in text.state_dict().items()}


def _save(state: dict, path: Path, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".partial")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    tmp.rename(path)
    return path


def write_sd15_checkpoint(path: Path, configs: Path) -> Path:
    """~1.07 B parameters of SD 1.5 (UNet, VAE, CLIP text encoder), random, fp16, LDM keys."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    state = _unet_and_vae(configs)
    with torch.no_grad():
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder"))
        state.update(_clip_to_ldm(text, "cond_stage_model.transformer."))
    return _save(state, path)


def open_clip_to_ldm(state: dict, layers: int, prefix: str = "cond_stage_model.model.", extra_block: bool = True,
                     projection=None) -> dict:
    """A transformers CLIP text model in OpenCLIP's layout: q, k and v merged into one in_proj. SD 2's
    (23 layers) gets the 24th block, text projection and logit scale the original files carry (diffusers
    drops them: SD 2 conditions on the penultimate layer); SDXL's second encoder has all its blocks and
    its own projection (stored transposed)."""
    import torch

    out = {}
    text = {k.removeprefix("text_model."): v for k, v in state.items()}
    out[prefix + "token_embedding.weight"] = text["embeddings.token_embedding.weight"]
    out[prefix + "positional_embedding"] = text["embeddings.position_embedding.weight"]
    out[prefix + "ln_final.weight"] = text["final_layer_norm.weight"]
    out[prefix + "ln_final.bias"] = text["final_layer_norm.bias"]
    width = out[prefix + "ln_final.weight"].shape[0]
    for i in range(layers + extra_block):
        source = f"encoder.layers.{min(i, layers - 1)}."  # the extra last block: a copy of the one before
        block = f"{prefix}transformer.resblocks.{i}."
        for ldm, hf in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("attn.out_proj", "self_attn.out_proj"),
                        ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            for kind in ("weight", "bias"):
                out[f"{block}{ldm}.{kind}"] = text[f"{source}{hf}.{kind}"].clone()
        for kind in ("weight", "bias"):
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(
                [text[f"{source}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
    dtype = out[prefix + "ln_final.weight"].dtype
    out[prefix + "text_projection"] = projection.T.contiguous() if projection is not None else torch.eye(width, dtype=dtype)
    out[prefix + "logit_scale"] = torch.tensor(4.6052, dtype=dtype)
    return out


def write_sd2_checkpoint(path: Path, configs: Path, metadata: dict | None = None) -> Path:
    """~1.3 B parameters of SD 2.x (UNet, VAE, OpenCLIP ViT-H text encoder), random, fp16, original keys."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    state = _unet_and_vae(configs)
    with torch.no_grad():
        config = CLIPTextConfig.from_pretrained(configs / "text_encoder")
        text = CLIPTextModel(config)
        state.update(open_clip_to_ldm({k: v.half() for k, v in text.state_dict().items()}, config.num_hidden_layers))
    return _save(state, path, metadata)


def write_sdxl_checkpoint(path: Path, configs: Path) -> Path:
    """~3.5 B parameters of SDXL base (UNet, VAE, CLIP-L and OpenCLIP bigG), random, fp16, original keys."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    state = _unet_and_vae(configs, _unet_layer_map(3, down_attention=(1, 2), up_attention=(0, 1)))
    with torch.no_grad():
        clip = CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder"))
        state.update(_clip_to_ldm(clip, "conditioner.embedders.0.transformer."))
        config = CLIPTextConfig.from_pretrained(configs / "text_encoder_2")
        big = {k: v.half() for k, v in CLIPTextModelWithProjection(config).state_dict().items()}
        state.update(open_clip_to_ldm(big, config.num_hidden_layers, "conditioner.embedders.1.model.",
                                      extra_block=False, projection=big.pop("text_projection.weight")))
    return _save(state, path)
