"""Why does a detector (not) learn? Measurements for a detection recipe on a SynthRGBT / M3FD-layout folder.

Subcommands (all single-process, CPU, one thread is enough):

``data``     object sizes of the world (pixels, per class) and the best IoU that any anchor of the recipe reaches
             on each ground-truth box, in the evaluation frame and in the training frame (after the recipe's
             random scale + crop); also checks that the boxes survive the data pipeline unchanged
             (transform -> normalised cxcywh -> torchvision targets).
``train``    trains the recipe exactly as ``ivgf train`` does (same model, optimizer, schedule, seeded data
             order), logging the four loss terms (RPN objectness / RPN box / RoI class / RoI box) separately,
             then saves the model and runs ``probe`` on it.
``probe``    for a saved model: proposal recall (top-N RPN proposals vs ground truth at IoU 0.5 / 0.7) on the
             test split, whether the fused maps carry spatial detail (feature energy inside vs outside boxes),
             and test mAP with the recipe's evaluation.

Example (the numbers in docs/detection.md):

    python scripts/detection_diagnostics.py data --data-root synth_m3fd --recipe synth-det-cpu
    python scripts/detection_diagnostics.py train --data-root synth_m3fd --recipe synth-det-cpu --out runs/diag
"""

import argparse
import json
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from ivgf_hf.modeling.image_processing_ivgf import normalised_cxcywh_to_xyxy
from ivgf_hf.training import get_recipe
from ivgf_hf.training.recipes import parse_assignments


def _recipe(args):
    return get_recipe(args.recipe, data_root=args.data_root, **parse_assignments(args.set or []))


def _data(recipe, out):
    from ivgf_hf.training.data import load_recipe_data

    return load_recipe_data(recipe, out)


def _model_config(recipe, num_labels):
    from ivgf_hf import get_config

    return get_config(recipe.preset, num_labels=num_labels, **recipe.model_overrides)


def _anchors(model_or_config, height, width):
    """The anchors the model places on a (height, width) input (IVGF's stride-32 map is unpadded)."""
    from ivgf_hf.modeling.detection_ivgf import IVGFForObjectDetection

    if isinstance(model_or_config, IVGFForObjectDetection):
        generator = model_or_config.rpn.anchor_generator
    elif hasattr(IVGFForObjectDetection, "build_anchor_generator"):
        generator = IVGFForObjectDetection.build_anchor_generator(model_or_config)
    else:  # the model before the fix: one size per level
        from ivgf_hf.modeling.detection_ivgf import PYRAMID_STRIDES, IVGFAnchorGenerator

        config = model_or_config
        generator = IVGFAnchorGenerator(
            tuple((int(s),) for s in config.anchor_sizes), (tuple(config.anchor_aspect_ratios),) * 5, PYRAMID_STRIDES
        )
    h4, w4 = (height // 16 - 3) // 2 + 1, (width // 16 - 3) // 2 + 1
    grids = [
        (height // 4, width // 4),
        (height // 8, width // 8),
        (height // 16, width // 16),
        (h4, w4),
        ((h4 + 1) // 2, (w4 + 1) // 2),
    ]
    maps = [torch.zeros(1, 1, h, w) for h, w in grids]
    return generator(ImageList(torch.zeros(1, 3, height, width), [(height, width)]), maps)[0]


def _best_anchor_iou(boxes_per_image, anchors):
    best = [box_iou(boxes, anchors).max(dim=1).values for boxes in boxes_per_image if len(boxes)]
    return torch.cat(best) if best else torch.zeros(0)


def _iou_summary(best):
    return {
        "median": round(float(best.median()), 3),
        ">=0.7": round(float((best >= 0.7).float().mean()), 3),
        ">=0.5": round(float((best >= 0.5).float().mean()), 3),
        ">=0.3": round(float((best >= 0.3).float().mean()), 3),
    }


def _boxes_of(row):
    return torch.as_tensor(np.asarray(row["objects"]["bbox"], np.float32).reshape(-1, 4))


def command_data(args):
    from ivgf_hf.data import DetectionEvalTransform
    from ivgf_hf.modeling.detection_ivgf import labels_to_torchvision_targets
    from ivgf_hf.training.data import build_train_transform

    recipe = _recipe(args)
    data = _data(recipe, Path(args.out or "/tmp"))
    names = list(data.class_names)
    config = _model_config(recipe, len(names))
    report = {"anchor_sizes": config.anchor_sizes, "anchor_aspect_ratios": config.anchor_aspect_ratios}
    for split in (recipe.train_split, recipe.eval_split):
        rows = data[split]
        boxes = [_boxes_of(rows[i]) for i in range(len(rows))]
        classes = np.concatenate([np.asarray(rows[i]["objects"]["category"]) for i in range(len(rows))])
        allb = torch.cat(boxes)
        wh = (allb[:, 2:] - allb[:, :2]).numpy()
        side = np.sqrt(wh.prod(1))
        entry = {
            "images": len(rows),
            "boxes": len(allb),
            "sqrt_area_percentiles_5_25_50_75_95": np.percentile(side, [5, 25, 50, 75, 95]).round(1).tolist(),
            "height_over_width_percentiles_5_50_95": np.percentile(wh[:, 1] / wh[:, 0], [5, 50, 95]).round(2).tolist(),
            "per_class_median_sqrt_area": {
                names[c]: round(float(np.median(side[classes == c])), 1)
                for c in range(len(names))
                if (classes == c).any()
            },
        }
        if split == recipe.eval_split:
            # the evaluation frame: the image as the evaluation transform gives it (eval_size, padding to 32)
            sample = DetectionEvalTransform(size=recipe.eval_size).apply(
                rows[0]["visible"], rows[0]["infrared"], rows[0]["objects"]
            )
            height, width = sample["pixel_values"].shape[-2:]
            scale = 1.0
            if recipe.eval_size is not None:
                h0, w0 = np.asarray(rows[0]["visible"]).shape[:2]
                scale = recipe.eval_size / max(h0, w0)
            anchors = _anchors(config, height, width)
            entry["eval_frame"] = [int(height), int(width)]
            entry["eval_frame_sqrt_area_median"] = round(float(np.median(side) * scale), 1)
            entry["best_anchor_iou_eval_frame"] = _iou_summary(_best_anchor_iou([b * scale for b in boxes], anchors))
        report[split] = entry

    # the training frame: the recipe's train transform, two passes over the training split
    transform = build_train_transform(recipe.replace(cma=False, photometric=False), None)
    crop = recipe.crop_size
    anchors = _anchors(config, crop, crop)
    rows = data[recipe.train_split]
    torch.manual_seed(0)
    targets, sides, worst_roundtrip = [], [], 0.0
    for _ in range(2):
        for i in range(len(rows)):
            sample = transform.apply(rows[i]["visible"], rows[i]["infrared"], rows[i]["objects"])
            target = labels_to_torchvision_targets([sample["labels"]], (crop, crop), len(names))[0]
            targets.append(target["boxes"])
            if len(target["boxes"]):
                sides.append((target["boxes"][:, 2:] - target["boxes"][:, :2]).prod(1).sqrt())
    # round trip without augmentation: evaluation transform -> targets must give back the file's boxes
    evaluation = DetectionEvalTransform()
    for i in range(len(rows)):
        sample = evaluation.apply(rows[i]["visible"], rows[i]["infrared"], rows[i]["objects"])
        size = tuple(sample["pixel_values"].shape[-2:])
        target = labels_to_torchvision_targets([sample["labels"]], size, len(names))[0]
        original = _boxes_of(rows[i])
        if len(original):
            worst_roundtrip = max(worst_roundtrip, float((target["boxes"] - original).abs().max()))
            assert torch.equal(target["labels"] - 1, torch.as_tensor(rows[i]["objects"]["category"]))
    sides = torch.cat(sides).numpy()
    report["train_frame"] = {
        "crop": crop,
        "scale_range": list(recipe.scale_range),
        "sqrt_area_percentiles_5_25_50_75_95": np.percentile(sides, [5, 25, 50, 75, 95]).round(1).tolist(),
        "best_anchor_iou": _iou_summary(_best_anchor_iou(targets, anchors)),
    }
    report["pipeline_roundtrip_max_abs_error_px"] = round(worst_roundtrip, 4)
    print(json.dumps(report, indent=1))
    return report


@torch.no_grad()
def probe(model, data, recipe, top_n=(10, 50, 150, 300)):
    """Proposal recall on the test split and the spatial detail of the fused maps."""
    from ivgf_hf.data import DetectionEvalTransform
    from ivgf_hf.modeling.detection_ivgf import POOLED_LEVELS

    model.eval()
    transform = DetectionEvalTransform(size=recipe.eval_size)
    rows = data[recipe.eval_split]
    hits = {n: {0.5: 0, 0.7: 0} for n in top_n}
    total = 0
    inside, outside, spatial = [[] for _ in range(4)], [[] for _ in range(4)], [[] for _ in range(4)]
    for i in range(len(rows)):
        sample = transform.apply(rows[i]["visible"], rows[i]["infrared"], rows[i]["objects"])
        pixel_values, pixel_values_ir = sample["pixel_values"][None], sample["pixel_values_ir"][None]
        size = tuple(pixel_values.shape[-2:])
        outputs = model.ivgf(pixel_values, pixel_values_ir, return_dict=True)
        features = model.fpn(OrderedDict(zip(POOLED_LEVELS, outputs.feature_maps)))
        proposals, _ = model.rpn(ImageList(pixel_values, [size]), features)
        height, width = size
        labels = sample["labels"]
        gt = normalised_cxcywh_to_xyxy(labels["boxes"], height, width)
        if len(gt) == 0:
            continue
        total += len(gt)
        iou = box_iou(gt, proposals[0])  # proposals are sorted by objectness
        for n in top_n:
            best = iou[:, :n].max(dim=1).values if iou.shape[1] else torch.zeros(len(gt))
            for t in (0.5, 0.7):
                hits[n][t] += int((best >= t).sum())
        # per level: the share of each channel's energy that varies over space (0: a map constant per channel),
        # and the deviation from the image's mean feature vector inside vs outside the boxes
        for level, fmap in enumerate(outputs.feature_maps):
            fmap = fmap[0].float()
            spatial_energy = fmap.var(dim=(1, 2), unbiased=False).sum()
            spatial[level].append(float(spatial_energy / fmap.pow(2).mean(dim=(1, 2)).sum()))
            energy = (fmap - fmap.mean(dim=(1, 2), keepdim=True)).norm(dim=0)
            fh, fw = energy.shape
            mask = torch.zeros(fh, fw, dtype=torch.bool)
            ys = (torch.arange(fh).float() + 0.5) * height / fh
            xs = (torch.arange(fw).float() + 0.5) * width / fw
            for x0, y0, x1, y1 in gt.tolist():
                mask |= ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
            inside[level].append(energy[mask])
            outside[level].append(energy[~mask])
    recall = {f"top{n}": {f"IoU{t}": round(hits[n][t] / max(total, 1), 3) for t in (0.5, 0.7)} for n in top_n}
    detail = {}
    for level in range(4):
        a, b = torch.cat(inside[level]), torch.cat(outside[level])
        pooled = torch.cat([a, b])
        detail[f"F{level + 1}"] = {
            "inside_over_outside_deviation": round(float(a.mean() / b.mean()), 3) if len(a) and len(b) else None,
            "effect_size_d": round(float((a.mean() - b.mean()) / pooled.std()), 3) if len(a) and len(b) else None,
            "spatial_variance_share": round(float(np.mean(spatial[level])), 3),
        }
    return {"ground_truth_boxes": total, "proposal_recall": recall, "fused_map_detail": detail}


def measure(model, processor, data, recipe):
    """probe(), then test mAP with the recipe's evaluation (as ivgf train's) and the same on 48 training images."""
    from ivgf_hf.evaluation import evaluate_model
    from ivgf_hf.training.loop import _eval_processor

    result = {"probe": probe(model, data, recipe)}
    processor = _eval_processor(processor, recipe.eval_size)
    metrics = evaluate_model(
        model, data[recipe.eval_split], task="detection", processor=processor, batch_size=recipe.eval_batch_size
    )["metrics"]
    result["test"] = {key: metrics[key] for key in ("mAP", "mAP50", "mAP75", "per_class_AP50", "per_class_AP")}
    # training images: low here too means the detector did not fit, not that it fails to generalise
    train_rows = data[recipe.train_split].select(range(min(48, len(data[recipe.train_split]))))
    fitted = evaluate_model(
        model, train_rows, task="detection", processor=processor, batch_size=recipe.eval_batch_size
    )["metrics"]
    result["train_subset"] = {key: fitted[key] for key in ("mAP", "mAP50", "mAP75")}
    return result


def command_train(args):
    from accelerate.utils import set_seed

    from ivgf_hf.training.data import (
        EpochBatchSampler,
        SeededTransformDataset,
        build_train_transform,
        dataset_class_names,
        train_loader,
    )
    from ivgf_hf.training.model_setup import build_model
    from ivgf_hf.training.optim import build_optimizer, build_scheduler

    recipe = _recipe(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = _data(recipe, out)
    names = dataset_class_names(data, recipe.task)
    set_seed(recipe.seed)
    model, processor, _ = build_model(recipe, names)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe)
    set_seed(recipe.seed)  # process 0 of ivgf train: device_specific adds the process index 0
    dataset = SeededTransformDataset(
        data[recipe.train_split],
        build_train_transform(recipe, processor, model.config.modalities),
        recipe.task,
        recipe.seed,
    )
    sampler = EpochBatchSampler(len(dataset), recipe.batch_size, 1, 0, recipe.seed)
    batches = iter(train_loader(dataset, sampler, recipe.task, recipe.num_workers))
    log, window, started = [], {}, time.perf_counter()
    model.train()
    for step in range(1, recipe.max_steps + 1):
        batch = next(batches)
        outputs = model(**batch)
        outputs.loss.backward()
        if recipe.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        for key, value in outputs.loss_dict.items():
            window.setdefault(key, []).append(float(value))
        if step % args.log_every == 0 or step == recipe.max_steps:
            record = {"step": step, "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - started)}
            record.update({key: round(float(np.mean(values)), 4) for key, values in window.items()})
            print(json.dumps(record), flush=True)
            log.append(record)
            window = {}
    model.save_pretrained(out / "model")
    processor.save_pretrained(out / "model")
    result = {"recipe": recipe.to_dict(), "losses": log, "train_seconds": round(time.perf_counter() - started)}
    result.update(measure(model, processor, data, recipe))
    print(json.dumps({key: result[key] for key in ("probe", "test", "train_subset")}, indent=1))
    (out / "diagnostics.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def command_probe(args):
    from ivgf_hf.modeling.detection_ivgf import IVGFForObjectDetection

    recipe = _recipe(args)
    data = _data(recipe, Path(args.out or "/tmp"))
    from ivgf_hf.modeling.image_processing_ivgf import IVGFImageProcessor

    model = IVGFForObjectDetection.from_pretrained(args.model)
    if args.rpn_test_top_n:  # RPN proposals kept at test time: per level before NMS, per image after it
        model.rpn._pre_nms_top_n["testing"], model.rpn._post_nms_top_n["testing"] = args.rpn_test_top_n
    result = measure(model, IVGFImageProcessor.from_pretrained(args.model), data, recipe)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "probe.json").write_text(json.dumps(result, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("data", "train", "probe"))
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--recipe", default="synth-det-cpu")
    parser.add_argument("--set", action="append", help="recipe override KEY=VALUE (repeatable)")
    parser.add_argument("--out", help="output folder (train), scratch folder (data, probe)")
    parser.add_argument("--model", help="saved model folder (probe)")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument(
        "--rpn-test-top-n",
        type=int,
        nargs=2,
        metavar=("PRE", "POST"),
        help="probe: override the RPN's test-time pre- and post-NMS proposal counts",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"data": command_data, "train": command_train, "probe": command_probe}[args.command](args)


if __name__ == "__main__":
    main()
