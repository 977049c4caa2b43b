"""Tests of the IVGF fusion modules (FEM eq. 1-13, TEM eq. 14-17, AGF eq. 18-20) on small CPU tensors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from ivgf_hf.modeling.fusion_ivgf import (
    FEM_MODES,
    TEM_INITIAL_PROMPT,
    IVGFAttentionGuidedFusion,
    IVGFFeatureEnhancement,
    IVGFPromptLogitBias,
    IVGFSumFusion,
    IVGFTokenEnhancement,
    init_fusion_weights,
)


def default_init(module: nn.Module, std: float = 0.02) -> nn.Module:
    """The model's ``_init_weights`` rule applied to every sub-module: fusion leaf modules first, then the default
    (Linear / Conv weights truncated normal, biases 0, LayerNorm 1 / 0)."""
    with torch.no_grad():
        for sub in module.modules():
            if init_fusion_weights(sub, std):
                continue
            if isinstance(sub, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(sub.weight, std=std)
                if sub.bias is not None:
                    nn.init.zeros_(sub.bias)
            elif isinstance(sub, nn.LayerNorm):
                nn.init.ones_(sub.weight)
                nn.init.zeros_(sub.bias)
    return module


def build(cls, *args, std: float = 0.02, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return default_init(cls(*args, **kwargs), std)


def pair(*shape, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator), torch.randn(*shape, generator=generator)


def assert_all_parameters_get_gradients(module: nn.Module, outputs):
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    generator = torch.Generator().manual_seed(5)
    loss = sum((out * torch.randn(out.shape, generator=generator)).sum() for out in outputs)
    loss.backward()
    for name, param in module.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# --------------------------------------------------------------------------------------------------------------
# Initialisation


@pytest.mark.parametrize(
    "module",
    [
        lambda: IVGFFeatureEnhancement(8, 2, 2, "parallel"),
        lambda: IVGFFeatureEnhancement(8, 2, 2, "serial"),
        lambda: IVGFTokenEnhancement(8, 12, 3, 4, 1e-6),
        lambda: IVGFAttentionGuidedFusion(8, 2, kv_stride=2),
    ],
)
def test_default_rule_and_init_fusion_weights_cover_every_parameter(module):
    module = module()
    with torch.no_grad():
        for param in module.parameters():
            param.fill_(float("nan"))
    default_init(module)
    for name, param in module.named_parameters():
        assert torch.isfinite(param).all(), f"{name} is not initialised by the default rule or init_fusion_weights"


def test_init_fusion_weights_handles_only_its_leaf_modules():
    bias = IVGFPromptLogitBias(2, 0.75)
    assert init_fusion_weights(bias, 0.02) is True
    torch.testing.assert_close(bias.bias, torch.full((2,), math.log(3.0)))
    assert init_fusion_weights(nn.Linear(2, 2), 0.02) is False
    assert init_fusion_weights(IVGFTokenEnhancement(4, 4, 2, 2, 1e-6), 0.02) is False


# --------------------------------------------------------------------------------------------------------------
# FEM (eq. 1-13)


def spatial_weight_by_hand(branch, x):
    """Eq. 1-2 written out: sigmoid(w2 relu(w1 x + b1) + b2) per pixel."""

    def conv1x1(conv, t):
        return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], t) + conv.bias[:, None, None]

    return torch.sigmoid(conv1x1(branch.conv2, torch.relu(conv1x1(branch.conv1, x))))


def channel_weight_by_hand(branch, x):
    """Eq. 7-9 written out: sigmoid(fc2 relu(fc1 [avg; max])) per channel."""
    pooled = torch.cat([x.flatten(2).mean(-1), x.flatten(2).max(-1).values], dim=1)
    hidden = torch.relu(pooled @ branch.fc1.weight.T + branch.fc1.bias)
    return torch.sigmoid(hidden @ branch.fc2.weight.T + branch.fc2.bias)[:, :, None, None]


def fem_by_hand(fem, vis, ir):
    """The documented formula of every mode (visible output first)."""
    if fem.mode == "channel":
        return (
            vis + vis * channel_weight_by_hand(fem.channel_visible, vis),
            ir + ir * channel_weight_by_hand(fem.channel_infrared, ir),
        )
    vis_s = vis + ir * spatial_weight_by_hand(fem.spatial_infrared, ir)  # eq. 5 with x = ir, y = vis
    ir_s = ir + vis * spatial_weight_by_hand(fem.spatial_visible, vis)  # eq. 6
    if fem.mode == "spatial":
        return vis_s, ir_s
    if fem.mode == "serial":
        return (
            vis_s + vis_s * channel_weight_by_hand(fem.channel_visible, vis_s),
            ir_s + ir_s * channel_weight_by_hand(fem.channel_infrared, ir_s),
        )
    return (
        vis_s + vis * channel_weight_by_hand(fem.channel_visible, vis),  # eq. 12-13
        ir_s + ir * channel_weight_by_hand(fem.channel_infrared, ir),
    )


@pytest.mark.parametrize("mode", FEM_MODES)
def test_fem_matches_the_formula_of_each_mode(mode):
    fem = build(IVGFFeatureEnhancement, 8, 2, 2, mode, std=0.3)
    vis, ir = pair(2, 8, 5, 6)
    out = fem(vis, ir)
    expected = fem_by_hand(fem, vis, ir)
    for got, want in zip(out, expected):
        assert got.shape == (2, 8, 5, 6)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "mode, branches",
    [
        ("parallel", {"spatial_visible", "spatial_infrared", "channel_visible", "channel_infrared"}),
        ("serial", {"spatial_visible", "spatial_infrared", "channel_visible", "channel_infrared"}),
        ("channel", {"channel_visible", "channel_infrared"}),
        ("spatial", {"spatial_visible", "spatial_infrared"}),
    ],
)
def test_fem_allocates_only_the_branches_of_its_mode(mode, branches):
    fem = IVGFFeatureEnhancement(8, 2, 2, mode)
    assert {name.split(".")[0] for name, _ in fem.named_parameters()} == branches


def force_sigmoid_branch(last_layer, value):
    """Make a branch's output sigmoid exactly 0 or 1 through its last layer's weights."""
    with torch.no_grad():
        last_layer.weight.zero_()
        last_layer.bias.fill_(40.0 if value == 1 else -40.0)


@pytest.mark.parametrize("spatial", [0, 1])
@pytest.mark.parametrize("channel", [0, 1])
def test_fem_parallel_residual_structure_with_forced_weights(spatial, channel):
    fem = build(IVGFFeatureEnhancement, 8, 2, 2, "parallel")
    for branch in (fem.spatial_visible, fem.spatial_infrared):
        force_sigmoid_branch(branch.conv2, spatial)
    for branch in (fem.channel_visible, fem.channel_infrared):
        force_sigmoid_branch(branch.fc2, channel)
    vis, ir = pair(2, 8, 4, 4)
    vis_out, ir_out = fem(vis, ir)
    # F' = F + F_other * W_s + F * W_c (eq. 5, 12), with the weights forced to 0 or 1.
    torch.testing.assert_close(vis_out, vis + spatial * ir + channel * vis)
    torch.testing.assert_close(ir_out, ir + spatial * vis + channel * ir)


def test_fem_serial_applies_channel_attention_to_the_integrated_map():
    fem = build(IVGFFeatureEnhancement, 8, 2, 2, "serial")
    for branch in (fem.spatial_visible, fem.spatial_infrared):
        force_sigmoid_branch(branch.conv2, 1)
    for branch in (fem.channel_visible, fem.channel_infrared):
        force_sigmoid_branch(branch.fc2, 1)
    vis, ir = pair(1, 8, 3, 3)
    vis_out, ir_out = fem(vis, ir)
    torch.testing.assert_close(vis_out, 2 * (vis + ir))
    torch.testing.assert_close(ir_out, 2 * (ir + vis))


def test_fem_channel_mode_ignores_the_other_modality():
    fem = build(IVGFFeatureEnhancement, 8, 2, 2, "channel", std=0.3)
    vis, ir = pair(2, 8, 4, 5)
    other_vis, other_ir = pair(2, 8, 4, 5, seed=9)
    vis_out, ir_out = fem(vis, ir)
    torch.testing.assert_close(fem(vis, other_ir)[0], vis_out, atol=0, rtol=0)
    torch.testing.assert_close(fem(other_vis, ir)[1], ir_out, atol=0, rtol=0)


@pytest.mark.parametrize("mode", ["parallel", "serial", "spatial"])
def test_fem_cross_modes_read_the_other_modality(mode):
    fem = build(IVGFFeatureEnhancement, 8, 2, 2, mode, std=0.3)
    vis, ir = pair(2, 8, 4, 5)
    other_vis, other_ir = pair(2, 8, 4, 5, seed=9)
    assert not torch.allclose(fem(vis, other_ir)[0], fem(vis, ir)[0])
    assert not torch.allclose(fem(other_vis, ir)[1], fem(vis, ir)[1])


def test_fem_modes_differ():
    vis, ir = pair(2, 8, 4, 5)
    outputs = {mode: build(IVGFFeatureEnhancement, 8, 2, 2, mode, std=0.3)(vis, ir)[0] for mode in FEM_MODES}
    for first in FEM_MODES:
        for second in FEM_MODES:
            if first < second:
                assert not torch.allclose(outputs[first], outputs[second]), (first, second)


@pytest.mark.parametrize("mode", FEM_MODES)
def test_fem_gradients_reach_every_parameter(mode):
    fem = build(IVGFFeatureEnhancement, 8, 2, 2, mode, std=0.3)
    assert_all_parameters_get_gradients(fem, fem(*pair(2, 8, 4, 5)))


def test_fem_channels_last_and_bf16_autocast():
    fem = build(IVGFFeatureEnhancement, 16, 4, 4, "parallel", std=0.3)
    vis, ir = pair(2, 16, 6, 7)
    reference = fem(vis, ir)
    channels_last = fem(vis.to(memory_format=torch.channels_last), ir.to(memory_format=torch.channels_last))
    for got, want in zip(channels_last, reference):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = fem(vis, ir)
    for got, want in zip(low, reference):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)


def test_fem_rejects_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="mode"):
        IVGFFeatureEnhancement(8, 2, 2, "both")
    with pytest.raises(ValueError, match="spatial_reduction"):
        IVGFFeatureEnhancement(8, 0, 2, "parallel")
    fem = IVGFFeatureEnhancement(8, 2, 2, "parallel")
    with pytest.raises(ValueError, match="same shape"):
        fem(torch.zeros(1, 8, 4, 4), torch.zeros(1, 8, 4, 5))
    with pytest.raises(ValueError, match="8 channels"):
        fem(torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="visible must be"):
        fem(torch.zeros(8, 4, 4), torch.zeros(8, 4, 4))


# --------------------------------------------------------------------------------------------------------------
# TEM (eq. 14-17)


def tem_prompts_by_hand(tem, vis, ir):
    """Eq. 14-15 written out, with an explicit loop over the adapters of the mixture."""
    phi = F.layer_norm(torch.cat([vis, ir], -1), (2 * tem.dim,), tem.norm.weight, tem.norm.bias, tem.norm.eps)
    phi = phi @ tem.reduction.weight.T + tem.reduction.bias
    gates = torch.softmax(phi @ tem.router.weight.T + tem.router.bias, dim=-1)
    mixture = tem.adapters_up.bias.expand_as(phi)
    width = tem.bottleneck
    for k in range(tem.num_adapters):
        down = slice(k * width, (k + 1) * width)
        hidden = F.gelu(phi @ tem.adapters_down.weight[down].T + tem.adapters_down.bias[down])
        mixture = mixture + gates[..., k : k + 1] * (hidden @ tem.adapters_up.weight[:, down].T)
    features = phi + mixture
    half = features.shape[-1] // 2
    pooled = torch.stack([features[..., :half].mean(-1), features[..., half:].mean(-1)], dim=-1)
    return torch.sigmoid(pooled + tem.prompt_bias.bias)


def test_tem_matches_the_equations():
    tem = build(IVGFTokenEnhancement, 8, 12, 3, 4, 1e-6, std=0.3)
    with torch.no_grad():
        tem.prompt_bias.bias.copy_(torch.tensor([0.3, -0.2]))
    vis, ir = pair(2, 10, 8)
    prompts = tem.prompts(vis, ir)
    torch.testing.assert_close(prompts, tem_prompts_by_hand(tem, vis, ir), atol=1e-5, rtol=1e-5)
    vis_out, ir_out = tem(vis, ir)
    torch.testing.assert_close(vis_out, vis * prompts[..., :1])  # eq. 16-17
    torch.testing.assert_close(ir_out, ir * prompts[..., 1:])
    assert prompts.std() > 0.01, "the prompts should vary from token to token"


def test_tem_is_near_identity_at_initialisation():
    tem = build(IVGFTokenEnhancement, 32, 32, 4, 8, 1e-6)
    vis, ir = pair(2, 49, 32)
    prompts = tem.prompts(vis, ir)
    assert ((prompts > 0) & (prompts < 1)).all()
    assert (prompts - TEM_INITIAL_PROMPT).abs().max() < 0.01
    for out, tokens in zip(tem(vis, ir), (vis, ir)):
        relative_change = ((out - tokens).abs() / tokens.abs().clamp_min(1e-12)).max()
        assert 0 < relative_change < 0.05


def test_tem_does_not_mix_tokens():
    tem = build(IVGFTokenEnhancement, 8, 12, 3, 4, 1e-6, std=0.3)
    vis, ir = pair(2, 10, 8)
    changed_vis, changed_ir = vis.clone(), ir.clone()
    changed_vis[:, 3] += 1.0
    changed_ir[:, 3] -= 2.0
    before, after = tem(vis, ir), tem(changed_vis, changed_ir)
    others = [i for i in range(10) if i != 3]
    for old, new, original, changed in zip(before, after, (vis, ir), (changed_vis, changed_ir)):
        torch.testing.assert_close(new[:, others], old[:, others], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(new[:, 3] / changed[:, 3], old[:, 3] / original[:, 3])


def test_tem_gradients_bf16_and_bad_inputs():
    tem = build(IVGFTokenEnhancement, 8, 12, 3, 4, 1e-6, std=0.3)
    vis, ir = pair(2, 10, 8)
    assert_all_parameters_get_gradients(tem, tem(vis, ir))
    with torch.no_grad():
        reference = tem(vis, ir)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tem(vis, ir)
    for got, want in zip(low, reference):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="same shape"):
        tem(vis, ir[:, :5])
    with pytest.raises(ValueError, match="8 channels"):
        tem(vis[..., :4], ir[..., :4])
    with pytest.raises(ValueError, match="hidden_size"):
        IVGFTokenEnhancement(8, 1, 3, 4, 1e-6)


# --------------------------------------------------------------------------------------------------------------
# AGF (eq. 18-20)


def ceil_avg_pool_by_hand(x, stride):
    """Average over stride x stride windows; the last, partial windows average their valid pixels."""
    if stride == 1:
        return x
    batch, channels, height, width = x.shape
    pad_h, pad_w = -height % stride, -width % stride
    sums = F.pad(x, (0, pad_w, 0, pad_h))
    counts = F.pad(torch.ones(1, 1, height, width), (0, pad_w, 0, pad_h))

    def window_sum(t):
        h, w = t.shape[-2] // stride, t.shape[-1] // stride
        return t.reshape(t.shape[0], t.shape[1], h, stride, w, stride).sum(dim=(3, 5))

    return window_sum(sums) / window_sum(counts)


def agf_by_hand(agf, vis, ir):
    """Eq. 18-20 with the attention matrix written out: softmax(Q K^T / sqrt(d)) V, then M(Re(Cat(...)))."""
    batch, channels, height, width = vis.shape
    heads, head_dim = agf.num_heads, channels // agf.num_heads

    def tokens(x):
        return x.flatten(2).transpose(1, 2)

    def split(t):
        return t.reshape(batch, -1, heads, head_dim).transpose(1, 2)

    def project(layer, x):
        return x @ layer.weight.T + layer.bias

    def attention(q, k, v):
        weights = torch.softmax(split(q) @ split(k).transpose(-2, -1) / math.sqrt(head_dim), dim=-1)
        return (weights @ split(v)).transpose(1, 2).reshape(batch, -1, channels)

    vis_q = project(agf.visible_query, tokens(vis))
    ir_q = project(agf.infrared_query, tokens(ir))
    vis_k, vis_v = project(agf.visible_key_value, tokens(ceil_avg_pool_by_hand(vis, agf.kv_stride))).chunk(2, -1)
    ir_k, ir_v = project(agf.infrared_key_value, tokens(ceil_avg_pool_by_hand(ir, agf.kv_stride))).chunk(2, -1)
    fused = torch.cat([attention(vis_q, ir_k, ir_v), attention(ir_q, vis_k, vis_v)], dim=-1)
    fused = fused.transpose(1, 2).reshape(batch, 2 * channels, height, width)
    merge = agf.merge
    x = F.conv2d(fused, merge.reduce.weight, merge.reduce.bias)
    x = torch.relu(F.conv2d(x, merge.conv.weight, merge.conv.bias, padding=1))
    return F.conv2d(x, merge.proj.weight, merge.proj.bias)


@pytest.mark.parametrize("kv_stride", [1, 2, 3])
def test_agf_equals_naive_attention(kv_stride):
    agf = build(IVGFAttentionGuidedFusion, 16, 4, kv_stride=kv_stride, std=0.3)
    vis, ir = pair(2, 16, 5, 7)
    out = agf(vis, ir)
    assert out.shape == (2, 16, 5, 7)
    assert out.abs().mean() > 0.1, "the reference comparison needs outputs well above the tolerance"
    torch.testing.assert_close(out, agf_by_hand(agf, vis, ir), atol=1e-5, rtol=1e-5)


def test_agf_kv_stride_pools_keys_and_values():
    exact = build(IVGFAttentionGuidedFusion, 16, 4, kv_stride=1, std=0.15)
    pooled = IVGFAttentionGuidedFusion(16, 4, kv_stride=2)
    pooled.load_state_dict(exact.state_dict())
    vis, ir = pair(2, 16, 6, 8)
    assert not torch.allclose(pooled(vis, ir), exact(vis, ir), atol=1e-3)
    # Maps constant on 2x2 blocks: the pooled keys are the distinct keys, each duplicated 4 times in the exact
    # attention, which leaves the softmax-weighted average unchanged.
    small_vis, small_ir = pair(2, 16, 3, 4)
    block_vis = small_vis.repeat_interleave(2, -1).repeat_interleave(2, -2)
    block_ir = small_ir.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(pooled(block_vis, block_ir), exact(block_vis, block_ir), atol=1e-5, rtol=1e-5)


def test_agf_is_cross_attention():
    agf = build(IVGFAttentionGuidedFusion, 16, 4, std=0.15)
    captured = []
    agf.merge.register_forward_pre_hook(lambda module, args: captured.append(args[0].clone()))
    vis, ir = pair(2, 16, 4, 5)
    agf(vis, ir)
    with torch.no_grad():
        agf.visible_key_value.weight.mul_(3.0)
    agf(vis, ir)
    before, after = captured
    # Visible queries attend to infrared keys/values only: the visible-query half ignores visible keys/values.
    torch.testing.assert_close(after[:, :16], before[:, :16], atol=0, rtol=0)
    assert not torch.allclose(after[:, 16:], before[:, 16:])
    # ... and it depends on the infrared map.
    captured.clear()
    agf(vis, ir)
    agf(vis, pair(2, 16, 4, 5, seed=7)[1])
    assert not torch.allclose(captured[0][:, :16], captured[1][:, :16])


def test_agf_channels_last_gradients_and_bf16():
    agf = build(IVGFAttentionGuidedFusion, 16, 2, std=0.15)
    vis, ir = pair(2, 16, 6, 5)
    reference = agf(vis, ir)
    channels_last = agf(vis.to(memory_format=torch.channels_last), ir.to(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, reference, atol=1e-6, rtol=1e-6)
    assert_all_parameters_get_gradients(agf, agf(vis, ir))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = agf(vis, ir)
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), reference, atol=0.05, rtol=0.05)


def test_agf_rejects_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        IVGFAttentionGuidedFusion(10, 4)
    with pytest.raises(ValueError, match="kv_stride"):
        IVGFAttentionGuidedFusion(8, 2, kv_stride=0)
    agf = IVGFAttentionGuidedFusion(8, 2)
    with pytest.raises(ValueError, match="same shape"):
        agf(torch.zeros(1, 8, 4, 4), torch.zeros(2, 8, 4, 4))
    with pytest.raises(ValueError, match="8 channels"):
        agf(torch.zeros(1, 6, 4, 4), torch.zeros(1, 6, 4, 4))


class _LargestTensorRecorder(TorchDispatchMode):
    """Records the element count of the largest tensor any ATen op produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for tensor in pytree.tree_leaves(result):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return result


def _largest_tensor_in_a_training_step(agf: IVGFAttentionGuidedFusion, batch: int, side: int) -> int:
    vis = torch.randn(batch, agf.channels, side, side, requires_grad=True)
    ir = torch.randn(batch, agf.channels, side, side, requires_grad=True)
    with _LargestTensorRecorder() as recorder:
        agf(vis, ir).square().mean().backward()
    return recorder.largest


@pytest.mark.parametrize("neighbourhood", [0, 7])
def test_agf_never_materialises_the_attention_matrix_and_grows_linearly_with_tokens(neighbourhood):
    # Every tensor an op returns in forward and backward is seen, so the check is exact and does not depend on
    # the allocator or the machine's load (a peak-RSS version of this test was flaky under load). A naive
    # attention (or SDPA's math fallback) returns a (batch, heads, N, N) score matrix: 16x larger at 4x tokens.
    channels, heads, batch = 64, 2, 2
    agf = IVGFAttentionGuidedFusion(channels, heads, neighbourhood=neighbourhood)
    small, large = (_largest_tensor_in_a_training_step(agf, batch, side) for side in (32, 64))
    tokens = 64 * 64
    assert large < batch * heads * tokens * tokens // 16, f"a tensor of {large} elements at {tokens} tokens"
    assert large <= 4 * small, f"largest tensor grew {large / small:.1f}x for 4x tokens"


# --------------------------------------------------------------------------------------------------------------
# Sum fusion


def test_sum_fusion():
    vis, ir = pair(2, 4, 3, 3)
    torch.testing.assert_close(IVGFSumFusion()(vis, ir), vis + ir)
    with pytest.raises(ValueError, match="same shape"):
        IVGFSumFusion()(vis, ir[:1])


# --------------------------------------------------------------------------------------------------------------
# Trainable starts (config fields fem_scaled_residual, tem_prompt_range / tem_initial_prompt, agf_residual, agf_norm)


@pytest.mark.parametrize("mode", FEM_MODES)
def test_fem_scaled_residual_starts_as_identity_and_scales_each_added_term(mode):
    fem = build(IVGFFeatureEnhancement, 8, 2, 2, mode, std=0.3, scaled_residual=True)
    vis, ir = pair(2, 8, 4, 5)
    vis_out, ir_out = fem(vis, ir)
    torch.testing.assert_close(vis_out, vis, atol=0, rtol=0)
    torch.testing.assert_close(ir_out, ir, atol=0, rtol=0)
    # With every scale at 1 it is the literal formula (same gate weights).
    literal = IVGFFeatureEnhancement(8, 2, 2, mode)
    literal.load_state_dict({k: v for k, v in fem.state_dict().items() if not k.startswith("scales.")})
    with torch.no_grad():
        for scale in fem.scales.values():
            scale.gamma.fill_(1.0)
    for got, expected in zip(fem(vis, ir), fem_by_hand(literal, vis, ir), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert set(fem.scales) == {name.split(".")[0] for name, _ in literal.named_parameters()}


def test_fem_scaled_residual_trains_its_scales_first():
    fem = build(IVGFFeatureEnhancement, 8, 2, 2, "parallel", std=0.3, scaled_residual=True)
    vis, ir = pair(2, 8, 4, 5)
    sum(out.square().sum() for out in fem(vis, ir)).backward()
    for name, param in fem.named_parameters():
        nonzero = param.grad is not None and param.grad.abs().sum() > 0
        assert nonzero == name.startswith("scales."), name


def test_tem_prompt_range_scales_the_sigmoid_and_starts_at_the_initial_prompt():
    tem = build(IVGFTokenEnhancement, 32, 32, 4, 8, 1e-6, prompt_range=2.0, initial_prompt=1.0)
    torch.testing.assert_close(tem.prompt_bias.bias, torch.zeros(2))  # logit(1 / 2) = 0: the sigmoid's steepest point
    vis, ir = pair(2, 49, 32)
    prompts = tem.prompts(vis, ir)
    assert (prompts - 1.0).abs().max() < 0.1  # the pooled features are small but not 0; the slope is 0.5 here
    with torch.no_grad():
        tem.prompt_bias.bias.copy_(torch.tensor([0.3, -0.2]))
    torch.testing.assert_close(tem.prompts(vis, ir), 2.0 * tem_prompts_by_hand(tem, vis, ir), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="initial_prompt must lie in"):
        IVGFTokenEnhancement(8, 8, 2, 2, 1e-6, prompt_range=1.0, initial_prompt=1.0)
    with pytest.raises(ValueError, match="prompt_range must be positive"):
        IVGFTokenEnhancement(8, 8, 2, 2, 1e-6, prompt_range=0.0)


def test_agf_residual_starts_as_the_sum_and_adds_the_scaled_merge():
    residual = build(IVGFAttentionGuidedFusion, 8, 2, residual=True, std=0.3)
    vis, ir = pair(2, 8, 4, 5)
    torch.testing.assert_close(residual(vis, ir), vis + ir, atol=0, rtol=0)
    literal = IVGFAttentionGuidedFusion(8, 2)
    literal.load_state_dict({k: v for k, v in residual.state_dict().items() if not k.startswith("merge_scale.")})
    with torch.no_grad():
        residual.merge_scale.gamma.copy_(torch.linspace(-1, 1, 8))
    expected = vis + ir + literal(vis, ir) * torch.linspace(-1, 1, 8)[:, None, None]
    torch.testing.assert_close(residual(vis, ir), expected, atol=1e-6, rtol=1e-5)


def test_agf_merge_norm_normalises_the_merge_output_before_gamma():
    normed = build(IVGFAttentionGuidedFusion, 8, 2, residual=True, merge_norm=True, std=0.3)
    vis, ir = pair(2, 8, 4, 5)
    torch.testing.assert_close(normed(vis, ir), vis + ir, atol=0, rtol=0)
    literal = IVGFAttentionGuidedFusion(8, 2)
    literal.load_state_dict({k: v for k, v in normed.state_dict().items() if not k.startswith("merge_scale.")})
    gamma = torch.linspace(-1, 1, 8)
    with torch.no_grad():
        normed.merge_scale.gamma.copy_(gamma)
        merged = literal(vis, ir)
        mean = merged.mean(dim=(1, 2, 3), keepdim=True)
        std = merged.var(dim=(1, 2, 3), keepdim=True, unbiased=False).add(1e-6).sqrt()
    expected = vis + ir + (merged - mean) / std * gamma[:, None, None]
    torch.testing.assert_close(normed(vis, ir), expected, atol=1e-5, rtol=1e-4)
    assert IVGFAttentionGuidedFusion(8, 2, merge_norm=True).merge_norm is None  # only with the residual form
    assert_all_parameters_get_gradients(normed, normed(vis, ir))


@pytest.mark.parametrize("size", [1, 3, 5])
def test_agf_neighbourhood_attention_equals_attention_masked_to_the_k_by_k_window(size):
    agf = build(IVGFAttentionGuidedFusion, 8, 2, residual=True, norm=True, fan_init=True, neighbourhood=size)
    height, width = 4, 5
    query, key, value = (
        torch.randn(2, 2, height * width, 4, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)
    )
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    near = ((rows[:, None] - rows[None]).abs() <= size // 2) & ((cols[:, None] - cols[None]).abs() <= size // 2)
    expected = F.scaled_dot_product_attention(query, key, value, attn_mask=near)  # brute force, N x N mask
    torch.testing.assert_close(agf.attend(query, key, value, height, width), expected, atol=1e-5, rtol=1e-5)
    unfolded = agf._attend_neighbourhood_unfolded(query, key, value, height, width)  # the export path
    torch.testing.assert_close(unfolded, expected, atol=1e-5, rtol=1e-5)
    if size == 1:  # one key per query: the attention returns the value at the same position
        torch.testing.assert_close(agf.attend(query, key, value, height, width), value)
    vis, ir = pair(2, 8, height, width)
    assert agf(vis, ir).shape == vis.shape
    if size > 1:  # a single key gets all the weight, so the queries get no gradient
        literal = build(IVGFAttentionGuidedFusion, 8, 2, neighbourhood=size, std=0.3)
        assert_all_parameters_get_gradients(literal, literal(vis, ir))


def test_agf_neighbourhood_rejects_even_sizes_and_key_pooling():
    with pytest.raises(ValueError, match="odd positive size"):
        IVGFAttentionGuidedFusion(8, 2, neighbourhood=4)
    with pytest.raises(ValueError, match="needs kv_stride=1"):
        IVGFAttentionGuidedFusion(8, 2, kv_stride=2, neighbourhood=3)


def test_agf_residual_gradients_reach_the_scale_at_initialisation():
    agf = build(IVGFAttentionGuidedFusion, 8, 2, residual=True, norm=True)
    agf(*pair(2, 8, 4, 5)).square().sum().backward()
    assert agf.merge_scale.gamma.grad.abs().sum() > 0


@pytest.mark.parametrize("kv_stride", [1, 2])
def test_agf_norm_makes_attention_independent_of_the_feature_scale(kv_stride):
    agf = build(IVGFAttentionGuidedFusion, 8, 2, kv_stride, norm=True, eps=1e-12, std=0.3)
    vis, ir = pair(2, 8, 4, 6)
    torch.testing.assert_close(agf(10.0 * vis, 10.0 * ir), agf(vis, ir), atol=1e-5, rtol=1e-4)
    plain = build(IVGFAttentionGuidedFusion, 8, 2, kv_stride, std=0.3)
    assert not torch.allclose(plain(10.0 * vis, 10.0 * ir), 10.0 * plain(vis, ir), atol=1e-3)
    assert {name for name, _ in agf.named_parameters()} - {name for name, _ in plain.named_parameters()} == {
        "visible_norm.weight",
        "visible_norm.bias",
        "infrared_norm.weight",
        "infrared_norm.bias",
    }
