"""Tests of IVGFImageProcessor: inputs, geometry, normalisation, labels, post-processing, errors, save/load."""

import inspect
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch

from ivgf_hf.modeling.image_processing_ivgf import IVGFImageProcessor, get_resize_output_size

H, W = 40, 50  # padded to 64 x 64 by default


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def pair(rng):
    """A visible uint8 HWC image, a grey uint8 HW infrared image and an HW label map, all 40 x 50."""
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (H, W), dtype=np.uint8)
    mask = rng.integers(0, 5, (H, W), dtype=np.uint8)
    return rgb, ir, mask


def run(processor, *args, **kwargs):
    return processor(*args, return_tensors="pt", **kwargs)


# ----------------------------------------------------------------------------------------------------------- inputs
def test_visible_input_types_agree(pair):
    rgb, ir, _ = pair
    processor = IVGFImageProcessor()
    reference = run(processor, rgb, ir)["pixel_values"]
    assert reference.shape == (1, 3, 64, 64) and reference.dtype == torch.float32
    variants = [
        PIL.Image.fromarray(rgb),
        torch.from_numpy(rgb).permute(2, 0, 1),  # CHW uint8 tensor
        [rgb],
        rgb[None],  # NHWC batch array
        torch.from_numpy(rgb).permute(2, 0, 1)[None],  # NCHW batch tensor
        rgb.astype(np.float32),  # float on the 0-255 scale
        np.ascontiguousarray(rgb.transpose(2, 0, 1)),  # CHW numpy (fallback layout)
    ]
    for variant in variants:
        torch.testing.assert_close(run(processor, variant, ir)["pixel_values"], reference, rtol=0, atol=1e-6)
    float_input = torch.from_numpy(rgb).permute(2, 0, 1).float()
    untouched = float_input.clone()
    run(processor, float_input, ir)
    assert torch.equal(float_input, untouched)  # inputs are never modified in place


def test_infrared_input_types_agree(pair):
    _, ir, _ = pair
    processor = IVGFImageProcessor()
    reference = run(processor, images_ir=ir)["pixel_values_ir"]
    assert reference.shape == (1, 1, 64, 64)
    ir16 = ir.astype(np.uint16) * 257  # 16-bit thermal: 65535 maps onto 255
    variants = [
        ir[:, :, None],
        ir[None],
        PIL.Image.fromarray(ir),  # mode "L"
        PIL.Image.fromarray(ir.astype(np.float32)),  # mode "F", 0-255 scale
        torch.from_numpy(ir),
        torch.from_numpy(ir)[None],
        ir16,
        PIL.Image.fromarray(ir16),  # mode "I;16"
        torch.from_numpy(ir16.astype(np.int32)).to(torch.uint16),
        np.repeat(ir[:, :, None], 3, axis=2),  # replicated grey
        PIL.Image.fromarray(ir).convert("RGB"),
        torch.from_numpy(ir)[None].repeat(3, 1, 1),
    ]
    for variant in variants:
        torch.testing.assert_close(run(processor, images_ir=variant)["pixel_values_ir"], reference, rtol=0, atol=1e-6)


def test_replicated_grey_infrared_is_bit_identical_and_colour_uses_channel_mean(pair, rng):
    _, ir, _ = pair
    processor = IVGFImageProcessor()
    grey = processor(images_ir=ir.astype(np.float32) / 7.0, do_rescale=False)["pixel_values_ir"][0]
    replicated = processor(images_ir=np.repeat(ir[:, :, None].astype(np.float32) / 7.0, 3, axis=2), do_rescale=False)[
        "pixel_values_ir"
    ][0]
    assert torch.equal(grey, replicated)
    colour = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    out = processor(images_ir=colour, do_normalize=False, do_pad=False)["pixel_values_ir"][0]
    torch.testing.assert_close(out[0], torch.from_numpy(colour.astype(np.float32).mean(-1) / 255.0))


def test_rgbt_four_channel_split(pair):
    rgb, ir, _ = pair
    processor = IVGFImageProcessor()
    separate = run(processor, rgb, ir)
    rgbt = np.dstack([rgb, ir])
    for variant in (rgbt, PIL.Image.fromarray(rgbt, mode="RGBA"), torch.from_numpy(rgbt).permute(2, 0, 1), [rgbt]):
        split = run(processor, variant)
        assert set(split) == {"pixel_values", "pixel_values_ir"}
        assert torch.equal(split["pixel_values"], separate["pixel_values"])
        assert torch.equal(split["pixel_values_ir"], separate["pixel_values_ir"])


def test_grey_visible_is_replicated(pair):
    rgb, _, _ = pair
    grey = rgb[:, :, 0]
    out = run(IVGFImageProcessor(), grey)["pixel_values"]
    expected = run(IVGFImageProcessor(), np.repeat(grey[:, :, None], 3, axis=2))["pixel_values"]
    assert torch.equal(out, expected)


def test_missing_modality_returns_only_the_given_key(pair):
    rgb, ir, mask = pair
    processor = IVGFImageProcessor()
    visible_only = run(processor, rgb, segmentation_maps=mask)
    infrared_only = run(processor, images_ir=ir, segmentation_maps=mask)
    assert set(visible_only) == {"pixel_values", "labels"}
    assert set(infrared_only) == {"pixel_values_ir", "labels"}
    assert torch.equal(visible_only["labels"], infrared_only["labels"])


def test_return_tensors_none_gives_per_image_tensors(pair):
    rgb, ir, _ = pair
    small = rgb[:20, :30]
    out = IVGFImageProcessor()([rgb, small], [ir, ir[:20, :30]])
    assert isinstance(out["pixel_values"], list) and len(out["pixel_values"]) == 2
    assert all(tuple(t.shape) == (3, 64, 64) for t in out["pixel_values"])  # padded to the batch maximum
    unpadded = IVGFImageProcessor(do_pad=False)([rgb, small])
    assert [tuple(t.shape) for t in unpadded["pixel_values"]] == [(3, H, W), (3, 20, 30)]


# --------------------------------------------------------------------------------------- normalisation and padding
def test_normalisation_exact_on_known_pixels():
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[1, 2] = (128, 64, 255)
    ir = np.zeros((4, 4), dtype=np.uint8)
    ir[1, 2] = 100
    out = run(IVGFImageProcessor(ir_num_channels=3), rgb, ir)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected_rgb = (torch.tensor([128.0, 64.0, 255.0]) / 255.0 - mean) / std
    torch.testing.assert_close(out["pixel_values"][0, :, 1, 2], expected_rgb, rtol=0, atol=1e-6)
    expected_ir = torch.full((3,), (100 / 255 - 0.425) / 0.2)
    torch.testing.assert_close(out["pixel_values_ir"][0, :, 1, 2], expected_ir, rtol=0, atol=1e-6)
    assert out["pixel_values_ir"].shape == (1, 3, 64, 64)  # padded to at least 48 px, then to a multiple of 32


def test_padding_to_multiple_with_zero_pixels_and_ignore_labels(pair):
    rgb, ir, mask = pair
    out = run(IVGFImageProcessor(), rgb, ir, segmentation_maps=mask)
    assert out["pixel_values"].shape == (1, 3, 64, 64) and out["labels"].shape == (1, 64, 64)
    assert torch.equal(out["labels"][0, :H, :W], torch.from_numpy(mask).long())
    assert (out["labels"][0, H:] == 255).all() and (out["labels"][0, :, W:] == 255).all()
    assert (out["pixel_values"][0, :, H:] == 0).all() and (out["pixel_values"][0, :, :, W:] == 0).all()
    assert (out["pixel_values_ir"][0, :, H:] == 0).all()
    other = run(IVGFImageProcessor(size_divisor=16, ignore_index=7), rgb, segmentation_maps=mask)
    assert other["labels"].shape == (1, 48, 64) and (other["labels"][0, H:] == 7).all()
    assert run(IVGFImageProcessor(do_pad=False), rgb)["pixel_values"].shape == (1, 3, H, W)
    mixed = run(IVGFImageProcessor(), [rgb, rgb[:10, : 70 - 40]], [ir, ir[:10, :30]])
    assert mixed["pixel_values"].shape == (2, 3, 64, 64)
    assert (mixed["pixel_values"][1, :, 10:] == 0).all()


# ------------------------------------------------------------------------------------------------------------ resize
def test_resize_rule():
    assert get_resize_output_size(40, 50, {"height": 32, "width": 96}) == (32, 96)
    assert get_resize_output_size(40, 50, {"shortest_edge": 80}) == (80, 100)
    assert get_resize_output_size(40, 50, {"shortest_edge": 80, "longest_edge": 90}) == (72, 90)
    assert get_resize_output_size(50, 40, {"shortest_edge": 80, "longest_edge": 1000}) == (100, 80)
    assert get_resize_output_size(480, 640, {"shortest_edge": 512, "longest_edge": 1024}) == (512, 683)


def test_resize_modes_and_nearest_masks(pair):
    rgb, ir, mask = pair
    fixed = run(
        IVGFImageProcessor(do_resize=True, size={"height": 33, "width": 70}, do_pad=False),
        rgb,
        ir,
        segmentation_maps=mask,
    )
    assert fixed["pixel_values"].shape == (1, 3, 33, 70) and fixed["pixel_values_ir"].shape == (1, 1, 33, 70)
    assert fixed["labels"].shape == (1, 33, 70)
    assert set(fixed["labels"].unique().tolist()) <= set(np.unique(mask).tolist())  # nearest: no new values
    keep_ratio = run(
        IVGFImageProcessor(do_resize=True, size={"shortest_edge": 80, "longest_edge": 90}), rgb, segmentation_maps=mask
    )
    assert keep_ratio["pixel_values"].shape == (1, 3, 96, 96)
    assert (keep_ratio["labels"][0, 72:] == 255).all() and (keep_ratio["labels"][0, :72, :90] != 255).all()
    # doubling the size duplicates every label pixel exactly
    doubled = run(
        IVGFImageProcessor(do_resize=True, size={"height": 2 * H, "width": 2 * W}, do_pad=False),
        rgb,
        segmentation_maps=mask,
    )["labels"][0]
    assert torch.equal(doubled, torch.from_numpy(mask).long().repeat_interleave(2, 0).repeat_interleave(2, 1))
    # bilinear keeps a constant image constant; nearest resampling of the image is selectable
    constant = np.full((H, W, 3), 77, dtype=np.uint8)
    out = IVGFImageProcessor(do_resize=True, size={"height": 31, "width": 17}, do_normalize=False, do_pad=False)(
        constant, return_tensors="pt"
    )["pixel_values"]
    torch.testing.assert_close(out, torch.full_like(out, 77 / 255))
    nearest = IVGFImageProcessor(
        do_resize=True, size={"height": 2 * H, "width": 2 * W}, resample=0, do_normalize=False, do_pad=False
    )(rgb, return_tensors="pt")["pixel_values"][0]
    expected = torch.from_numpy(rgb).permute(2, 0, 1).float().repeat_interleave(2, 1).repeat_interleave(2, 2) / 255
    torch.testing.assert_close(nearest, expected)


def test_call_overrides_do_not_change_the_processor(pair):
    rgb, _, _ = pair
    processor = IVGFImageProcessor()
    out = run(processor, rgb, do_resize=True, size={"height": 16, "width": 16}, size_divisor=8)
    assert out["pixel_values"].shape == (1, 3, 48, 48)  # 16 x 16, padded to the 48 px IVGF needs
    assert processor.do_resize is False and processor.size is None and processor.size_divisor == 32


# ------------------------------------------------------------------------------------------------------- detection
def test_annotations_to_normalised_cxcywh(pair):
    rgb, ir, _ = pair
    annotations = {"image_id": 7, "annotations": [{"bbox": [10, 20, 30, 10], "category_id": 2, "area": 300}]}
    labels = run(IVGFImageProcessor(), rgb, ir, annotations=annotations)["labels"]
    assert isinstance(labels, list) and len(labels) == 1
    target = labels[0]
    assert target["class_labels"].dtype == torch.int64 and target["class_labels"].tolist() == [2]
    assert target["boxes"].dtype == torch.float32
    # padded 64 x 64: centre (25, 25), size (30, 10)
    torch.testing.assert_close(target["boxes"], torch.tensor([[25 / 64, 25 / 64, 30 / 64, 10 / 64]]), rtol=0, atol=0)
    assert target["orig_size"].tolist() == [H, W] and target["size"].tolist() == [H, W]
    assert target["image_id"].tolist() == [7]
    # resized x2 to 80 x 100, padded to 96 x 128
    resized = run(IVGFImageProcessor(do_resize=True, size={"shortest_edge": 80}), rgb, annotations=annotations)
    torch.testing.assert_close(
        resized["labels"][0]["boxes"], torch.tensor([[50 / 128, 50 / 96, 60 / 128, 20 / 96]]), rtol=0, atol=1e-7
    )
    assert resized["labels"][0]["size"].tolist() == [80, 100]


def test_degenerate_boxes_clipped_or_dropped_with_warning(pair):
    rgb, _, _ = pair
    objects = [
        {"bbox": [40, 30, 20, 20], "category_id": 1},  # partly outside: clipped to [40, 30, 50, 40]
        {"bbox": [5, 5, 0, 4], "category_id": 0},  # zero width: dropped
        {"bbox": [60, 5, 5, 5], "category_id": 3},  # entirely outside: dropped
        {"bbox": [0, 0, 4, 4], "category_id": 4},
    ]
    with pytest.warns(UserWarning) as record:
        target = run(IVGFImageProcessor(do_pad=False), rgb, annotations=[{"annotations": objects}])["labels"][0]
    messages = " ".join(str(w.message) for w in record)
    assert "zero-size" in messages and "outside" in messages
    assert target["class_labels"].tolist() == [1, 4]
    torch.testing.assert_close(target["boxes"][0], torch.tensor([45 / W, 35 / H, 10 / W, 10 / H]))
    empty = run(IVGFImageProcessor(), rgb, annotations=[{"annotations": []}])["labels"][0]
    assert empty["boxes"].shape == (0, 4) and empty["class_labels"].shape == (0,)


@pytest.mark.parametrize(
    "objects, message",
    [
        ([{"bbox": [1, 1, -3, 4], "category_id": 0}], "negative width"),
        ([{"bbox": [1, 1, 3, 4], "category_id": -1}], "non-negative integer"),
        ([{"bbox": [1, 1, 3, 4], "category_id": 1.5}], "non-negative integer"),
        ([{"bbox": [1, 1, 3], "category_id": 0}], r"\[x, y, w, h\]"),
        ([{"bbox": [1, float("nan"), 3, 4], "category_id": 0}], "non-finite"),
        ([{"category_id": 0}], "'bbox' and 'category_id'"),
    ],
)
def test_bad_annotations_raise(pair, objects, message):
    rgb, _, _ = pair
    with pytest.raises(ValueError, match=message):
        IVGFImageProcessor()(rgb, annotations=[{"annotations": objects}])


# ------------------------------------------------------------------------------------------------ post-processing
@pytest.mark.parametrize(
    "size, block",
    [(None, 5), ({"shortest_edge": 60}, 5), ({"shortest_edge": 30, "longest_edge": 32}, 8)],  # 1x, 2x, 0.5x
)
def test_post_process_semantic_segmentation_recovers_labels(size, block):
    grid = torch.arange(6 * 8).reshape(6, 8) % 4  # a blocky label map: 4 classes in block x block tiles
    labels = grid.repeat_interleave(block, 0).repeat_interleave(block, 1).numpy().astype(np.uint8)
    height, width = labels.shape
    processor = IVGFImageProcessor(do_resize=size is not None, size=size)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    processed = run(processor, image, segmentation_maps=labels)["labels"]
    logits = torch.nn.functional.one_hot(processed.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    recovered = processor.post_process_semantic_segmentation(
        SimpleNamespace(logits=logits), target_sizes=[(height, width)]
    )
    assert recovered[0].dtype == torch.int64
    assert torch.equal(recovered[0], torch.from_numpy(labels).long())
    at_logits_size = processor.post_process_semantic_segmentation(logits)
    assert at_logits_size[0].shape == logits.shape[-2:]


def test_post_process_semantic_segmentation_rejects_small_logits():
    processor = IVGFImageProcessor(do_resize=True, size={"shortest_edge": 64})
    with pytest.raises(ValueError, match="padded input size"):
        processor.post_process_semantic_segmentation(torch.zeros(1, 3, 16, 16), target_sizes=[(40, 50)])
    with pytest.raises(ValueError, match="target_sizes has 2 entries"):
        processor.post_process_semantic_segmentation(torch.zeros(1, 3, 96, 96), target_sizes=[(40, 50), (40, 50)])


def test_post_process_object_detection_rescales_known_box():
    # original 50 x 100 -> resized 64 x 128 (x1.28) -> padded 64 x 128
    processor = IVGFImageProcessor(do_resize=True, size={"shortest_edge": 64, "longest_edge": 256})
    detections = [
        {
            "boxes": torch.tensor([[12.8, 6.4, 38.4, 25.6], [0.0, 0.0, 10.0, 10.0], [100.0, 50.0, 140.0, 70.0]]),
            "scores": torch.tensor([0.9, 0.3, 0.8]),
            "labels": torch.tensor([2, 1, 0]),
        }
    ]
    results = processor.post_process_object_detection(
        SimpleNamespace(detections=detections), threshold=0.5, target_sizes=[(50, 100)]
    )
    assert set(results[0]) == {"scores", "labels", "boxes"}
    assert results[0]["labels"].tolist() == [2, 0]
    torch.testing.assert_close(results[0]["scores"], torch.tensor([0.9, 0.8]))
    # second kept box is clipped to the image (x1 = 109.4 -> 100, y1 = 54.7 -> 50)
    torch.testing.assert_close(
        results[0]["boxes"], torch.tensor([[10.0, 5.0, 30.0, 20.0], [78.125, 39.0625, 100.0, 50.0]])
    )
    as_tensor = processor.post_process_object_detection(detections, target_sizes=torch.tensor([[50, 100]]))
    assert torch.equal(as_tensor[0]["boxes"], results[0]["boxes"])
    unscaled = processor.post_process_object_detection(detections, threshold=0.0)
    assert torch.equal(unscaled[0]["boxes"], detections[0]["boxes"])


def test_post_process_detection_box_round_trip(pair):
    """A box through preprocessing (normalised cxcywh) and back through post-processing is unchanged."""
    rgb, _, _ = pair
    processor = IVGFImageProcessor(do_resize=True, size={"shortest_edge": 56, "longest_edge": 100})
    out = run(processor, rgb, annotations=[{"annotations": [{"bbox": [7, 3, 20, 15], "category_id": 1}]}])
    padded_h, padded_w = out["pixel_values"].shape[-2:]
    cx, cy, w, h = (out["labels"][0]["boxes"][0] * torch.tensor([padded_w, padded_h, padded_w, padded_h])).tolist()
    xyxy = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    back = processor.post_process_object_detection(
        [{"boxes": xyxy, "scores": torch.tensor([1.0]), "labels": torch.tensor([1])}], target_sizes=[(H, W)]
    )
    torch.testing.assert_close(back[0]["boxes"], torch.tensor([[7.0, 3.0, 27.0, 18.0]]), rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------- errors
def test_input_errors(pair):
    rgb, ir, mask = pair
    processor = IVGFImageProcessor()
    cases = [
        (dict(), "both are None"),
        (dict(images=[rgb, rgb], images_ir=[ir]), "2 visible image"),
        (dict(images=rgb, images_ir=ir[:30]), r"Pair 0: visible image is \(40, 50\).*\(30, 50\)"),
        (dict(images=rgb, segmentation_maps=mask[:, :20]), r"segmentation_maps\[0\] is \(40, 20\)"),
        (dict(images=[rgb, rgb], segmentation_maps=[mask]), "1 segmentation map"),
        (dict(images=rgb, annotations=[{"annotations": []}] * 2), "2 annotation dict"),
        (dict(images=rgb[:, :, :2]), "no channel dimension"),
        (dict(images=np.dstack([rgb, ir]), images_ir=ir), r"images\[0\] has 4 channels.*only split"),
        (dict(images_ir=np.dstack([rgb, ir])), r"images_ir\[0\] has 4 channels"),
        (dict(images=[np.dstack([rgb, ir]), rgb]), "all RGBT or all visible"),
        (dict(images=[]), "images is empty"),
        (dict(images_ir=[]), "images_ir is empty"),
        (dict(images=np.zeros((0, 5, 3), np.uint8)), "empty"),
        (dict(images=rgb, segmentation_maps=mask.astype(np.float32) + 0.5), "non-integer"),
        (dict(images=rgb, segmentation_maps=PIL.Image.fromarray(rgb)), "mode 'RGB'"),
        (dict(images=rgb, segmentation_maps=mask, annotations=[{"annotations": []}]), "either"),
        (dict(images=rgb, return_tensors="np"), "return_tensors"),
        (dict(images=[rgb, rgb[:10]], do_pad=False, return_tensors="pt"), "different sizes"),
        (dict(images=rgb, size={"width": 3}), "keys"),
        (dict(images=rgb, do_resize=True), "needs size"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            processor(**kwargs)
    with pytest.raises(TypeError, match="must be a PIL image"):
        processor("image.png")
    with pytest.raises(TypeError):
        processor(rgb, do_resise=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(resample=1), "resample"),
        (dict(size={"shortest_edge": 0}), "positive integer"),
        (dict(size={"shortest_edge": 64, "longest_edge": 32}), "longest_edge"),
        (dict(ir_num_channels=2), "ir_num_channels"),
        (dict(image_mean=[0.5, 0.5]), "image_mean must have 1 or 3 values"),
        (dict(ir_image_std=[0.0]), "ir_image_std must be positive"),
        (dict(size_divisor=0), "size_divisor"),
    ],
)
def test_invalid_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IVGFImageProcessor(**kwargs)


def test_float_image_in_unit_range_warns(pair):
    rgb, _, _ = pair
    with pytest.warns(UserWarning, match="do_rescale=False"):
        IVGFImageProcessor()(rgb.astype(np.float32) / 255)


# -------------------------------------------------------------------------------------------------- save and load
def test_valid_kwargs_match_constructor():
    parameters = set(inspect.signature(IVGFImageProcessor.__init__).parameters) - {"self", "kwargs"}
    assert parameters == set(IVGFImageProcessor.valid_kwargs.__annotations__)


def test_save_pretrained_round_trip(tmp_path, pair):
    rgb, ir, mask = pair
    processor = IVGFImageProcessor(
        do_resize=True,
        size={"shortest_edge": 48, "longest_edge": 80},
        resample=3,
        ir_image_mean=0.4,
        ir_image_std=0.25,
        ir_num_channels=3,
        size_divisor=16,
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["ir_image_mean"] == [0.4] and saved["size"] == {"shortest_edge": 48, "longest_edge": 80}
    loaded = IVGFImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    a, b = run(processor, rgb, ir, segmentation_maps=mask), run(loaded, rgb, ir, segmentation_maps=mask)
    assert all(torch.equal(a[key], b[key]) for key in ("pixel_values", "pixel_values_ir", "labels"))
    assert IVGFImageProcessor.from_pretrained(tmp_path, size_divisor=64).size_divisor == 64


CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["ivgf_hf"] = None  # the package must not be importable: code comes from the saved folder
    import numpy as np, torch
    from transformers import AutoImageProcessor

    folder, inputs, annotations, result = sys.argv[1:5]
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
    data = np.load(inputs)
    seg = processor(list(data["rgb"]), list(data["ir"]), segmentation_maps=list(data["mask"]), return_tensors="pt")
    det = processor(list(data["rgb"]), list(data["ir"]), annotations=json.load(open(annotations)),
                    return_tensors="pt")
    logits = torch.nn.functional.one_hot(seg["labels"].clamp(max=4), 5).permute(0, 3, 1, 2).float()
    post = processor.post_process_semantic_segmentation(logits, target_sizes=[data["rgb"].shape[1:3]] * 2)
    torch.save({"seg": dict(seg), "det": dict(det), "post": post}, result)
    """
)


@pytest.mark.slow
def test_remote_code_load_in_fresh_process(tmp_path, pair, monkeypatch):
    rgb, ir, mask = pair
    monkeypatch.setattr(IVGFImageProcessor, "_auto_class", IVGFImageProcessor._auto_class)
    IVGFImageProcessor.register_for_auto_class()
    processor = IVGFImageProcessor(do_resize=True, size={"shortest_edge": 48, "longest_edge": 80}, ir_num_channels=3)
    folder = tmp_path / "ivgf-processor"
    processor.save_pretrained(folder)
    assert sorted(os.listdir(folder)) == ["image_processing_ivgf.py", "preprocessor_config.json"]
    inputs, annotations = tmp_path / "inputs.npz", tmp_path / "annotations.json"
    np.savez(inputs, rgb=np.stack([rgb, rgb[::-1]]), ir=np.stack([ir, ir[::-1]]), mask=np.stack([mask, mask[::-1]]))
    boxes = [{"image_id": i, "annotations": [{"bbox": [3 + i, 4, 20, 11], "category_id": i}]} for i in range(2)]
    annotations.write_text(json.dumps(boxes))
    script, result = tmp_path / "child.py", tmp_path / "result.pt"
    script.write_text(CHILD)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    completed = subprocess.run(
        [sys.executable, str(script), str(folder), str(inputs), str(annotations), str(result)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    child = torch.load(result, weights_only=False)
    seg = run(processor, [rgb, rgb[::-1]], [ir, ir[::-1]], segmentation_maps=[mask, mask[::-1]])
    det = run(processor, [rgb, rgb[::-1]], [ir, ir[::-1]], annotations=boxes)
    for key in ("pixel_values", "pixel_values_ir", "labels"):
        assert torch.equal(child["seg"][key], seg[key]), key
    for mine, theirs in zip(det["labels"], child["det"]["labels"], strict=True):
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    logits = torch.nn.functional.one_hot(seg["labels"].clamp(max=4), 5).permute(0, 3, 1, 2).float()
    post = processor.post_process_semantic_segmentation(logits, target_sizes=[(H, W)] * 2)
    assert all(torch.equal(a, b) for a, b in zip(post, child["post"], strict=True))
