"""`ivgf predict` and the drawing helpers: PNGs for pairs, folders and RGB+T files; no silent overwrites; clear
errors for unpaired, unreadable or mismatched inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from ivgf_hf import get_config
from ivgf_hf.cli import main
from ivgf_hf.data import M3FD_CLASSES, M3FD_PALETTE, MFNET_CLASSES, MFNET_PALETTE, id2label, synth_scene
from ivgf_hf.inference import load_model_and_processor, segment
from ivgf_hf.modeling import IVGFForSemanticSegmentation, IVGFImageProcessor
from ivgf_hf.modeling.detection_ivgf import IVGFForObjectDetection
from ivgf_hf.visualize import colorize, draw_detections, overlay, palette_for, save_png

HEIGHT, WIDTH = 64, 96


@pytest.fixture(scope="module")
def segmentation_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segmentation_model")
    torch.manual_seed(0)
    IVGFForSemanticSegmentation(get_config("tiny", id2label=id2label(MFNET_CLASSES))).save_pretrained(folder)
    IVGFImageProcessor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def scenes():
    return [synth_scene(0, index, HEIGHT, WIDTH, night=bool(index % 2)) for index in range(2)]


def write_pairs(folder, scenes, names=("a", "b")):
    (folder / "vis").mkdir(parents=True)
    (folder / "ir").mkdir()
    for name, scene in zip(names, scenes):
        Image.fromarray(scene.visible).save(folder / "vis" / f"{name}.png")
        Image.fromarray(scene.infrared).save(folder / "ir" / f"{name}.png")
    return folder / "vis", folder / "ir"


def colours(path):
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return {tuple(int(v) for v in colour) for colour in np.unique(pixels, axis=0)}


def test_predict_pair_writes_mask_and_overlay(segmentation_model, scenes, tmp_path, capsys):
    visible_dir, infrared_dir = write_pairs(tmp_path, scenes)
    out = tmp_path / "out"
    argv = [
        "predict",
        "--model",
        str(segmentation_model),
        "--visible",
        str(visible_dir / "a.png"),
        "--infrared",
        str(infrared_dir / "a.png"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.png", "a_overlay.png"]
    assert "wrote 2 PNG file(s) for 1 pair(s)" in capsys.readouterr().out

    model, processor = load_model_and_processor(str(segmentation_model))
    labels = segment(model, processor, scenes[0].visible, scenes[0].infrared).numpy()
    with Image.open(out / "a_mask.png") as mask:
        np.testing.assert_array_equal(np.asarray(mask), colorize(labels, MFNET_PALETTE))
    assert colours(out / "a_mask.png") <= set(MFNET_PALETTE)
    with Image.open(out / "a_overlay.png") as picture:
        assert picture.size == (WIDTH, HEIGHT) and picture.mode == "RGB"

    before = (out / "a_mask.png").read_bytes()
    with pytest.raises(SystemExit, match=r"a_mask\.png.*already exist.*--overwrite"):
        main(argv)
    assert (out / "a_mask.png").read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0


def test_predict_folders_and_rgbt_files(segmentation_model, scenes, tmp_path):
    visible_dir, infrared_dir = write_pairs(tmp_path, scenes)
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                "--model",
                str(segmentation_model),
                "--visible-dir",
                str(visible_dir),
                "--infrared-dir",
                str(infrared_dir),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png"]

    rgbt_dir = tmp_path / "rgbt"
    rgbt_dir.mkdir()
    Image.fromarray(np.dstack([scenes[0].visible, scenes[0].infrared])).save(rgbt_dir / "a.png")
    assert (
        main(
            [
                "predict",
                "--model",
                str(segmentation_model),
                "--rgbt-dir",
                str(rgbt_dir),
                "--out",
                str(tmp_path / "rgbt_out"),
            ]
        )
        == 0
    )
    # the 4-channel file gives the same mask as the pair it was packed from
    assert (tmp_path / "rgbt_out" / "a_mask.png").read_bytes() == (out / "a_mask.png").read_bytes()


def test_predict_names_unpaired_files(segmentation_model, scenes, tmp_path):
    visible_dir, infrared_dir = write_pairs(tmp_path, scenes)
    (visible_dir / "b.png").rename(visible_dir / "c.png")
    with pytest.raises(SystemExit) as error:
        main(
            [
                "predict",
                "--model",
                str(segmentation_model),
                "--visible-dir",
                str(visible_dir),
                "--infrared-dir",
                str(infrared_dir),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    message = str(error.value)
    assert "unpaired" in message and "c.png" in message and "b.png" in message
    assert not (tmp_path / "out").exists()


def test_predict_clear_errors_for_bad_inputs(segmentation_model, scenes, tmp_path):
    visible_dir, infrared_dir = write_pairs(tmp_path, scenes)
    model = ["predict", "--model", str(segmentation_model), "--out", str(tmp_path / "out")]
    (infrared_dir / "a.png").write_bytes(b"not an image")
    with pytest.raises(SystemExit, match=r"cannot read .*ir/a\.png"):
        main(model + ["--visible", str(visible_dir / "a.png"), "--infrared", str(infrared_dir / "a.png")])
    Image.fromarray(scenes[1].infrared[:32]).save(infrared_dir / "b.png")
    with pytest.raises(SystemExit, match=r"b\.png is 96x64 but .*b\.png is 96x32"):
        main(model + ["--visible", str(visible_dir / "b.png"), "--infrared", str(infrared_dir / "b.png")])
    with pytest.raises(SystemExit, match="has mode RGB .*4 channels"):
        main(model + ["--rgbt", str(visible_dir / "b.png")])
    with pytest.raises(SystemExit, match="--visible and --infrared go together"):
        main(model + ["--visible", str(visible_dir / "b.png")])
    with pytest.raises(SystemExit, match="exactly one input mode"):
        main(model + ["--rgbt", str(visible_dir / "b.png"), "--rgbt-dir", str(visible_dir)])
    with pytest.raises(SystemExit, match="does not exist"):
        main(model + ["--rgbt", str(tmp_path / "missing.png")])


def test_predict_names_the_broken_file_and_damaged_weights(segmentation_model, scenes, tmp_path, capsys):
    visible_dir, infrared_dir = write_pairs(tmp_path, scenes)
    visible = visible_dir / "a.png"
    visible.write_bytes(visible.read_bytes()[:200])  # a valid header, truncated pixel data
    argv = [
        "predict",
        "--model",
        str(segmentation_model),
        "--out",
        str(tmp_path / "out"),
        "--visible",
        str(visible),
        "--infrared",
        str(infrared_dir / "a.png"),
    ]
    with pytest.raises(SystemExit, match=r"cannot decode .*vis/a\.png: image file is truncated") as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "ir/a.png" not in str(exit_info.value)

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in segmentation_model.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    capsys.readouterr()
    argv = [
        "predict",
        "--model",
        str(damaged),
        "--out",
        str(tmp_path / "out"),
        "--visible",
        str(visible_dir / "b.png"),
        "--infrared",
        str(infrared_dir / "b.png"),
    ]
    with pytest.raises(SystemExit, match=r"weights of .*damaged are damaged or incomplete") as exit_info:
        main(argv)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("ivgf predict: ") and "Traceback" not in error


def test_predict_tiny_and_elongated_images(segmentation_model, tmp_path):
    """The processor pads to the 48 px the model needs, so such images are predicted at their own size."""
    for name, (height, width) in {"dot": (1, 1), "strip": (16, 400)}.items():
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(tmp_path / f"{name}_vis.png")
        Image.fromarray(np.zeros((height, width), np.uint8)).save(tmp_path / f"{name}_ir.png")
        assert (
            main(
                [
                    "predict",
                    "--model",
                    str(segmentation_model),
                    "--out",
                    str(tmp_path / "out"),
                    "--visible",
                    str(tmp_path / f"{name}_vis.png"),
                    "--infrared",
                    str(tmp_path / f"{name}_ir.png"),
                ]
            )
            == 0
        )
        with Image.open(tmp_path / "out" / f"{name}_vis_mask.png") as mask:
            assert mask.size == (width, height)


def test_predict_detection_draws_boxes(scenes, tmp_path):
    folder = tmp_path / "detector"
    torch.manual_seed(0)
    config = get_config(
        "tiny",
        id2label=id2label(M3FD_CLASSES),
        fpn_channels=32,
        rpn_pre_nms_top_n_test=50,
        rpn_post_nms_top_n_test=20,
        box_detections_per_image=5,
    )
    IVGFForObjectDetection(config).save_pretrained(folder)
    visible_dir, infrared_dir = write_pairs(tmp_path, scenes[:1], names=("a",))
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                "--model",
                str(folder),
                "--visible",
                str(visible_dir / "a.png"),
                "--infrared",
                str(infrared_dir / "a.png"),
                "--out",
                str(out),
                "--threshold",
                "0",
            ]
        )
        == 0
    )
    assert [p.name for p in out.iterdir()] == ["a_boxes.png"]
    with pytest.raises(SystemExit, match="segmentation models only"):
        main(
            [
                "predict",
                "--model",
                str(folder),
                "--visible",
                str(visible_dir / "a.png"),
                "--infrared",
                str(infrared_dir / "a.png"),
                "--out",
                str(out),
                "--tta-flip",
            ]
        )


def test_palettes_follow_the_class_names():
    assert palette_for(list(MFNET_CLASSES)) == [tuple(c) for c in MFNET_PALETTE]
    assert palette_for([name.upper() for name in M3FD_CLASSES]) == [tuple(c) for c in M3FD_PALETTE]
    other = palette_for(["background", "crack", "rust", "stain"])
    assert other[0] == (0, 0, 0) and len(set(other)) == 4


def test_colorize_and_overlay():
    mask = np.array([[0, 1], [2, 255]])
    np.testing.assert_array_equal(
        colorize(mask, MFNET_PALETTE), [[MFNET_PALETTE[0], MFNET_PALETTE[1]], [MFNET_PALETTE[2], (255, 255, 255)]]
    )
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    blended = overlay(image, mask[:, :1].repeat(2, 1), MFNET_PALETTE, alpha=0.5, transparent_ids=[0])
    np.testing.assert_array_equal(blended[0], [[100, 100, 100]] * 2)  # class 0 is transparent
    np.testing.assert_array_equal(blended[1], [[82, 82, 50]] * 2)  # (100 + person's (64, 64, 0)) / 2


def test_draw_detections_outlines_boxes_in_the_class_colour():
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    picture = np.asarray(draw_detections(image, [[10, 20, 50, 35]], [1], [0.87], list(M3FD_CLASSES)))
    car = M3FD_PALETTE[1]
    assert tuple(picture[35, 30]) == car and tuple(picture[28, 50]) == car  # bottom and right edges
    assert tuple(picture[28, 30]) == (0, 0, 0)  # inside stays untouched
    assert (picture[:20] != 0).any()  # the "Car 0.87" tag above the box
    with pytest.raises(ValueError, match="not class ids"):
        draw_detections(image, [[0, 0, 5, 5]], [6], [0.5], list(M3FD_CLASSES))


def test_save_png_never_overwrites_without_permission(tmp_path):
    path = save_png(np.zeros((2, 2, 3), dtype=np.uint8), tmp_path / "sub" / "x.png")
    with pytest.raises(FileExistsError, match="x.png already exists"):
        save_png(np.ones((2, 2, 3), dtype=np.uint8), path)
    save_png(np.ones((2, 2, 3), dtype=np.uint8), path, overwrite=True)
    with Image.open(path) as image:
        assert np.asarray(image).max() == 1
