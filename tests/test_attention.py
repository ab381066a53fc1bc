import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from desktop.engine.attention import SlicedSDPAProcessor


def _pair(module_kwargs):
    torch.manual_seed(0)
    attn = Attention(**module_kwargs).eval()
    return attn


def _compare(attn, *args, **kwargs):
    attn.set_processor(AttnProcessor2_0())
    with torch.no_grad():
        expected = attn(*args, **kwargs)
    sliced = SlicedSDPAProcessor("on", budget_bytes=4096, device="cpu")
    attn.set_processor(sliced)
    with torch.no_grad():
        got = attn(*args, **kwargs)
    assert sliced.sliced_calls > 0
    return (expected - got).abs().max().item()


def test_self_attention_sliced_equals_unsliced():
    attn = _pair(dict(query_dim=64, heads=4, dim_head=16))
    x = torch.randn(2, 256, 64)
    assert _compare(attn, x) < 1e-4


def test_cross_attention_with_mask_sliced_equals_unsliced():
    attn = _pair(dict(query_dim=64, cross_attention_dim=32, heads=4, dim_head=16))
    x, ctx = torch.randn(2, 300, 64), torch.randn(2, 77, 32)
    mask = torch.ones(2, 77)
    mask[:, 60:] = 0
    assert _compare(attn, x, encoder_hidden_states=ctx, attention_mask=mask) < 1e-4


def test_vae_style_attention_sliced_equals_unsliced():
    # The VAE mid-block: one head, group norm, 4-D input, residual connection.
    attn = _pair(dict(query_dim=32, heads=1, dim_head=32, norm_num_groups=8, residual_connection=True,
                      upcast_softmax=True, _from_deprecated_attn_block=True, bias=True))
    x = torch.randn(1, 32, 16, 20)
    assert _compare(attn, x) < 1e-4


@pytest.mark.parametrize(
    "policy, device, budget, expected",
    [
        ("off", "mps", 1, 4096),  # off never slices
        ("auto", "cpu", 2**20, 4096),  # fused SDPA kernels on CPU/CUDA never hold the matrix
        ("auto", "cuda", 2**20, 4096),
        ("auto", "mps", 2**20, 64),  # MPS: rows bounded by the budget
        ("auto", "mps", 10**12, 4096),  # under budget: one call
        ("on", "cpu", 2**20, 64),
        ("on", "cpu", 10**12, 4096),  # nothing to bound
    ],
)
def test_chunk_rows_policy(policy, device, budget, expected):
    proc = SlicedSDPAProcessor()
    proc.configure(policy, budget, device)
    # 8 batch*heads x 4096 queries x 512 keys x 4 bytes = 64 MiB full matrix
    assert proc.chunk_rows(8, 4096, 512, 4) == expected


def test_chunk_bounds_matrix_memory():
    proc = SlicedSDPAProcessor("auto", budget_bytes=2**20, device="mps")
    rows = proc.chunk_rows(16, 9216, 9216, 2)
    assert 16 * rows * 9216 * 2 <= 2**20


def test_unknown_policy_is_rejected():
    with pytest.raises(ValueError):
        SlicedSDPAProcessor().configure("sometimes", 1, "cpu")


def test_upcast_attention_in_fp16_matches_fp32_and_computes_in_fp32():
    """SD 2.1-768 sets upcast_attention: its scores pass fp16's 65504 on GPUs (CPU kernels accumulate
    in fp32 anyway, so here the check is that the processor hands SDPA fp32 and the result matches)."""

    class Spy(SlicedSDPAProcessor):
        dtypes: list = []

        def _attend(self, query, key, value, mask, scale):
            self.dtypes.append(query.dtype)
            return super()._attend(query, key, value, mask, scale)

    torch.manual_seed(0)
    attn = Attention(query_dim=64, heads=2, dim_head=32, upcast_attention=True).eval()
    with torch.no_grad():
        attn.to_q.weight.mul_(20)  # large scores, as in the real model's deep layers
        attn.to_k.weight.mul_(20)
    x = torch.randn(1, 64, 64)
    attn.set_processor(Spy("off", device="cpu"))
    with torch.no_grad():
        reference = attn(x)
        half = attn.to(torch.float16)
        upcast = half(x.half())
    assert Spy.dtypes == [torch.float32, torch.float32] and upcast.dtype == torch.float16
    assert torch.isfinite(upcast).all()
    assert (upcast.float() - reference).abs().max() < 0.02 * reference.abs().max()


def test_the_sd2_768_config_asks_for_upcast_attention():
    import json

    from desktop import paths

    config = json.loads((paths.shipped_configs_dir() / "sd2-768-v" / "unet" / "config.json").read_text())
    assert config["upcast_attention"] is True
