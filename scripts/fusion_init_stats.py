"""Fusion modules at initialisation: how much of the inputs AGF / FEM pass, and where the gradients go.

Prints, per scale, for a fresh tiny IVGF on a SynthRGBT-like random pair (or a real pair from --data), for the
literal paper form and the trainable starts (docs/model.md, "Deviations from the paper"):

* attention peak: the largest attention weight / the uniform weight 1/N (1.0 = uniform attention);
* merge / inputs: ||M(...)|| / ||F_vis + F_ir||, the merge module's output before any residual scale;
* spatial share: the share of the fused map's energy that varies over space (inputs: the same for F_vis + F_ir);
* grad q / grad merge / grad gamma: gradient norms of the query projections, the merge's convolutions and the
  residual scale under a random loss (with gamma = 0 only gamma gets one at step 0).

Usage: python scripts/fusion_init_stats.py [--size 128] [--seed 0]
"""

import argparse

import torch
import torch.nn.functional as F

from ivgf_hf import get_config
from ivgf_hf.modeling import IVGFModel
from ivgf_hf.modeling.configuration_ivgf import LITERAL_FUSION_DEFAULTS


def spatial_share(x: torch.Tensor) -> float:
    """Share of the energy of (B, C, H, W) that varies over H, W."""
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    return float(centred.square().sum() / x.square().sum().clamp_min(1e-30))


def attention_peak(agf, visible, infrared) -> float:
    """Largest visible-query -> infrared-key attention weight over the uniform weight, mean over queries."""
    tokens_v, tokens_i = agf.to_tokens(visible), agf.to_tokens(infrared)
    if agf.norm:
        tokens_v, tokens_i = agf.visible_norm(tokens_v), agf.infrared_norm(tokens_i)
    (query,) = agf.split_heads(agf.visible_query(tokens_v), 1)
    key, _ = agf.split_heads(agf.infrared_key_value(tokens_i), 2)
    with torch.no_grad():
        weights = torch.softmax(query @ key.transpose(-1, -2) / agf.head_dim**0.5, dim=-1)
    return float(weights.amax(-1).mean() * weights.shape[-1])


def stats(fields: dict, size: int, seed: int) -> list:
    torch.manual_seed(seed)
    model = IVGFModel(get_config("tiny", **fields))
    generator = torch.Generator().manual_seed(seed + 1)
    base = F.avg_pool2d(torch.rand(1, 1, size // 8, size // 8, generator=generator), 1)
    scene = F.interpolate(base, size=(size, size), mode="nearest")
    visible = (scene.expand(-1, 3, -1, -1) + 0.1 * torch.randn(1, 3, size, size, generator=generator) - 0.5) / 0.25
    infrared = (1 - scene + 0.1 * torch.randn(1, 1, size, size, generator=generator) - 0.5) / 0.25
    captured = {}
    hooks = [
        fusion.register_forward_hook(lambda m, a, o, i=i: captured.__setitem__(i, (a, o)))
        for i, fusion in enumerate(model.fusions)
    ]
    hooks += [
        fusion.merge.register_forward_hook(lambda m, a, o, i=i: captured.__setitem__(("merge", i), o))
        for i, fusion in enumerate(model.fusions)
    ]
    out = model(visible, infrared).feature_maps
    for hook in hooks:
        hook.remove()
    sum(((o * torch.randn_like(o)).sum() for o in out)).backward()
    rows = []
    for index, fusion in enumerate(model.fusions):
        (vis, ir), fused = captured[index]
        summed = vis + ir
        merged = captured[("merge", index)]
        gamma_grad = fusion.merge_scale.gamma.grad.norm() if fusion.residual else float("nan")
        q_grad = sum(p.grad.norm() for p in (fusion.visible_query.weight, fusion.infrared_query.weight))
        m_grad = sum(conv.weight.grad.norm() for conv in (fusion.merge.reduce, fusion.merge.conv, fusion.merge.proj))
        rows.append(
            dict(
                scale=index + 1,
                peak=attention_peak(fusion, vis.detach(), ir.detach()),
                ratio=float(merged.detach().norm() / summed.detach().norm()),
                spatial_in=spatial_share(summed.detach()),
                spatial_out=spatial_share(fused.detach()),
                q_grad=float(q_grad),
                m_grad=float(m_grad),
                gamma_grad=float(gamma_grad),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    variants = {
        "literal paper form": dict(LITERAL_FUSION_DEFAULTS),
        "trainable starts without fan init": {"fusion_fan_init": False},
        "trainable starts (default)": {},
    }
    print(
        "| variant | scale | attention peak (x uniform) | merge / inputs | spatial share in -> out | grad q | "
        "grad merge | grad gamma |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, fields in variants.items():
        for row in stats(fields, args.size, args.seed):
            print(
                f"| {name} | F{row['scale']} | {row['peak']:.3f} | {row['ratio']:.2e} | "
                f"{row['spatial_in']:.3f} -> {row['spatial_out']:.3f} | {row['q_grad']:.1e} | {row['m_grad']:.1e} | "
                f"{row['gamma_grad']:.1e} |"
            )


if __name__ == "__main__":
    main()
