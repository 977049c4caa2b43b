"""Joint transforms keep both images, masks and boxes aligned; cutout&mix obeys its config and spares labels."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image
from torch.utils.data import DataLoader

from ivgf_hf.data import (
    CutoutMix,
    CutoutMixConfig,
    DetectionEvalTransform,
    DetectionTrainTransform,
    SegmentationEvalTransform,
    SegmentationTrainTransform,
    collate_detection,
    collate_segmentation,
)
from ivgf_hf.data.cutout_mix import CutoutMixMasks
from ivgf_hf.data.transforms import Normalization, colour_matrix

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def _unnormalise(pixel_values, pixel_values_ir):
    visible = pixel_values * STD[:, None, None] + MEAN[:, None, None]
    return visible, pixel_values_ir * 0.2 + 0.425


def _marker_sample(height=96, width=128):
    """Visible / infrared / label with the same asymmetric L-shaped marker (class 3) on a dark background."""
    marker = np.zeros((height, width), bool)
    marker[20:70, 30:42] = True  # vertical bar
    marker[58:70, 42:90] = True  # foot pointing right, so a flip is visible
    visible = np.where(marker[..., None], np.uint8([230, 200, 40]), np.uint8([20, 30, 40]))
    infrared = np.where(marker, np.uint8(220), np.uint8(25))
    label = np.where(marker, np.uint8(3), np.uint8(0))
    return visible, infrared, label


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_segmentation_geometry_is_identical_on_both_images_and_the_mask():
    visible, infrared, label = _marker_sample()
    transform = SegmentationTrainTransform(crop_size=64, cat_max_ratio=1.0, photometric=False, cma=None)
    flips = set()
    for seed in range(24):
        torch.manual_seed(seed)
        out = transform.apply(Image.fromarray(visible), Image.fromarray(infrared), Image.fromarray(label))
        assert out["pixel_values"].shape == (3, 64, 64) and out["pixel_values_ir"].shape == (1, 64, 64)
        labels = out["labels"]
        assert labels.dtype == torch.int64 and set(labels.unique().tolist()) <= {0, 3, 255}
        vis, ir = _unnormalise(out["pixel_values"], out["pixel_values_ir"])
        valid = labels != 255
        assert torch.all(out["pixel_values"][:, ~valid] == 0) and torch.all(out["pixel_values_ir"][:, ~valid] == 0)
        target = (labels == 3).numpy()
        if target.sum() < 30:
            continue
        marker_vis = ((vis[0] > 0.5) & valid).numpy()
        marker_ir = ((ir[0] > 0.5) & valid).numpy()
        assert _iou(marker_vis, target) > 0.85 and _iou(marker_ir, target) > 0.85
        cols = np.flatnonzero(target.any(0))
        foot_right = target[:, cols[-1]].sum() < target[:, cols[0]].sum()
        flips.add(bool(foot_right))
    assert flips == {True, False}  # both orientations seen, and the images followed the mask each time


def _two_box_sample():
    """Dark images with a red (class 0) and a blue (class 1) rectangle; infrared 250 and 200 inside them."""
    height, width = 120, 160
    visible = np.full((height, width, 3), 10, np.uint8)
    infrared = np.full((height, width), 10, np.uint8)
    boxes = [[20, 30, 60, 90], [100, 10, 150, 40]]
    for (x1, y1, x2, y2), channel, heat in zip(boxes, (0, 2), (250, 200)):
        visible[y1:y2, x1:x2, channel] = 240
        infrared[y1:y2, x1:x2] = heat
    return visible, infrared, {"bbox": boxes, "category": [0, 1]}


def _box_region(box, grow, size):
    x1, y1, x2, y2 = box
    return (
        slice(max(int(round(y1 - grow)), 0), min(int(round(y2 + grow)), size)),
        slice(max(int(round(x1 - grow)), 0), min(int(round(x2 + grow)), size)),
    )


def test_detection_geometry_keeps_boxes_on_both_images_and_drops_cropped_out_boxes():
    visible, infrared, objects = _two_box_sample()
    size = 96
    transform = DetectionTrainTransform(crop_size=size, scale_range=(0.8, 2.0), photometric=False, cma=None)
    dropped = kept = 0
    for seed in range(30):
        torch.manual_seed(seed)
        out = transform.apply(visible, infrared, objects)
        vis, ir = _unnormalise(out["pixel_values"], out["pixel_values_ir"])
        classes, boxes = out["labels"]["class_labels"], out["labels"]["boxes"]
        assert len(classes) == len(boxes) and (boxes[:, 2:] > 0).all() and (boxes >= 0).all() and (boxes <= 1).all()
        for class_id, channel, heat in ((0, 0, 250 / 255), (1, 2, 200 / 255)):
            marker = (vis[channel] > 0.6) & (vis[2 - channel] < 0.3)
            present = classes == class_id
            if marker.sum() == 0:
                assert not present.any()
                dropped += 1
                continue
            if marker.sum() < 20:
                continue  # a sliver: kept or dropped depending on the 1-pixel minimum size
            assert present.sum() == 1
            kept += 1
            cx, cy, w, h = (boxes[present][0] * size).tolist()
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            inner, outer, around = (_box_region(box, grow, size) for grow in (-1.5, 1.5, 4))
            assert marker[inner].float().mean() > 0.95 and marker[outer].sum() == marker.sum()
            ir_marker = ir[0] > 0.6  # the box is also the marker's extent in the infrared image
            assert ir_marker[inner].float().mean() > 0.95 and ir_marker[outer].sum() == ir_marker[around].sum()
            torch.testing.assert_close(ir[0][inner].mean(), torch.tensor(heat), atol=0.03, rtol=0)
    assert dropped > 0 and kept > 10


def test_normalisation_defaults_and_processor_attributes():
    visible, infrared, label = _marker_sample(32, 48)
    identity = dict(
        crop_size=(32, 48), scale_range=(1.0, 1.0), cat_max_ratio=1.0, hflip_prob=0.0, photometric=False, cma=None
    )
    out = SegmentationTrainTransform(**identity).apply(visible, infrared, label)
    expected = (torch.from_numpy(visible).permute(2, 0, 1) / 255 - MEAN[:, None, None]) / STD[:, None, None]
    torch.testing.assert_close(out["pixel_values"], expected)
    torch.testing.assert_close(out["pixel_values_ir"], (torch.from_numpy(infrared)[None] / 255 - 0.425) / 0.2)
    torch.testing.assert_close(out["labels"], torch.from_numpy(label).long())
    processor = SimpleNamespace(image_mean=[0.5] * 3, image_std=[0.5] * 3, ir_image_mean=[0.1], ir_image_std=[0.3])
    out = SegmentationTrainTransform(**identity, processor=processor).apply(visible, infrared, label)
    torch.testing.assert_close(out["pixel_values"], torch.from_numpy(visible).permute(2, 0, 1) / 255 * 2 - 1)
    torch.testing.assert_close(out["pixel_values_ir"], (torch.from_numpy(infrared)[None] / 255 - 0.1) / 0.3)
    with pytest.raises(ValueError, match="ir_image_mean"):
        Normalization(SimpleNamespace(ir_image_mean=[0.4, 0.4, 0.4]))


def test_cat_max_ratio_favours_crops_where_no_class_dominates():
    label = np.zeros((200, 200), np.uint8)
    label[10:90, 10:90] = 1
    image, infrared = np.zeros((200, 200, 3), np.uint8), np.zeros((200, 200), np.uint8)

    def balanced_share(ratio):
        transform = SegmentationTrainTransform(
            crop_size=64, scale_range=(1.0, 1.0), cat_max_ratio=ratio, photometric=False, cma=None
        )
        torch.manual_seed(0)
        shares = []
        for _ in range(80):
            counts = torch.bincount(transform.apply(image, infrared, label)["labels"].flatten(), minlength=2)[:2]
            shares.append(float(counts.max() / counts.sum()))
        return np.mean(np.array(shares) < 0.75)

    assert balanced_share(1.0) < 0.3 and balanced_share(0.75) > 0.6  # measured 0.13 and 0.79


def test_photometric_distortion_touches_only_the_visible_image():
    visible, infrared, label = _marker_sample(32, 48)
    kwargs = dict(crop_size=(32, 48), scale_range=(1.0, 1.0), cat_max_ratio=1.0, hflip_prob=0.0, cma=None)
    plain = SegmentationTrainTransform(photometric=False, **kwargs).apply(visible, infrared, label)
    changed = 0
    for seed in range(6):
        torch.manual_seed(seed)
        out = SegmentationTrainTransform(photometric=True, **kwargs).apply(visible, infrared, label)
        torch.testing.assert_close(out["pixel_values_ir"], plain["pixel_values_ir"])
        changed += not torch.allclose(out["pixel_values"], plain["pixel_values"])
    assert changed >= 4


def test_colour_matrix_identity_grey_and_luma_preserving_hue():
    torch.testing.assert_close(colour_matrix(1.0, 0.0), torch.eye(3), atol=1e-5, rtol=0)
    grey = colour_matrix(0.0, 0.0) @ torch.tensor([0.9, 0.2, 0.1])
    assert torch.allclose(grey, grey[0].expand(3), atol=1e-5)
    colour = torch.tensor([0.8, 0.3, 0.1])
    luma = torch.tensor([0.299, 0.587, 0.114])
    assert torch.isclose(luma @ (colour_matrix(1.0, 0.1) @ colour), luma @ colour, atol=1e-5)


def test_cutout_mix_respects_its_probabilities_and_size_ranges():
    config = CutoutMixConfig(
        cutout_prob=0.3,
        cutout_count=(1, 1),
        cutout_size=(0.25, 0.5),
        cutout_visible_prob=0.25,
        cutmix_prob=0.6,
        cutmix_count=(0, 2),
        cutmix_size=(0.1, 0.2),
    )
    n, side = 4000, 16
    masks = CutoutMix(config).sample(n, side, side, generator=torch.Generator().manual_seed(0))
    has_cutout = masks.cutout.flatten(1).any(1).float()
    has_cutmix = masks.cutmix.flatten(1).any(1).float()
    tolerance = lambda p: 4 * (p * (1 - p) / n) ** 0.5  # noqa: E731
    assert abs(has_cutout.mean() - 0.3) < tolerance(0.3)
    # cutmix_count (0, 2): a third of the drawn samples get zero rectangles
    assert abs(has_cutmix.mean() - 0.6 * 2 / 3) < tolerance(0.4)
    on_visible = masks.cutout_visible[has_cutout.bool()].float().mean()
    assert abs(on_visible - 0.25) < 4 * (0.25 * 0.75 / has_cutout.sum()) ** 0.5
    area = masks.cutout.flatten(1).float().mean(1)[has_cutout.bool()]
    assert area.min() >= (0.25 * side - 1) ** 2 / side**2 and area.max() <= (0.5 * side + 1) ** 2 / side**2


def test_cutout_mix_swaps_and_blanks_exactly_the_chosen_regions():
    visible = torch.rand(2, 3, 8, 8)
    infrared = torch.rand(2, 1, 8, 8)
    cutmix = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    cutmix[:, :, 0:3, 0:3] = True
    cutout = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    cutout[:, :, 5:8, 5:8] = True
    masks = CutoutMixMasks(cutout=cutout, cutout_visible=torch.tensor([True, False]), cutmix=cutmix)
    cma = CutoutMix(visible_fill=(0.1, 0.2, 0.3), infrared_fill=(0.4,))
    out_vis, out_ir = cma.apply(visible, infrared, masks)
    grey = (visible * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(out_vis[:, :, :3, :3], infrared[:, :, :3, :3].expand(-1, 3, -1, -1))
    torch.testing.assert_close(out_ir[:, :, :3, :3], grey[:, :, :3, :3])
    torch.testing.assert_close(out_vis[0, :, 5:, 5:], torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1).expand(3, 3, 3))
    torch.testing.assert_close(out_ir[0, :, 5:, 5:], infrared[0, :, 5:, 5:])  # sample 0: cutout on visible
    assert torch.all(out_ir[1, :, 5:, 5:] == 0.4)
    torch.testing.assert_close(out_vis[1, :, 5:, 5:], visible[1, :, 5:, 5:])
    untouched = ~(cutmix | cutout)
    torch.testing.assert_close(out_vis * untouched, visible * untouched)
    torch.testing.assert_close(out_ir * untouched, infrared * untouched)


def test_cutout_mix_never_changes_labels_and_blanks_to_zero_after_normalisation():
    visible, infrared, label = _marker_sample(48, 64)
    always = CutoutMixConfig(cutout_prob=1.0, cutmix_prob=1.0)
    identity = dict(scale_range=(1.0, 1.0), hflip_prob=0.0, photometric=False)
    seg = SegmentationTrainTransform(crop_size=(48, 64), cat_max_ratio=1.0, cma=always, **identity)
    plain = SegmentationTrainTransform(crop_size=(48, 64), cat_max_ratio=1.0, cma=None, **identity)
    reference = plain.apply(visible, infrared, label)
    for seed in range(5):
        torch.manual_seed(seed)
        out = seg.apply(visible, infrared, label)
        torch.testing.assert_close(out["labels"], torch.from_numpy(label).long())
        assert not torch.equal(out["pixel_values"], reference["pixel_values"])
        blank = (out["pixel_values"] == 0).all(0) | (out["pixel_values_ir"] == 0).all(0)
        assert blank.any()  # cutout fills the modality's mean, i.e. 0 once normalised
    v, i, objects = _two_box_sample()
    det = DetectionTrainTransform(crop_size=(120, 160), cma=always, **identity)
    torch.manual_seed(0)
    boxes = det.apply(v, i, objects)["labels"]
    expected = torch.tensor([[40.0, 60, 40, 60], [125, 25, 50, 30]]) / torch.tensor([160, 120] * 2)
    torch.testing.assert_close(boxes["boxes"], expected)
    assert boxes["class_labels"].tolist() == [0, 1]


def _dataset(samples, with_boxes=False):
    """In-memory ``Dataset`` with the loaders' columns from (visible, infrared, label or objects) samples."""
    features = {"visible": ImageFeature(mode="RGB"), "infrared": ImageFeature(mode="L")}
    columns = {
        "visible": [Image.fromarray(s[0]) for s in samples],
        "infrared": [Image.fromarray(s[1]) for s in samples],
    }
    if with_boxes:
        features["objects"] = {"bbox": List(List(Value("float32"), length=4)), "category": List(Value("int64"))}
        columns["objects"] = [s[2] for s in samples]
    else:
        features["label"] = ImageFeature(mode="L")
        columns["label"] = [Image.fromarray(s[2]) for s in samples]
    return Dataset.from_dict(columns, features=Features(features))


def test_with_transform_and_collate_segmentation():
    data = _dataset([_marker_sample(48, 64), _marker_sample(40, 56)])
    loader = DataLoader(
        data.with_transform(SegmentationTrainTransform(crop_size=32)), batch_size=2, collate_fn=collate_segmentation
    )
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["pixel_values_ir"].shape == (2, 1, 32, 32)
    assert batch["labels"].shape == (2, 32, 32) and batch["labels"].dtype == torch.int64
    evaluated = data.with_transform(SegmentationEvalTransform())
    batch = collate_segmentation([evaluated[0], evaluated[1]])
    assert batch["pixel_values"].shape == (2, 3, 64, 64)  # padded to multiples of 32, then to the batch max
    assert (batch["labels"][1, 40:] == 255).all() and (batch["pixel_values"][1, :, 40:] == 0).all()


def test_detection_eval_transform_and_collate_rescale_boxes_to_the_padded_size():
    visible, infrared, objects = _two_box_sample()
    out = DetectionEvalTransform(size=80).apply(visible, infrared, objects)  # 120x160 -> 60x80 -> pad 64x96
    assert out["pixel_values"].shape == (3, 64, 96)
    cx, cy, w, h = out["labels"]["boxes"][0].tolist()
    assert np.allclose([cx * 96, cy * 64, w * 96, h * 64], [20, 30, 20, 30])
    small = DetectionEvalTransform().apply(
        visible[:64, :64], infrared[:64, :64], {"bbox": [[20, 30, 60, 64]], "category": [0]}
    )
    batch = collate_detection([DetectionEvalTransform().apply(visible, infrared, objects), small])
    assert batch["pixel_values"].shape == (2, 3, 128, 160) and len(batch["labels"]) == 2
    cx, cy, w, h = batch["labels"][1]["boxes"][0].tolist()
    assert np.allclose([cx * 160, cy * 128, w * 160, h * 128], [40, 47, 40, 34])
    data = _dataset([_two_box_sample()], with_boxes=True).with_transform(DetectionTrainTransform(crop_size=64))
    assert set(data[0]["labels"]) == {"class_labels", "boxes"}
