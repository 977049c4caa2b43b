"""What trained fusion modules do: AGF's attention locality and merge share, the residual scales, TEM's prompts.

For a trained IVGF segmentation folder and an MFNet-layout data root (e.g. an `ivgf ablate` output: runs/<cell>/
final_model and data/), on the first --images test pairs, prints:

* per AGF scale: the visible-query -> infrared-key attention mass within the 3 x 3 and 7 x 7 tokens around the
  query's own position, as a multiple of what uniform attention puts there (1.0 = position plays no role), the
  largest weight over the uniform weight, ||AGF output - (F_vis + F_ir)|| / ||F_vis + F_ir||, and the size of the
  merge output M(...) itself (the added part's RMS over mean |gamma|) relative to F_vis + F_ir's RMS;
* every residual scale (FEM terms, AGF merge): mean, mean |gamma| and the share of positive entries;
* TEM's prompts (mean visible / infrared over tokens) by the impairment of the image, when the data set has an
  impairments.json (SynthRGBT).

The attention is recomputed with its full N x N matrix, for diagnosis only (a 240 x 320 image has 4,800 tokens at
stride 4). Usage: python scripts/fusion_trained_stats.py MODEL_DIR DATA_ROOT [--images 8]
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ivgf_hf.inference import load_model_and_processor, prepare_inputs


def attention_locality(agf, visible, infrared) -> tuple:
    """(mass in 3x3 / uniform, mass in 7x7 / uniform, peak / uniform) of visible queries over infrared keys."""
    _, _, height, width = visible.shape
    tokens_v, tokens_i = agf.to_tokens(visible), agf.to_tokens(infrared)
    if agf.norm:
        tokens_v, tokens_i = agf.visible_norm(tokens_v), agf.infrared_norm(tokens_i)
    (query,) = agf.split_heads(agf.visible_query(tokens_v), 1)
    key, _ = agf.split_heads(agf.infrared_key_value(tokens_i), 2)
    logits = query @ key.transpose(-1, -2) / agf.head_dim**0.5
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    distance = torch.maximum((rows[:, None] - rows[None]).abs(), (cols[:, None] - cols[None]).abs())
    if agf.neighbourhood:
        logits = logits.masked_fill(distance > agf.neighbourhood // 2, float("-inf"))
    weights = logits.softmax(-1)
    tokens = height * width
    result = []
    for radius in (1, 3):
        near = (distance <= radius).float()
        result.append(float((weights * near).sum(-1).mean() / (near.sum(-1).mean() / tokens)))
    return (*result, float(weights.amax(-1).mean() * tokens))


def impairment_group(record: dict) -> str:
    impairments = record["impairments"]
    if "dropout" in impairments:
        return f"{impairments['dropout']['modality']} dropout"
    return "clean" if not impairments else "+".join(sorted(impairments))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, processor = load_model_and_processor(str(args.model))
    model.eval()
    names = [line.strip() for line in (args.data / "test.txt").read_text().splitlines() if line.strip()]
    impairments_file = args.data / "impairments.json"
    records = json.loads(impairments_file.read_text())["images"] if impairments_file.exists() else {}

    agf_stats, prompt_stats, current = defaultdict(list), defaultdict(list), {}

    def agf_hook(index):
        def hook(module, inputs, output):
            visible, infrared = inputs
            added, summed = output - visible - infrared, visible + infrared
            share = float(added.norm() / summed.norm())
            gamma = module.merge_scale.gamma.abs().mean() if module.residual else torch.tensor(1.0)
            merge_rms = float(added.pow(2).mean().sqrt() / gamma)
            agf_stats[index].append(
                (*attention_locality(module, visible, infrared), share, merge_rms / float(summed.pow(2).mean().sqrt()))
            )

        return hook

    def tem_hook(index):
        def hook(module, inputs, output):
            prompts = module.prompts(*inputs)
            prompt_stats[(index, current["group"])].append(prompts.mean(dim=(0, 1)).tolist())

        return hook

    for index, fusion in enumerate(getattr(model.ivgf, "fusions", [])):
        fusion.register_forward_hook(agf_hook(index))
    for index, tem in enumerate(getattr(model.ivgf, "token_enhancements", [])):
        tem.register_forward_hook(tem_hook(index))
    for name in names[: args.images]:
        pixels = np.asarray(Image.open(args.data / "images" / f"{name}.png"))
        current["group"] = impairment_group(records[name]) if name in records else "all"
        with torch.no_grad():
            model(**prepare_inputs(processor, [pixels[..., :3]], [pixels[..., 3]], "cpu"))

    print("AGF (visible queries -> infrared keys): mass near the query's position, x uniform")
    for index, values in agf_stats.items():
        near3, near7, peak, share, merge_size = np.mean(values, axis=0)
        print(
            f"  F{index + 1}: 3x3 {near3:.2f}x  7x7 {near7:.2f}x  peak {peak:.1f}x  added / (vis + ir) {share:.3f}"
            f"  merge RMS / (vis + ir) RMS {merge_size:.1f}"
        )
    print("residual scales: mean, mean |gamma|, positive share")
    for name, parameter in model.named_parameters():
        if name.endswith(".gamma") and ("fusions" in name or "feature_enhancements" in name):
            gamma = parameter.detach()
            print(f"  {name}: {gamma.mean():+.3f}, {gamma.abs().mean():.3f}, {(gamma > 0).float().mean():.2f}")
    print("TEM prompts (visible, infrared) by image group")
    for (index, group), values in sorted(prompt_stats.items()):
        visible, infrared = np.mean(values, axis=0)
        print(f"  TEM {index} {group} (n={len(values)}): {visible:.2f}, {infrared:.2f}")


if __name__ == "__main__":
    main()
