"""IVGF model configuration."""

from transformers import PretrainedConfig

__all__ = [
    "IVGFConfig",
    "ENCODER_FIELDS",
    "FEM_MODES",
    "TEM_INITIAL_PROMPT",
    "LITERAL_FUSION_DEFAULTS",
    "TRAINABLE_FUSION_DEFAULTS",
]

# Encoder hyper-parameters that exist once per modality: the visible field has the plain name, the
# infrared field the same name with an ``_ir`` suffix (``num_channels`` / ``num_channels_ir``).
ENCODER_FIELDS = (
    "hidden_sizes",
    "depths",
    "num_attention_heads",
    "mlp_ratios",
    "patch_sizes",
    "pretrain_image_size",
    "layer_scale_init_value",
    "use_relative_position_bias",
    "drop_path_rate",
    "num_channels",
    "qkv_bias",
)

_MODALITIES = ("both", "visible", "infrared")
# The arrangements of FEM's spatial and channel weights (`fem_mode`, docs/model.md); fusion_ivgf.py imports them.
FEM_MODES = ("parallel", "serial", "channel", "spatial")
# Value of both TEM importance prompts (eq. 15) at initialisation: tokens start at 98% of their pretrained value.
TEM_INITIAL_PROMPT = 0.98
# The fusion fields of the trainable starts (docs/model.md, "Deviations from the paper"): their defaults, and the
# values of the literal paper form, which configurations saved before these fields existed also get.
TRAINABLE_FUSION_DEFAULTS = {
    "fusion_fan_init": True,
    "fem_scaled_residual": True,
    "tem_prompt_range": 1.0,
    "tem_initial_prompt": TEM_INITIAL_PROMPT,
    "agf_residual": True,
    "agf_norm": True,
    "agf_neighbourhood": 7,
    "agf_merge_norm": False,
}
LITERAL_FUSION_DEFAULTS = {
    "fusion_fan_init": False,
    "fem_scaled_residual": False,
    "tem_prompt_range": 1.0,
    "tem_initial_prompt": TEM_INITIAL_PROMPT,
    "agf_residual": False,
    "agf_norm": False,
    "agf_neighbourhood": 0,
    "agf_merge_norm": False,
}


class IVGFConfig(PretrainedConfig):
    r"""
    This is the configuration class to store the configuration of an [`IVGFModel`] and its task models
    ([`IVGFForSemanticSegmentation`], [`IVGFForObjectDetection`]). Instantiating it with the defaults gives the
    `base` architecture of the paper: an MCMAE-B encoder for the visible image and an InfMAE-B encoder for the
    infrared image, fused at four scales (strides 4, 8, 16, 32).

    Each encoder is the hybrid convolution + transformer network of ConvMAE: three patch embeddings (strides 4, 2,
    2), ``depths[0]`` and ``depths[1]`` convolution blocks, ``depths[2]`` transformer blocks on stride-16 tokens,
    and a 3x3 stride-2 convolution giving the stride-32 map. Every encoder field exists twice: the plain name is
    the visible encoder, the name with an ``_ir`` suffix the infrared encoder.

    Args:
        hidden_sizes (`list[int]`, *optional*, defaults to `[256, 384, 768]`):
            Channels of the three encoder stages (the stride-32 map keeps the last one).
        depths (`list[int]`, *optional*, defaults to `[2, 2, 11]`):
            Number of blocks per stage: convolution blocks, convolution blocks, transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Attention heads of the transformer stage.
        mlp_ratios (`list[float]`, *optional*, defaults to `[4.0, 4.0, 4.0]`):
            Hidden size of each stage's MLP relative to its channels.
        patch_sizes (`list[int]`, *optional*, defaults to `[4, 2, 2]`):
            Kernel and stride of the three patch embeddings (total stride 16).
        pretrain_image_size (`int`, *optional*, defaults to 512):
            Image size (pixels) at which the absolute position embedding and the relative position tables are
            stored. Other input sizes interpolate them at forward time (bicubic for the position embedding,
            bilinear for the relative position tables).
        layer_scale_init_value (`float`, *optional*, defaults to 1.0):
            Initial value of the transformer blocks' layer-scale (``gamma_1``, ``gamma_2``); `None` or 0 disables
            layer-scale, as in the pretraining code.
        use_relative_position_bias (`bool`, *optional*, defaults to `True`):
            Per-block BEiT-style relative position bias in the transformer stage (ConvMAE's segmentation wrapper).
        drop_path_rate (`float`, *optional*, defaults to 0.2):
            Stochastic depth rate, spread linearly over all blocks of the encoder.
        num_channels (`int`, *optional*, defaults to 3):
            Channels of the visible image.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias in the fused query/key/value projection.
        hidden_sizes_ir, depths_ir, num_attention_heads_ir, mlp_ratios_ir, patch_sizes_ir, pretrain_image_size_ir,
        layer_scale_init_value_ir, use_relative_position_bias_ir, drop_path_rate_ir, qkv_bias_ir:
            The same fields for the infrared encoder; `None` (the default) copies the visible value.
        num_channels_ir (`int`, *optional*, defaults to 1):
            Channels of the infrared image (InfMAE's RGB stem is summed to one channel by the converter).
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the transformer blocks' layer norms.
        conv_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the patch-embedding and convolution-block layer norms (as in the original code).
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLPs and patch embeddings.
        modalities (`str`, *optional*, defaults to `"both"`):
            `"both"` builds both encoders and the fusion modules; `"visible"` or `"infrared"` builds one encoder
            only (the single-modality models of section IV-F).
        use_fem (`bool`, *optional*, defaults to `True`):
            Feature-enhancement module after each of the four stages.
        fem_mode (`str`, *optional*, defaults to `"parallel"`):
            `"parallel"` (paper), `"serial"` (spatial integration then channel attention), `"channel"` or
            `"spatial"` only (Table V).
        fem_spatial_reduction (`int`, *optional*, defaults to 8):
            Channel reduction inside the spatial-weight branch (conv1x1 C -> C/r -> 1). Not given in the paper.
        fem_channel_reduction (`int`, *optional*, defaults to 4):
            Reduction of the channel-attention MLP (2C -> C/r -> C). Not given in the paper.
        fem_scaled_residual (`bool`, *optional*, defaults to `True`):
            Multiply each term FEM adds (eq. 5-6, 12-13) by a per-channel factor that starts at 0, so FEM starts as
            the identity. `False` is eq. 12 as written (its gates start near 0.5). See docs/model.md.
        fusion_fan_init (`bool`, *optional*, defaults to `True`):
            Initialise FEM's gate layers and AGF's projections and merge convolutions by their fan (He before a ReLU,
            Xavier elsewhere) rather than the truncated normal of std `initializer_range`, which leaves narrow
            layers with constant gates, uniform attention and a merge output ~1e-5 of its input.
        use_tem (`bool`, *optional*, defaults to `True`):
            Token-enhancement module inside the transformer stage.
        tem_layers (`list[int]`, *optional*, defaults to `[3, 6, 9]`):
            Transformer blocks (counted from 1) after which the token-enhancement module runs.
        tem_hidden_size (`int`, *optional*):
            Width of the reduced dual-modality tokens (eq. 14); `None` uses the transformer width.
        tem_num_adapters (`int`, *optional*, defaults to 4):
            Number of bottleneck adapters in the mixture of adapters.
        tem_adapter_bottleneck (`int`, *optional*, defaults to 64):
            Bottleneck width of each adapter.
        tem_prompt_range (`float`, *optional*, defaults to 1.0):
            The importance prompts lie in (0, `tem_prompt_range`): the sigmoid of eq. 15 times this factor. 1.0 is
            eq. 15 as written.
        tem_initial_prompt (`float`, *optional*, defaults to 0.98):
            Value of every prompt at initialisation (below `tem_prompt_range`), where the sigmoid's slope is 0.02.
            Range 2.0 with a start of 1.0 (slope 0.5) was measured and is not the default: TEM then learns within a
            few hundred steps to scale the whole visible stream down (prompts 0.13 against 1.98 for infrared) and
            IVGF loses to the sum baseline (docs/model.md).
        use_agf (`bool`, *optional*, defaults to `True`):
            Attention-guided fusion at the four scales; `False` fuses by summation (the paper's baseline).
        agf_num_heads (`list[int]`, *optional*, defaults to `[4, 6, 12, 12]`):
            Cross-attention heads at each scale.
        agf_kv_stride (`list[int]`, *optional*, defaults to `[1, 1, 1, 1]`):
            Average-pooling stride applied to keys and values at each scale (1 = exact attention, as the paper).
        agf_residual (`bool`, *optional*, defaults to `True`):
            AGF returns `F_vis + F_ir + gamma * M(...)` with a per-channel gamma starting at 0, so it starts as the
            sum baseline. `False` is eq. 20 as written (`M(...)` alone, no identity path).
        agf_norm (`bool`, *optional*, defaults to `True`):
            LayerNorm on each modality's tokens before AGF's query / key / value projections.
        agf_neighbourhood (`int`, *optional*, defaults to 7):
            k (odd): each AGF query attends only to the k x k tokens of the other modality centred on its own
            position (neighbourhood attention; needs `agf_kv_stride` 1). 0: global attention over all tokens of a
            scale, eq. 18-19 as written; its flattened tokens carry no position, and trained that way the attention
            ignores where the query is (docs/model.md).
        agf_merge_norm (`bool`, *optional*, defaults to `False`):
            With `agf_residual`: the merge module's output is normalised over (C, H, W) per image (GroupNorm with
            one group, no affine) before the per-channel gamma, so the size of what AGF adds is set by gamma alone
            rather than by gamma times a merge output of free scale (docs/model.md).

            The fusion fields above (`fem_scaled_residual`, `fusion_fan_init`, `tem_prompt_range`,
            `tem_initial_prompt`, `agf_residual`, `agf_norm`, `agf_neighbourhood`, `agf_merge_norm`) take
            `None` for "not given" (their defaults in `TRAINABLE_FUSION_DEFAULTS`); in a config.json saved before a
            field existed, that field takes its literal paper value (`LITERAL_FUSION_DEFAULTS`), which is how the
            model was built then.
        hidden_size (`int`, *optional*, defaults to 768):
            Channels of the UperNet decode head.
        pool_scales (`list[int]`, *optional*, defaults to `[1, 2, 3, 6]`):
            Pooling scales of the pyramid pooling module.
        use_auxiliary_head (`bool`, *optional*, defaults to `True`):
            Auxiliary FCN head on the fused stride-16 map.
        auxiliary_loss_weight (`float`, *optional*, defaults to 0.4):
            Weight of the auxiliary loss.
        auxiliary_in_channels (`int`, *optional*):
            Input channels of the auxiliary head; `None` uses ``hidden_sizes[2]``.
        auxiliary_channels (`int`, *optional*, defaults to 256):
            Channels of the auxiliary head.
        auxiliary_num_convs (`int`, *optional*, defaults to 1):
            Convolutions in the auxiliary head.
        auxiliary_concat_input (`bool`, *optional*, defaults to `False`):
            Whether the auxiliary head concatenates its input with its output before classification.
        modality_auxiliary_loss_weight (`float`, *optional*, defaults to 0.0):
            Training only, fused segmentation models with the auxiliary head: the auxiliary head is also applied to
            each modality's own stride-16 map (before fusion) and this weight times each of those two losses is
            added, so neither encoder can leave the other to learn the classes only it sees (docs/model.md). 0 (the
            paper) adds nothing; inference is unchanged either way.
        semantic_loss_ignore_index (`int`, *optional*, defaults to 255):
            Label value ignored by the segmentation loss.
        semantic_loss_class_weights (`list[float]`, *optional*):
            One cross-entropy weight per class (`num_labels` positive values), as mmseg's `class_weight`; `None` (the
            paper's setting) weighs every class 1.
        fpn_channels (`int`, *optional*, defaults to 256):
            Channels of the detection feature pyramid (P2-P6, P6 by max-pooling P5).
        anchor_sizes (`list[int]`, *optional*, defaults to `[32, 64, 128, 256, 512]`):
            Anchor size (pixels) on each pyramid level P2..P6 (MMDetection's scale 8 x strides 4..64).
        anchor_aspect_ratios (`list[float]`, *optional*, defaults to `[0.5, 1.0, 2.0]`):
            Anchor aspect ratios (height / width) on every level.
        anchor_scales (`list[float]`, *optional*, defaults to `[1.0]`):
            Multipliers of each level's anchor size: level l gets anchors of `anchor_sizes[l] * s` for every `s`
            (with every aspect ratio). `[1.0]` is one size per level (torchvision's and MMDetection's FPN);
            `[1.0, 2 ** 0.5]` adds a half-octave size, as RetinaNet's octave scales.
        rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test (`int`, *optional*, default to 2000 and 1000):
            Proposals kept per level before the RPN's NMS.
        rpn_post_nms_top_n_train, rpn_post_nms_top_n_test (`int`, *optional*, default to 1000 and 1000):
            Proposals kept per image after the RPN's NMS.
        rpn_nms_threshold (`float`, *optional*, defaults to 0.7): IoU threshold of the RPN's NMS.
        rpn_fg_iou_threshold, rpn_bg_iou_threshold (`float`, *optional*, default to 0.7 and 0.3):
            Anchor IoU above which an anchor is positive / below which it is negative.
        rpn_batch_size_per_image (`int`, *optional*, defaults to 256): anchors sampled per image for the RPN loss.
        rpn_positive_fraction (`float`, *optional*, defaults to 0.5): share of positives among them.
        box_fg_iou_threshold, box_bg_iou_threshold (`float`, *optional*, default to 0.5 and 0.5):
            Proposal IoU thresholds of the RoI heads.
        box_batch_size_per_image (`int`, *optional*, defaults to 512): proposals sampled per image for the box loss.
        box_positive_fraction (`float`, *optional*, defaults to 0.25): share of positives among them.
        box_score_threshold (`float`, *optional*, defaults to 0.05): minimum score of a returned detection.
        box_nms_threshold (`float`, *optional*, defaults to 0.5): IoU threshold of the per-class NMS.
        box_detections_per_image (`int`, *optional*, defaults to 100): detections returned per image.
        use_mask_head (`bool`, *optional*, defaults to `False`):
            Mask R-CNN's mask branch (trained only when instance masks are given).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialiser of linear and convolution weights.

    Example:

    ```python
    >>> from ivgf_hf.modeling import IVGFConfig, IVGFModel

    >>> configuration = IVGFConfig()
    >>> model = IVGFModel(configuration)
    >>> configuration = model.config
    ```"""

    model_type = "ivgf"
    # save_pretrained copies the code files and writes auto_map, so every saved folder loads as remote code
    _auto_class = "AutoConfig"

    def __init__(
        self,
        hidden_sizes=(256, 384, 768),
        depths=(2, 2, 11),
        num_attention_heads=12,
        mlp_ratios=(4.0, 4.0, 4.0),
        patch_sizes=(4, 2, 2),
        pretrain_image_size=512,
        layer_scale_init_value=1.0,
        use_relative_position_bias=True,
        drop_path_rate=0.2,
        num_channels=3,
        qkv_bias=True,
        hidden_sizes_ir=None,
        depths_ir=None,
        num_attention_heads_ir=None,
        mlp_ratios_ir=None,
        patch_sizes_ir=None,
        pretrain_image_size_ir=None,
        layer_scale_init_value_ir=None,
        use_relative_position_bias_ir=None,
        drop_path_rate_ir=None,
        num_channels_ir=1,
        qkv_bias_ir=None,
        layer_norm_eps=1e-6,
        conv_layer_norm_eps=1e-5,
        hidden_act="gelu",
        modalities="both",
        use_fem=True,
        fem_mode="parallel",
        fem_spatial_reduction=8,
        fem_channel_reduction=4,
        fem_scaled_residual=None,
        fusion_fan_init=None,
        use_tem=True,
        tem_layers=(3, 6, 9),
        tem_hidden_size=None,
        tem_num_adapters=4,
        tem_adapter_bottleneck=64,
        tem_prompt_range=None,
        tem_initial_prompt=None,
        use_agf=True,
        agf_num_heads=(4, 6, 12, 12),
        agf_kv_stride=(1, 1, 1, 1),
        agf_residual=None,
        agf_norm=None,
        agf_neighbourhood=None,
        agf_merge_norm=None,
        hidden_size=768,
        pool_scales=(1, 2, 3, 6),
        use_auxiliary_head=True,
        auxiliary_loss_weight=0.4,
        auxiliary_in_channels=None,
        auxiliary_channels=256,
        auxiliary_num_convs=1,
        auxiliary_concat_input=False,
        modality_auxiliary_loss_weight=0.0,
        semantic_loss_ignore_index=255,
        semantic_loss_class_weights=None,
        fpn_channels=256,
        anchor_sizes=(32, 64, 128, 256, 512),
        anchor_aspect_ratios=(0.5, 1.0, 2.0),
        anchor_scales=(1.0,),
        rpn_pre_nms_top_n_train=2000,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=1000,
        rpn_post_nms_top_n_test=1000,
        rpn_nms_threshold=0.7,
        rpn_fg_iou_threshold=0.7,
        rpn_bg_iou_threshold=0.3,
        rpn_batch_size_per_image=256,
        rpn_positive_fraction=0.5,
        box_fg_iou_threshold=0.5,
        box_bg_iou_threshold=0.5,
        box_batch_size_per_image=512,
        box_positive_fraction=0.25,
        box_score_threshold=0.05,
        box_nms_threshold=0.5,
        box_detections_per_image=100,
        use_mask_head=False,
        initializer_range=0.02,
        **kwargs,
    ):
        fusion = dict(
            fusion_fan_init=fusion_fan_init,
            fem_scaled_residual=fem_scaled_residual,
            tem_prompt_range=tem_prompt_range,
            tem_initial_prompt=tem_initial_prompt,
            agf_residual=agf_residual,
            agf_norm=agf_norm,
            agf_neighbourhood=agf_neighbourhood,
            agf_merge_norm=agf_merge_norm,
        )
        # `None` means "not given": the trainable default, except in a saved config.json (it has a
        # transformers_version) written before the field existed, which keeps the module it was trained with: every
        # field's literal value is also the behaviour of the code before that field was added.
        defaults = LITERAL_FUSION_DEFAULTS if "transformers_version" in kwargs else TRAINABLE_FUSION_DEFAULTS
        fusion = {key: defaults[key] if value is None else value for key, value in fusion.items()}
        self.hidden_sizes = list(hidden_sizes)
        self.depths = list(depths)
        self.num_attention_heads = num_attention_heads
        self.mlp_ratios = [float(r) for r in mlp_ratios]
        self.patch_sizes = list(patch_sizes)
        self.pretrain_image_size = pretrain_image_size
        self.layer_scale_init_value = layer_scale_init_value
        self.use_relative_position_bias = use_relative_position_bias
        self.drop_path_rate = drop_path_rate
        self.num_channels = num_channels
        self.qkv_bias = qkv_bias
        self.hidden_sizes_ir = list(hidden_sizes_ir) if hidden_sizes_ir is not None else None
        self.depths_ir = list(depths_ir) if depths_ir is not None else None
        self.num_attention_heads_ir = num_attention_heads_ir
        self.mlp_ratios_ir = [float(r) for r in mlp_ratios_ir] if mlp_ratios_ir is not None else None
        self.patch_sizes_ir = list(patch_sizes_ir) if patch_sizes_ir is not None else None
        self.pretrain_image_size_ir = pretrain_image_size_ir
        self.layer_scale_init_value_ir = layer_scale_init_value_ir
        self.use_relative_position_bias_ir = use_relative_position_bias_ir
        self.drop_path_rate_ir = drop_path_rate_ir
        self.num_channels_ir = num_channels_ir
        self.qkv_bias_ir = qkv_bias_ir
        self.layer_norm_eps = layer_norm_eps
        self.conv_layer_norm_eps = conv_layer_norm_eps
        self.hidden_act = hidden_act
        self.modalities = modalities
        self.use_fem = use_fem
        self.fem_mode = fem_mode
        self.fem_spatial_reduction = fem_spatial_reduction
        self.fem_channel_reduction = fem_channel_reduction
        self.fem_scaled_residual = bool(fusion["fem_scaled_residual"])
        self.fusion_fan_init = bool(fusion["fusion_fan_init"])
        self.use_tem = use_tem
        self.tem_layers = list(tem_layers)
        self.tem_hidden_size = tem_hidden_size
        self.tem_num_adapters = tem_num_adapters
        self.tem_adapter_bottleneck = tem_adapter_bottleneck
        self.tem_prompt_range = float(fusion["tem_prompt_range"])
        self.tem_initial_prompt = float(fusion["tem_initial_prompt"])
        self.use_agf = use_agf
        self.agf_num_heads = list(agf_num_heads)
        self.agf_kv_stride = list(agf_kv_stride)
        self.agf_residual = bool(fusion["agf_residual"])
        self.agf_norm = bool(fusion["agf_norm"])
        self.agf_neighbourhood = int(fusion["agf_neighbourhood"])
        self.agf_merge_norm = bool(fusion["agf_merge_norm"])
        self.hidden_size = hidden_size
        self.pool_scales = list(pool_scales)
        self.use_auxiliary_head = use_auxiliary_head
        self.auxiliary_loss_weight = auxiliary_loss_weight
        self.auxiliary_in_channels = auxiliary_in_channels
        self.auxiliary_channels = auxiliary_channels
        self.auxiliary_num_convs = auxiliary_num_convs
        self.auxiliary_concat_input = auxiliary_concat_input
        self.modality_auxiliary_loss_weight = float(modality_auxiliary_loss_weight)
        self.semantic_loss_ignore_index = semantic_loss_ignore_index
        self.semantic_loss_class_weights = (
            [float(w) for w in semantic_loss_class_weights] if semantic_loss_class_weights is not None else None
        )
        self.fpn_channels = fpn_channels
        self.anchor_sizes = list(anchor_sizes)
        self.anchor_aspect_ratios = [float(r) for r in anchor_aspect_ratios]
        self.anchor_scales = [float(s) for s in anchor_scales]
        self.rpn_pre_nms_top_n_train = rpn_pre_nms_top_n_train
        self.rpn_pre_nms_top_n_test = rpn_pre_nms_top_n_test
        self.rpn_post_nms_top_n_train = rpn_post_nms_top_n_train
        self.rpn_post_nms_top_n_test = rpn_post_nms_top_n_test
        self.rpn_nms_threshold = rpn_nms_threshold
        self.rpn_fg_iou_threshold = rpn_fg_iou_threshold
        self.rpn_bg_iou_threshold = rpn_bg_iou_threshold
        self.rpn_batch_size_per_image = rpn_batch_size_per_image
        self.rpn_positive_fraction = rpn_positive_fraction
        self.box_fg_iou_threshold = box_fg_iou_threshold
        self.box_bg_iou_threshold = box_bg_iou_threshold
        self.box_batch_size_per_image = box_batch_size_per_image
        self.box_positive_fraction = box_positive_fraction
        self.box_score_threshold = box_score_threshold
        self.box_nms_threshold = box_nms_threshold
        self.box_detections_per_image = box_detections_per_image
        self.use_mask_head = use_mask_head
        self.initializer_range = initializer_range
        super().__init__(**kwargs)
        self._validate()

    def to_diff_dict(self) -> dict:
        """The saved form: values that differ from the defaults, plus the trainable-start fusion fields always (a
        saved config without them is read as one written before they existed; see ``__init__``)."""
        diff = super().to_diff_dict()
        diff.update({key: getattr(self, key) for key in LITERAL_FUSION_DEFAULTS})
        return diff

    def encoder_settings(self, modality: str) -> dict:
        """The encoder fields of one modality (`"visible"` or `"infrared"`), with `None` infrared fields filled in."""
        if modality not in ("visible", "infrared"):
            raise ValueError(f"modality must be 'visible' or 'infrared', got {modality!r}")
        settings = {}
        for name in ENCODER_FIELDS:
            value = getattr(self, name)
            if modality == "infrared":
                ir_value = getattr(self, f"{name}_ir")
                value = value if ir_value is None else ir_value
            settings[name] = value
        return settings

    @property
    def active_modalities(self) -> tuple:
        """The encoders this configuration builds, in the order ("visible", "infrared")."""
        return ("visible", "infrared") if self.modalities == "both" else (self.modalities,)

    @property
    def feature_channels(self) -> list:
        """Channels of the four output maps F1..F4 (strides 4, 8, 16, 32)."""
        sizes = self.encoder_settings(self.active_modalities[0])["hidden_sizes"]
        return [sizes[0], sizes[1], sizes[2], sizes[2]]

    def _validate(self):
        if self.modalities not in _MODALITIES:
            raise ValueError(f"modalities must be one of {_MODALITIES}, got {self.modalities!r}")
        if self.fem_mode not in FEM_MODES:
            raise ValueError(f"fem_mode must be one of {FEM_MODES}, got {self.fem_mode!r}")
        for modality in ("visible", "infrared"):
            s = self.encoder_settings(modality)
            for name in ("hidden_sizes", "depths", "mlp_ratios", "patch_sizes"):
                if len(s[name]) != 3:
                    raise ValueError(f"{name} ({modality}) must have 3 entries (one per stage), got {s[name]}")
            if s["hidden_sizes"][2] % s["num_attention_heads"]:
                raise ValueError(
                    f"hidden_sizes[2]={s['hidden_sizes'][2]} ({modality}) is not divisible by "
                    f"num_attention_heads={s['num_attention_heads']}"
                )
            stride = s["patch_sizes"][0] * s["patch_sizes"][1] * s["patch_sizes"][2]
            if s["pretrain_image_size"] % stride:
                raise ValueError(
                    f"pretrain_image_size={s['pretrain_image_size']} ({modality}) is not divisible by the "
                    f"encoder stride {stride}"
                )
        if self.modalities == "both":
            vis, ir = self.encoder_settings("visible"), self.encoder_settings("infrared")
            for name in ("hidden_sizes", "patch_sizes"):
                if vis[name] != ir[name]:
                    raise ValueError(
                        f"fusion needs equal {name} for both encoders, got visible {vis[name]} and infrared {ir[name]}"
                    )
            if not 0.0 < self.tem_initial_prompt < self.tem_prompt_range:
                raise ValueError(
                    f"tem_initial_prompt must lie in (0, tem_prompt_range={self.tem_prompt_range}), got "
                    f"{self.tem_initial_prompt}"
                )
            size = self.agf_neighbourhood
            if size < 0 or (size and size % 2 == 0):
                raise ValueError(f"agf_neighbourhood must be 0 (global attention) or odd and positive, got {size}")
            if size and any(stride != 1 for stride in self.agf_kv_stride):
                raise ValueError(f"agf_neighbourhood needs agf_kv_stride of 1 at every scale, got {self.agf_kv_stride}")
            if self.use_tem:
                depth = min(vis["depths"][2], ir["depths"][2])
                bad = [j for j in self.tem_layers if not 1 <= j <= depth]
                if bad:
                    raise ValueError(f"tem_layers {bad} are outside the transformer blocks 1..{depth}")
        weights = self.semantic_loss_class_weights
        if weights is not None and not all(w > 0 and w != float("inf") for w in weights):
            raise ValueError(f"semantic_loss_class_weights must be positive and finite, got {weights}")
        weight = self.modality_auxiliary_loss_weight
        if not 0.0 <= weight < float("inf"):
            raise ValueError(f"modality_auxiliary_loss_weight must be finite and >= 0, got {weight}")
        if len(self.agf_num_heads) != 4 or len(self.agf_kv_stride) != 4:
            raise ValueError("agf_num_heads and agf_kv_stride need one entry per scale (4)")
        if len(self.anchor_sizes) != 5:
            raise ValueError(f"anchor_sizes needs one size per pyramid level P2..P6 (5), got {self.anchor_sizes}")
        if not self.anchor_scales or not all(s > 0 for s in self.anchor_scales):
            raise ValueError(f"anchor_scales must be one or more positive multipliers, got {self.anchor_scales}")
        if not self.anchor_aspect_ratios or not all(r > 0 for r in self.anchor_aspect_ratios):
            raise ValueError(f"anchor_aspect_ratios must be positive, got {self.anchor_aspect_ratios}")
        for channels, heads in zip(self.feature_channels, self.agf_num_heads):
            if channels % heads:
                raise ValueError(f"AGF: {channels} channels are not divisible by {heads} heads")
