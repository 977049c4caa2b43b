"""The converter and the encoder reproduce tensors produced by the ORIGINAL InfMAE / ConvMAE code.

Fixtures (tests/fixtures/*_tiny_parity.safetensors) were made by running the original model classes on a tiny
configuration with perturbed weights: ``state.*`` is the pretraining state dict, ``seg_state.*`` the extra tensors
of ConvMAE's segmentation wrapper (its other weights equal ``state.*``), ``out.*`` / ``seg_out.*`` the outputs.
"""

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ivgf_hf import get_config
from ivgf_hf.conversion import (
    CheckpointFormatError,
    build_encoder,
    checkpoint_origin,
    convert_mae_checkpoint,
    encoder_parameter_count,
    load_checkpoint_file,
    load_original_encoder,
)
from ivgf_hf.modeling.encoder_ivgf import get_2d_sincos_pos_embed, interpolate_pos_embed

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = ["infmae", "convmae"]
TOLERANCE = 1e-5


class UntrustedObject:
    """Stands for an arbitrary pickled object that weights_only loading must refuse."""


def load_fixture(name):
    path = FIXTURES / f"{name}_tiny_parity.safetensors"
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    original = json.loads(metadata["tiny_config"])
    kwargs = {
        key: original[key]
        for key in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias")
    }
    return tensors, kwargs, json.loads(metadata["seg_config"])


def section(tensors, prefix):
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def segmentation_state(tensors):
    state = section(tensors, "state.")
    encoder_keys = {
        k: v
        for k, v in state.items()
        if k.startswith(("patch_embed1", "patch_embed2", "patch_embed3", "patch_embed4", "blocks", "pos_embed"))
    }
    return {**encoder_keys, **section(tensors, "seg_state.")}


def max_error(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", MODELS)
def test_pretraining_checkpoint_parity(name):
    tensors, kwargs, _ = load_fixture(name)
    checkpoint = {"model": section(tensors, "state."), "epoch": torch.tensor(399)}
    encoder, result = load_original_encoder(checkpoint, modality="visible", return_report=True, **kwargs)
    with torch.no_grad():
        output = encoder(tensors["input"], output_hidden_states=True)
    f1, f2, f3, f4 = output.feature_maps
    assert max_error(f1, tensors["out.stage1"]) <= TOLERANCE
    assert max_error(f2, tensors["out.stage2"]) <= TOLERANCE
    prenorm = tensors["out.stage3_prenorm"]
    assert max_error(output.hidden_states[-1], prenorm) <= TOLERANCE
    assert max_error(f3, prenorm.transpose(1, 2).reshape(f3.shape)) <= TOLERANCE
    assert f4.shape[-2:] == ((f3.shape[-2] - 3) // 2 + 1,) * 2
    # every checkpoint key is either used or reported as dropped
    used = set(result.state_dict)
    assert set(checkpoint["model"]) == used | set(result.dropped_keys)
    assert "mask_token" in result.dropped_keys and "norm.weight" in result.dropped_keys
    assert any(k.startswith("decoder_blocks.") for k in result.dropped_keys)
    if name == "infmae":
        assert "patch_embed.proj.weight" in result.dropped_keys
    assert "stage4.conv.weight" in result.missing_keys
    assert "stage4.conv.weight" in result.report()


@pytest.mark.parametrize("name", MODELS)
def test_segmentation_backbone_parity(name):
    tensors, kwargs, seg = load_fixture(name)
    state = segmentation_state(tensors)
    assert any(k.endswith("relative_position_index") for k in state)
    encoder, result = load_original_encoder(
        state,
        modality="visible",
        return_report=True,
        init_values=seg["init_values"],
        use_rel_pos_bias=seg["use_rel_pos_bias"],
        **kwargs,
    )
    assert result.source_format == "segmentation_backbone"
    assert result.missing_keys == []
    assert all(k.endswith("relative_position_index") for k in result.dropped_keys)
    with torch.no_grad():
        maps = encoder(tensors["input"]).feature_maps
    for index, feature_map in enumerate(maps):
        assert max_error(feature_map, tensors[f"seg_out.{index}"]) <= TOLERANCE, index


@pytest.mark.parametrize("name", MODELS)
def test_pos_embed_resize_matches_original(name):
    tensors, _, _ = load_fixture(name)
    resized = interpolate_pos_embed(tensors["state.pos_embed"], 16, 16)
    assert max_error(resized, tensors["pos_embed_interp_16x16"]) <= TOLERANCE
    config = get_config("tiny", pretrain_image_size=256, layer_scale_init_value=None, use_relative_position_bias=False)
    modality = "infrared" if name == "infmae" else "visible"
    result = convert_mae_checkpoint({"model": section(tensors, "state.")}, config, modality)
    assert max_error(result.state_dict["pos_embed"], tensors["pos_embed_interp_16x16"]) <= TOLERANCE
    assert result.resized["pos_embed"] == ((1, 64, 64), (1, 256, 64))


def test_sincos_initialisation_equals_pretraining_table():
    tensors, _, _ = load_fixture("convmae")
    assert max_error(get_2d_sincos_pos_embed(64, 8, 8), tensors["state.pos_embed"]) <= 1e-6


@pytest.mark.parametrize("size", [(96, 160), (176, 128)])
def test_any_input_size_divisible_by_16(size):
    """Other sizes interpolate the position embedding and relative position tables; the path is the same."""
    tensors, kwargs, seg = load_fixture("infmae")
    encoder = load_original_encoder(
        segmentation_state(tensors), modality="visible", init_values=1.0, use_rel_pos_bias=True, **kwargs
    )
    with torch.no_grad():
        maps = encoder(torch.randn(1, 3, *size)).feature_maps
    h, w = size
    assert [m.shape[-2:] for m in maps] == [
        (h // 4, w // 4),
        (h // 8, w // 8),
        (h // 16, w // 16),
        ((h // 16 - 3) // 2 + 1, (w // 16 - 3) // 2 + 1),
    ]
    assert all(torch.isfinite(m).all() for m in maps)


def test_single_channel_infrared_stem_sums_kernels():
    tensors, kwargs, _ = load_fixture("infmae")
    checkpoint = section(tensors, "state.")
    rgb = load_original_encoder(checkpoint, modality="infrared", **kwargs)
    grey = load_original_encoder(checkpoint, modality="infrared", num_channels=1, **kwargs)
    image = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = rgb(image.expand(-1, 3, -1, -1)).feature_maps
        actual = grey(image).feature_maps
    for a, b in zip(actual[:3], expected[:3]):  # F4's projection is not in MAE checkpoints: fresh random init
        assert max_error(a, b) <= 1e-4


def test_checkpoint_file_loading_is_safe(tmp_path):
    tensors, kwargs, _ = load_fixture("convmae")
    path = tmp_path / "checkpoint-399.pth"
    torch.save({"model": section(tensors, "state."), "args": argparse.Namespace(lr=1e-3), "epoch": 399}, path)
    loaded = load_checkpoint_file(path)
    assert isinstance(loaded["args"], argparse.Namespace)

    evil = tmp_path / "evil.pth"
    torch.save({"model": UntrustedObject()}, evil)
    with pytest.raises(CheckpointFormatError, match="weights_only"):
        load_checkpoint_file(evil)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint_file(tmp_path / "missing.pth")


def test_mmseg_checkpoint_with_backbone_prefix():
    tensors, kwargs, seg = load_fixture("convmae")
    state = {f"backbone.{k}": v for k, v in segmentation_state(tensors).items()}
    state["decode_head.conv_seg.weight"] = torch.zeros(150, 64, 1, 1)
    config = get_config("tiny", pretrain_image_size=128)
    result = convert_mae_checkpoint({"state_dict": state, "meta": {}}, config, "visible", prefix="visible_encoder.")
    assert "decode_head.conv_seg.weight" in result.dropped_keys
    assert all(key.startswith("visible_encoder.") for key in result.state_dict)
    assert result.missing_keys == []


def test_unknown_keys_wrong_shapes_and_other_formats_are_refused():
    tensors, kwargs, _ = load_fixture("convmae")
    state = section(tensors, "state.")
    config = get_config("tiny", pretrain_image_size=128)
    with pytest.raises(CheckpointFormatError, match="unknown checkpoint keys.*head.weight"):
        convert_mae_checkpoint({**state, "head.weight": torch.zeros(3)}, config, "visible")
    wrong = dict(state)
    wrong["blocks3.0.attn.qkv.weight"] = torch.zeros(10, 64)
    with pytest.raises(
        CheckpointFormatError, match=r"blocks3.0.attn.qkv.weight: checkpoint \(10, 64\) vs model \(192, 64\)"
    ):
        convert_mae_checkpoint(wrong, config, "visible")
    with pytest.raises(CheckpointFormatError, match="neither"):
        convert_mae_checkpoint({"conv1.weight": torch.zeros(3)}, config, "visible")
    with pytest.raises(CheckpointFormatError, match="patch_embed1.proj.weight: checkpoint"):
        convert_mae_checkpoint(state, get_config("tiny", hidden_sizes=(16, 48, 64)), "visible")


def test_base_encoder_parameter_count():
    encoder = build_encoder(get_config("base"), "visible", device="meta")
    assert encoder_parameter_count(encoder) == 84_453_760
    assert encoder_parameter_count(encoder) + 2 * 768 == 84_455_296  # + the final norm the original counts


def test_cli_convert_writes_safetensors_and_refuses_to_overwrite(tmp_path, capsys):
    from safetensors.torch import load_file as read

    from ivgf_hf.cli import main

    tensors, _, _ = load_fixture("infmae")
    checkpoint = tmp_path / "infmae.pth"
    torch.save({"model": section(tensors, "state."), "args": argparse.Namespace(epochs=400)}, checkpoint)
    out = tmp_path / "infrared.safetensors"
    args = ["convert", str(checkpoint), "--modality", "infrared", "--preset", "tiny", "--out", str(out)]
    assert main(args + ["--num-channels", "1"]) == 0
    report = capsys.readouterr().out
    assert "patch_embed.proj.weight" in report and "stage4.conv.weight" in report
    weights = read(str(out))
    assert weights["patch_embed1.proj.weight"].shape == (32, 1, 4, 4)
    assert weights["pos_embed"].shape == (1, 16, 64)  # tiny preset: 64 px / 16 -> 4 x 4 grid
    with pytest.raises(SystemExit, match="--overwrite"):
        main(args)


def test_non_finite_weights_are_refused_by_name(tmp_path, capsys):
    from ivgf_hf.cli import main

    state = section(load_fixture("infmae")[0], "state.")
    config = get_config("tiny", pretrain_image_size=128)
    broken = dict(state)
    broken["blocks3.1.mlp.fc2.weight"] = state["blocks3.1.mlp.fc2.weight"].clone()
    broken["blocks3.1.mlp.fc2.weight"][0, 0] = float("inf")
    with pytest.raises(
        CheckpointFormatError,
        match=r"1 checkpoint tensor\(s\) hold NaN or infinite values: "
        r"blocks3.1.mlp.fc2.weight;",
    ):
        convert_mae_checkpoint(broken, config, "infrared")
    checkpoint = tmp_path / "nan.pth"
    torch.save({"model": {key: torch.full_like(value, float("nan")) for key, value in state.items()}}, checkpoint)
    out = tmp_path / "out.safetensors"
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(checkpoint), "--modality", "infrared", "--preset", "tiny", "--out", str(out)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("ivgf convert: 67 checkpoint tensor(s) hold NaN") and "blocks1.0.attn.bias" in error
    assert "Traceback" not in error and not out.exists()


def test_the_checkpoint_origin_is_reported_and_the_other_modality_refused(tmp_path, capsys):
    from ivgf_hf.cli import main

    infmae, convmae = (section(load_fixture(name)[0], "state.") for name in MODELS)
    config = get_config("tiny", pretrain_image_size=128)
    assert checkpoint_origin({"model": infmae})[0] == "infrared"
    assert checkpoint_origin({"model": convmae})[0] == "visible"
    named = {"model": convmae, "args": argparse.Namespace(model="convmae_convvit_base_patch16", data_path="/imagenet")}
    modality, description = checkpoint_origin(named)
    assert modality == "visible" and "'convmae_convvit_base_patch16'" in description and "'/imagenet'" in description
    encoder_only = {k: v for k, v in convmae.items() if not k.startswith(("decoder_", "mask_token"))}
    modality, description = checkpoint_origin(encoder_only)
    assert modality is None and "cannot be told apart" in description
    contradicting = {"model": infmae, "args": argparse.Namespace(model="convmae_convvit_base_patch16")}
    assert checkpoint_origin(contradicting)[0] is None

    with pytest.raises(CheckpointFormatError, match="for the infrared encoder .*patch_embed.proj.*not the visible"):
        convert_mae_checkpoint({"model": infmae}, config, "visible")
    result = convert_mae_checkpoint({"model": infmae}, config, "visible", check_origin=False)
    assert "InfMAE pretraining" in result.origin and "origin: " in result.report()
    assert "cannot be told apart" in convert_mae_checkpoint(encoder_only, config, "infrared").origin

    checkpoint = tmp_path / "infmae.pth"
    torch.save({"model": infmae, "args": argparse.Namespace(model="infmae_vit_base_patch16")}, checkpoint)
    argv = ["convert", str(checkpoint), "--modality", "visible", "--preset", "tiny", "--out", str(tmp_path / "v.st")]
    with pytest.raises(SystemExit, match="'infmae_vit_base_patch16'.*--ignore-origin"):
        main(argv)
    assert main(argv + ["--ignore-origin"]) == 0
    assert "origin: saved arguments name the model 'infmae_vit_base_patch16'" in capsys.readouterr().out


def test_unreadable_checkpoint_files_are_one_line_errors(tmp_path, capsys):
    from ivgf_hf.cli import main

    good = tmp_path / "good.pth"
    torch.save({"model": section(load_fixture("infmae")[0], "state.")}, good)
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "truncated.pth").write_bytes(good.read_bytes()[:1000])
    fixture = FIXTURES / "infmae_tiny_parity.safetensors"
    (tmp_path / "truncated.safetensors").write_bytes(fixture.read_bytes()[:500])
    expected = {
        "empty.pth": r"empty.pth is empty \(0 bytes\)",
        "truncated.pth": "truncated.pth could not be read",
        "missing.pth": "checkpoint not found: .*missing.pth",
        "truncated.safetensors": "truncated.safetensors is not a complete safetensors file",
    }
    for name, message in expected.items():
        with pytest.raises(SystemExit, match=message) as exit_info:
            main(
                [
                    "convert",
                    str(tmp_path / name),
                    "--modality",
                    "infrared",
                    "--preset",
                    "tiny",
                    "--out",
                    str(tmp_path / "out.safetensors"),
                ]
            )
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith("ivgf convert: ") and "Traceback" not in error


def test_load_foundation_weights_into_an_ivgf_model():
    from ivgf_hf.conversion import load_foundation_weights
    from ivgf_hf.modeling import IVGFForSemanticSegmentation

    infmae, _, _ = load_fixture("infmae")
    convmae, _, _ = load_fixture("convmae")
    model = IVGFForSemanticSegmentation(get_config("tiny", pretrain_image_size=128, num_labels=3))
    results = load_foundation_weights(
        model, infrared_checkpoint={"model": section(infmae, "state.")}, visible_checkpoint=section(convmae, "state.")
    )
    assert set(results) == {"infrared", "visible"}
    summed = section(infmae, "state.")["patch_embed1.proj.weight"].sum(1, keepdim=True)
    assert torch.allclose(model.ivgf.infrared_encoder.patch_embed1.proj.weight, summed)
    assert torch.equal(
        model.ivgf.visible_encoder.blocks3[1].mlp.fc2.weight, section(convmae, "state.")["blocks3.1.mlp.fc2.weight"]
    )
    with pytest.raises(ValueError, match="no infrared encoder"):
        load_foundation_weights(
            IVGFForSemanticSegmentation(get_config("tiny", modalities="visible")), infrared_checkpoint={}
        )
