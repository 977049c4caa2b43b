"""The fusion config fields of the trainable starts: defaults, the literal paper form, old saved configs, and the
model starting as the sum baseline."""

import json

import pytest
import torch

from ivgf_hf import get_config
from ivgf_hf.modeling import IVGFConfig, IVGFModel
from ivgf_hf.modeling.configuration_ivgf import LITERAL_FUSION_DEFAULTS, TRAINABLE_FUSION_DEFAULTS


def _fusion_fields(config) -> dict:
    return {key: getattr(config, key) for key in TRAINABLE_FUSION_DEFAULTS}


def test_defaults_are_the_trainable_starts_and_literal_values_are_accepted():
    assert _fusion_fields(get_config("tiny")) == TRAINABLE_FUSION_DEFAULTS
    assert _fusion_fields(get_config("tiny", **LITERAL_FUSION_DEFAULTS)) == LITERAL_FUSION_DEFAULTS
    with pytest.raises(ValueError, match="tem_initial_prompt must lie in"):
        get_config("tiny", tem_prompt_range=1.0, tem_initial_prompt=1.0)


@pytest.mark.parametrize("fields", [TRAINABLE_FUSION_DEFAULTS, LITERAL_FUSION_DEFAULTS])
def test_saved_configs_keep_their_fusion_fields(tmp_path, fields):
    get_config("tiny", **fields).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {key: saved[key] for key in fields} == fields
    assert _fusion_fields(IVGFConfig.from_pretrained(tmp_path)) == fields


def test_a_field_added_later_takes_its_literal_value_in_configs_saved_without_it(tmp_path):
    get_config("tiny", agf_neighbourhood=5).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["agf_neighbourhood"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = IVGFConfig.from_pretrained(tmp_path)
    assert loaded.agf_neighbourhood == 0
    assert loaded.agf_residual is True  # the fields that were saved keep their values
    with pytest.raises(ValueError, match="agf_neighbourhood must be 0"):
        get_config("tiny", agf_neighbourhood=4)
    with pytest.raises(ValueError, match="agf_neighbourhood needs agf_kv_stride"):
        get_config("tiny", agf_neighbourhood=3, agf_kv_stride=[2, 1, 1, 1])
    assert all(f.neighbourhood == 5 for f in IVGFModel(get_config("tiny", agf_neighbourhood=5)).fusions)


def test_a_config_saved_before_the_fields_existed_loads_as_the_literal_paper_form(tmp_path):
    get_config("tiny").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in TRAINABLE_FUSION_DEFAULTS:
        del saved[key]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert _fusion_fields(IVGFConfig.from_pretrained(tmp_path)) == LITERAL_FUSION_DEFAULTS


def test_modules_follow_the_fields():
    trainable = IVGFModel(get_config("tiny")).eval()
    literal = IVGFModel(get_config("tiny", **LITERAL_FUSION_DEFAULTS)).eval()
    names = {name for name, _ in trainable.named_parameters()} - {name for name, _ in literal.named_parameters()}
    assert names and all(".scales." in n or "merge_scale" in n or "_norm." in n for n in names)
    assert all(fusion.residual and fusion.norm for fusion in trainable.fusions)
    assert all(tem.prompt_range == 1.0 for tem in trainable.token_enhancements)
    fast = IVGFModel(get_config("tiny", tem_prompt_range=2.0, tem_initial_prompt=1.0))
    assert all(tem.prompt_range == 2.0 for tem in fast.token_enhancements)
    assert not any(fusion.residual or fusion.norm for fusion in literal.fusions)


def test_ivgf_starts_as_the_sum_baseline():
    """With the same encoder weights, untrained IVGF's fused maps equal sum fusion's up to TEM's prompts (~1)."""
    torch.manual_seed(0)
    ivgf = IVGFModel(get_config("tiny")).eval()
    baseline = IVGFModel(get_config("tiny", use_fem=False, use_tem=False, use_agf=False)).eval()
    baseline.load_state_dict(ivgf.state_dict(), strict=False)
    generator = torch.Generator().manual_seed(1)
    visible, infrared = torch.randn(2, 3, 64, 64, generator=generator), torch.randn(2, 1, 64, 64, generator=generator)
    with torch.no_grad():
        fused = ivgf(visible, infrared).feature_maps
        summed = baseline(visible, infrared).feature_maps
        # F1 and F2 come before the transformer stage's TEM: exactly the sum.
        for index in (0, 1):
            torch.testing.assert_close(fused[index], summed[index], atol=1e-5, rtol=1e-5)
        for index in (2, 3):
            relative = (fused[index] - summed[index]).norm() / summed[index].norm()
            assert relative < 0.05
        literal = IVGFModel(get_config("tiny", **LITERAL_FUSION_DEFAULTS)).eval()
        literal.load_state_dict(ivgf.state_dict(), strict=False)
        far = literal(visible, infrared).feature_maps[0]
        assert (far - summed[0]).norm() / summed[0].norm() > 0.5
