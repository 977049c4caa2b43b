"""Named configurations, like timm's registered variants: ``get_config("base", num_labels=9)``."""

from .modeling.configuration_ivgf import IVGFConfig

__all__ = ["get_config", "list_presets", "PRESETS"]

PRESETS = {
    # The paper: MCMAE-B (visible) + InfMAE-B (infrared), UperNet with 768 channels, ConvMAE's segmentation
    # wrapper settings (layer-scale 1.0, relative position bias, drop path 0.2) at 512 x 512.
    "base": {},
    # For tests and CPU demos: the parity fixtures' encoder size (32/48/64, depths 1/1/2, 4 heads).
    "tiny": dict(
        hidden_sizes=(32, 48, 64),
        depths=(1, 1, 2),
        num_attention_heads=4,
        pretrain_image_size=64,
        drop_path_rate=0.0,
        fem_spatial_reduction=4,
        fem_channel_reduction=4,
        tem_layers=(1, 2),
        tem_num_adapters=2,
        tem_adapter_bottleneck=8,
        agf_num_heads=(2, 3, 4, 4),
        hidden_size=32,
        auxiliary_channels=16,
        fpn_channels=32,
        anchor_sizes=(16, 32, 64, 128, 256),
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=200,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=64,
        box_detections_per_image=20,
    ),
}


def list_presets() -> list:
    """Names accepted by :func:`get_config`."""
    return sorted(PRESETS)


def get_config(name: str, **overrides) -> IVGFConfig:
    """The :class:`IVGFConfig` of preset ``name``, with any field overridden by keyword."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return IVGFConfig(**{**PRESETS[name], **overrides})
