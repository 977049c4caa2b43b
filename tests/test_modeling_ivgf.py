"""IVGFModel / IVGFBackbone / IVGFForSemanticSegmentation: a slim version of transformers' common model tests."""

import itertools

import pytest
import torch
from transformers.modeling_layers import GradientCheckpointingLayer

from ivgf_hf import get_config
from ivgf_hf.modeling import IVGFBackbone, IVGFForObjectDetection, IVGFForSemanticSegmentation, IVGFModel
from ivgf_hf.modeling.encoder_ivgf import (
    IVGFAttention,
    IVGFConvBlock,
    IVGFLayerScale,
    IVGFPatchEmbed,
    IVGFStage4Projection,
    IVGFTransformerBlock,
    get_2d_sincos_pos_embed,
)
from ivgf_hf.modeling.fusion_ivgf import (
    IVGFAttentionGuidedFusion,
    IVGFFeatureEnhancement,
    IVGFSumFusion,
    IVGFTokenEnhancement,
)
from ivgf_hf.modeling.modeling_ivgf import LUMA_WEIGHTS

NUM_LABELS = 5
HEIGHT, WIDTH = 64, 96
ALL_CLASSES = [IVGFModel, IVGFBackbone, IVGFForSemanticSegmentation]


def tiny_config(**overrides):
    return get_config("tiny", num_labels=NUM_LABELS, **overrides)


def inputs(batch=2, height=HEIGHT, width=WIDTH, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.randn(batch, 3, height, width, generator=generator),
        "pixel_values_ir": torch.randn(batch, 1, height, width, generator=generator),
    }


def labels(batch=2, height=HEIGHT, width=WIDTH):
    target = torch.randint(0, NUM_LABELS, (batch, height, width), generator=torch.Generator().manual_seed(1))
    target[:, :4] = 255
    return target


def first_tensor(output):
    if hasattr(output, "logits"):
        return output.logits
    return output.feature_maps[0]


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_save_load_twice_and_determinism(model_class, tmp_path):
    model = model_class(tiny_config()).eval()
    batch = inputs()
    with torch.no_grad():
        expected = first_tensor(model(**batch))
        assert torch.equal(expected, first_tensor(model(**batch)))
    model.save_pretrained(tmp_path / "a")
    assert (tmp_path / "a" / "model.safetensors").is_file()
    reloaded = model_class.from_pretrained(tmp_path / "a")
    reloaded.save_pretrained(tmp_path / "b")
    twice = model_class.from_pretrained(tmp_path / "b")
    with torch.no_grad():
        for candidate in (reloaded, twice):
            assert torch.allclose(first_tensor(candidate(**batch)), expected, atol=1e-6)


def test_base_model_and_task_model_share_weights(tmp_path):
    segmentation = IVGFForSemanticSegmentation(tiny_config()).eval()
    segmentation.save_pretrained(tmp_path)
    base = IVGFModel.from_pretrained(tmp_path).eval()
    batch = inputs()
    with torch.no_grad():
        assert torch.equal(base(**batch).feature_maps[2], segmentation.ivgf(**batch).feature_maps[2])


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_batching_equivalence(model_class):
    model = model_class(tiny_config()).eval()
    batch = inputs(batch=3)
    with torch.no_grad():
        together = first_tensor(model(**batch))
        alone = torch.cat([first_tensor(model(**{k: v[i : i + 1] for k, v in batch.items()})) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_feature_map_shapes_and_hidden_states():
    config = tiny_config()
    model = IVGFModel(config).eval()
    with torch.no_grad():
        output = model(**inputs(), output_hidden_states=True)
    c1, c2, c3 = config.hidden_sizes
    assert [tuple(f.shape) for f in output.feature_maps] == [
        (2, c1, 16, 24),
        (2, c2, 8, 12),
        (2, c3, 4, 6),
        (2, c3, 1, 2),
    ]
    for modality in ("visible", "infrared"):
        assert len(getattr(output, f"{modality}_feature_maps")) == 4
        hidden = getattr(output, f"{modality}_hidden_states")
        assert len(hidden) == config.depths[2] + 1
        assert all(h.shape == (2, 24, c3) for h in hidden)
    plain = model(**inputs(), return_dict=False)
    assert isinstance(plain, tuple) and torch.equal(plain[0][0], output.feature_maps[0])


@pytest.mark.parametrize("model_class", [*ALL_CLASSES, IVGFForObjectDetection])
@pytest.mark.parametrize("modalities", ["both", "visible"])
def test_every_class_returns_hidden_states_the_fused_maps(model_class, modalities):
    """`hidden_states`: the maps F1..F4 (strides 4, 8, 16, 32) that the heads read, on every model class."""
    config = tiny_config(modalities=modalities)
    model = model_class(config).eval()
    reference = IVGFModel(config).eval()
    reference.load_state_dict(model.ivgf.state_dict() if hasattr(model, "ivgf") else model.state_dict())
    with torch.no_grad():
        expected = reference(**inputs()).feature_maps
        output = model(**inputs(), output_hidden_states=True)
        tuple_output = model(**inputs(), output_hidden_states=True, return_dict=False)
        without = model(**inputs())
    assert isinstance(output.hidden_states, tuple) and len(output.hidden_states) == 4
    assert all(torch.allclose(h, e, atol=1e-6) for h, e in zip(output.hidden_states, expected))
    assert any(
        isinstance(item, tuple) and len(item) == 4 and torch.equal(item[0], output.hidden_states[0])
        for item in tuple_output
    )
    assert without.hidden_states is None


def test_segmentation_loss_backward_reaches_every_parameter():
    model = IVGFForSemanticSegmentation(tiny_config()).train()
    output = model(**inputs(), labels=labels())
    assert output.logits.shape == (2, NUM_LABELS, HEIGHT, WIDTH)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    loss, logits = model(**inputs(), labels=labels(), return_dict=False)[:2]
    assert logits.shape == output.logits.shape and loss.ndim == 0


def test_auxiliary_loss_weight_is_applied():
    torch.manual_seed(0)
    config = tiny_config(auxiliary_loss_weight=0.0)
    model = IVGFForSemanticSegmentation(config).eval()
    with torch.no_grad():
        without_aux = model(**inputs(), labels=labels()).loss
        model.config.auxiliary_loss_weight = 0.4
        with_aux = model(**inputs(), labels=labels()).loss
    assert with_aux > without_aux


def test_modality_auxiliary_loss_adds_the_auxiliary_head_loss_of_each_modality():
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(tiny_config()).eval()
    target = labels()
    with torch.no_grad():
        plain = model(**inputs(), labels=target)
        model.config.modality_auxiliary_loss_weight = 0.3
        weighted = model(**inputs(), labels=target)
        maps = model.ivgf(**inputs(), output_hidden_states=True)
        expected = 0.0
        for modality_maps in (maps.visible_feature_maps, maps.infrared_feature_maps):
            logits = torch.nn.functional.interpolate(
                model.auxiliary_head(list(modality_maps)), size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False
            )
            expected = expected + torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(weighted.loss, plain.loss + 0.3 * expected)
    torch.testing.assert_close(weighted.logits, plain.logits)
    assert weighted.hidden_states is None
    single = IVGFForSemanticSegmentation(tiny_config(modalities="infrared", modality_auxiliary_loss_weight=0.3)).eval()
    with torch.no_grad():
        with_weight = single(**inputs(), labels=target).loss
        single.config.modality_auxiliary_loss_weight = 0.0
        torch.testing.assert_close(single(**inputs(), labels=target).loss, with_weight)
    with pytest.raises(ValueError, match="modality_auxiliary_loss_weight must be finite and >= 0"):
        tiny_config(modality_auxiliary_loss_weight=-0.1)


def test_class_weighted_loss_matches_torch_and_survives_an_all_ignored_batch():
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(tiny_config(use_auxiliary_head=False)).eval()
    logits = torch.randn(2, NUM_LABELS, 8, 8, requires_grad=True)
    target = torch.randint(0, NUM_LABELS, (2, 8, 8))
    target[0, :3] = 255
    assert torch.allclose(
        model._loss(logits, target), torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    )
    weights = torch.linspace(0.2, 3.0, NUM_LABELS)
    model.config.semantic_loss_class_weights = weights.tolist()
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weights, ignore_index=255)
    assert torch.allclose(model._loss(logits, target), expected)
    ignored = model._loss(logits, torch.full_like(target, 255))
    ignored.backward()
    assert ignored.item() == 0.0 and torch.all(logits.grad == 0)  # no NaN from 0 / 0
    model.config.semantic_loss_class_weights = [1.0, 2.0]
    with pytest.raises(ValueError, match="semantic_loss_class_weights has 2 values"):
        model._loss(logits, target)
    with pytest.raises(ValueError, match="positive and finite"):
        tiny_config(semantic_loss_class_weights=[1.0, 0.0, 1.0])


def test_all_missing_weights_are_initialised_by_init_weights():
    config = tiny_config()
    model = IVGFForSemanticSegmentation.from_pretrained(None, config=config, state_dict={})
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        assert torch.isfinite(tensor.float()).all(), name
        assert tensor.float().abs().max() < 100, name
    for module in model.modules():
        if isinstance(module, IVGFLayerScale):
            assert torch.all(module.gamma == config.layer_scale_init_value)
        if isinstance(module, IVGFAttention) and module.grid_size is not None:
            assert torch.all(module.relative_position_bias_table == 0)
    pos_embed = model.ivgf.visible_encoder.pos_embed
    side = int(pos_embed.shape[1] ** 0.5)
    assert torch.allclose(pos_embed, get_2d_sincos_pos_embed(pos_embed.shape[2], side, side))


def test_gradient_checkpointing_matches_plain_forward():
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(tiny_config()).train()
    for module in model.modules():  # dropout-free comparison
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch, target = inputs(), labels()

    def loss_and_grads():
        model.zero_grad()
        loss = model(**batch, labels=target).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain_loss, plain_grads = loss_and_grads()
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    recomputed = set()
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer):
            checkpoint = module._gradient_checkpointing_func

            name = type(module).__name__

            def recording(function, *args, _checkpoint=checkpoint, _name=name, **kwargs):
                recomputed.add(_name)
                return _checkpoint(function, *args, **kwargs)

            module._gradient_checkpointing_func = recording
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    assert torch.allclose(plain_loss, checkpointed_loss, atol=1e-6)
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, checkpointed_grads[name], atol=1e-5), name
    layers = (
        IVGFPatchEmbed,
        IVGFConvBlock,
        IVGFTransformerBlock,
        IVGFStage4Projection,
        IVGFFeatureEnhancement,
        IVGFTokenEnhancement,
        IVGFAttentionGuidedFusion,
    )
    assert recomputed == {layer.__name__ for layer in layers}  # transformers' checkpointed layers, all of them


def test_missing_modality_is_replaced_by_the_other_image():
    model = IVGFModel(tiny_config()).eval()
    batch = inputs()
    with torch.no_grad():
        no_ir = model(pixel_values=batch["pixel_values"]).feature_maps
        luma = (batch["pixel_values"] * torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
        explicit = model(batch["pixel_values"], luma).feature_maps
        no_visible = model(pixel_values_ir=batch["pixel_values_ir"]).feature_maps
        explicit_visible = model(batch["pixel_values_ir"].expand(-1, 3, -1, -1), batch["pixel_values_ir"]).feature_maps
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(no_ir, explicit))
    assert all(torch.equal(a, b) for a, b in zip(no_visible, explicit_visible))
    with pytest.raises(ValueError, match="both are None"):
        model()


@pytest.mark.parametrize(
    "fem,agf,tem", list(itertools.product([False, True], repeat=3)), ids=lambda v: "on" if v else "off"
)
def test_every_ablation_row_builds_and_runs(fem, agf, tem):
    """Table IV: every combination of FEM / AGF / TEM is a configuration (CMA lives in the data pipeline)."""
    model = IVGFForSemanticSegmentation(tiny_config(use_fem=fem, use_agf=agf, use_tem=tem)).eval()
    assert hasattr(model.ivgf, "feature_enhancements") == fem
    assert hasattr(model.ivgf, "token_enhancements") == tem
    assert all(isinstance(f, IVGFSumFusion) for f in model.ivgf.fusions) == (not agf)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs(batch=1)).logits).all()


@pytest.mark.parametrize("mode", ["parallel", "serial", "channel", "spatial"])
def test_fem_modes_build(mode):
    model = IVGFModel(tiny_config(fem_mode=mode)).eval()
    assert [f.mode for f in model.feature_enhancements] == [mode] * 4
    with torch.no_grad():
        assert len(model(**inputs(batch=1)).feature_maps) == 4


def test_baseline_is_the_sum_of_the_two_encoders():
    model = IVGFModel(tiny_config(use_fem=False, use_tem=False, use_agf=False)).eval()
    batch = inputs()
    with torch.no_grad():
        fused = model(**batch).feature_maps
        visible = model.visible_encoder(batch["pixel_values"]).feature_maps
        infrared = model.infrared_encoder(batch["pixel_values_ir"]).feature_maps
    for f, v, i in zip(fused, visible, infrared):
        assert torch.allclose(f, v + i, atol=1e-6)


def test_tem_acts_only_after_the_configured_blocks():
    config = tiny_config(use_fem=False, use_agf=False, tem_layers=[2])
    model = IVGFModel(config).eval()
    tem = model.token_enhancements[0]
    with torch.no_grad():
        out = model(**inputs(), output_hidden_states=True)
        vis_block1 = model.visible_encoder.blocks3[0](out.visible_hidden_states[0], (4, 6))
        ir_block1 = model.infrared_encoder.blocks3[0](out.infrared_hidden_states[0], (4, 6))
        assert torch.allclose(out.visible_hidden_states[1], vis_block1, atol=1e-6)  # no TEM after block 1
        vis_block2 = model.visible_encoder.blocks3[1](vis_block1, (4, 6))
        ir_block2 = model.infrared_encoder.blocks3[1](ir_block1, (4, 6))
        expected_vis, expected_ir = tem(vis_block2, ir_block2)
    assert torch.allclose(out.visible_hidden_states[2], expected_vis, atol=1e-6)
    assert torch.allclose(out.infrared_hidden_states[2], expected_ir, atol=1e-6)


@pytest.mark.parametrize("modality", ["visible", "infrared"])
def test_single_modality_models(modality):
    model = IVGFForSemanticSegmentation(tiny_config(modalities=modality)).eval()
    other = "infrared" if modality == "visible" else "visible"
    assert hasattr(model.ivgf, f"{modality}_encoder") and not hasattr(model.ivgf, f"{other}_encoder")
    batch = inputs()
    with torch.no_grad():
        both = model(**batch).logits
        key = "pixel_values" if modality == "visible" else "pixel_values_ir"
        only = model(**{key: batch[key]}).logits
    assert torch.equal(both, only)


def test_backbone_contract():
    config = tiny_config(out_features=["stage2", "stage4"])
    backbone = IVGFBackbone(config).eval()
    assert backbone.channels == [config.hidden_sizes[1], config.hidden_sizes[2]]
    batch = inputs()
    with torch.no_grad():
        output = backbone(**batch)
        stacked = backbone(torch.cat([batch["pixel_values"], batch["pixel_values_ir"]], 1))
    assert len(output.feature_maps) == 2 and output.feature_maps[0].shape[1] == config.hidden_sizes[1]
    assert torch.equal(output.feature_maps[1], stacked.feature_maps[1])
    with pytest.raises(ValueError, match="out_features"):
        IVGFBackbone(tiny_config(out_features=["stem"]))


def test_bad_inputs_get_clear_errors():
    model = IVGFForSemanticSegmentation(tiny_config()).eval()
    batch = inputs()
    with pytest.raises(ValueError, match="pixel_values has 1 channels, this encoder expects 3"):
        model(batch["pixel_values_ir"], batch["pixel_values_ir"])
    with pytest.raises(ValueError, match="not divisible by the encoder stride 16"):
        model(**inputs(height=72))
    with pytest.raises(ValueError, match="same size"):
        model(batch["pixel_values"], torch.randn(2, 1, 64, 64))
    nan = batch["pixel_values"].clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pixel_values contains NaN"):
        model(nan, batch["pixel_values_ir"])
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        bad = labels()
        bad[0, 10, 10] = 7
        model(**batch, labels=bad)
    with pytest.raises(ValueError, match="labels must have shape"):
        model(**batch, labels=labels(height=32))
    model.train()
    with pytest.raises(ValueError, match="1 image per step"):
        model(**inputs(batch=1), labels=labels(batch=1))


def test_empty_none_mismatched_and_half_precision_inputs():
    model = IVGFForSemanticSegmentation(tiny_config()).eval()
    batch = inputs(batch=1)
    with pytest.raises(ValueError, match=r"pixel_values is an empty batch \(shape \(0, 3, 64, 64\)\)"):
        model(torch.zeros(0, 3, 64, 64), torch.zeros(0, 1, 64, 64))
    with pytest.raises(ValueError, match="pixel_values_ir is an empty batch"):
        model(pixel_values_ir=torch.zeros(0, 1, 64, 64))
    for forward in (model, model.ivgf):
        with pytest.raises(ValueError, match="pixel_values .* and/or pixel_values_ir .*both are None"):
            forward(None, None)
    # a size mismatch is named as such, not as the smaller image being too small
    mismatch = r"same size, got pixel_values \(1, 3, 64, 96\) and pixel_values_ir \(1, 1, 32, 32\)"
    with pytest.raises(ValueError, match=mismatch):
        model(batch["pixel_values"], torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="pixel_values has dtype torch.uint8; .*floating-point"):
        model(batch["pixel_values"].to(torch.uint8), batch["pixel_values_ir"])
    with torch.no_grad():
        expected = model(**batch).logits
        for dtype in (torch.float16, torch.bfloat16):  # cast to the weights' dtype
            logits = model(batch["pixel_values"].to(dtype), batch["pixel_values_ir"].to(dtype)).logits
            assert logits.dtype == torch.float32
            assert (logits - expected).abs().max() < 0.1


def test_config_validation():
    with pytest.raises(ValueError, match="fem_mode"):
        tiny_config(fem_mode="cross")
    with pytest.raises(ValueError, match="equal hidden_sizes"):
        tiny_config(hidden_sizes_ir=[16, 48, 64])
    with pytest.raises(ValueError, match="tem_layers"):
        tiny_config(tem_layers=[3])
    with pytest.raises(ValueError, match="modalities"):
        tiny_config(modalities="thermal")


def test_base_preset_matches_the_paper():
    config = get_config("base", num_labels=9)
    with torch.device("meta"):
        model = IVGFForSemanticSegmentation(config)
    assert config.hidden_sizes == [256, 384, 768] and config.depths == [2, 2, 11]
    assert config.feature_channels == [256, 384, 768, 768]
    assert config.hidden_size == 768 and config.pool_scales == [1, 2, 3, 6]
    assert config.auxiliary_channels == 256 and config.auxiliary_loss_weight == 0.4
    assert sum(p.numel() for p in model.parameters()) > 2 * 84_453_760
