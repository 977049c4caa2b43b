"""PyTorch IVGF: the fusion-guided infrared and visible general framework (Liu et al., arXiv 2409.00973).

Two encoders (MCMAE for the visible image, InfMAE for the infrared image) run stage by stage side by side; the
feature-enhancement module (FEM) acts after every stage, the token-enhancement module (TEM) between chosen
transformer blocks, and the attention-guided fusion (AGF) merges the two modalities at strides 4, 8, 16 and 32.
Task heads (UperNet for segmentation, a Mask R-CNN-style detector) read the fused maps F1..F4.
"""

import inspect
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BackboneOutput, SemanticSegmenterOutput
from transformers.models.upernet.modeling_upernet import UperNetFCNHead, UperNetHead
from transformers.utils import ModelOutput

from .configuration_ivgf import IVGFConfig
from .encoder_ivgf import IVGFEncoder, init_encoder_weights
from .fusion_ivgf import (
    IVGFAttentionGuidedFusion,
    IVGFFeatureEnhancement,
    IVGFSumFusion,
    IVGFTokenEnhancement,
    init_fusion_weights,
)

__all__ = [
    "IVGFPreTrainedModel",
    "IVGFModel",
    "IVGFModelOutput",
    "IVGFBackbone",
    "IVGFForSemanticSegmentation",
]


# ITU-R BT.601 luma: the grey level of an RGB image wherever IVGF converts one (missing infrared image in the
# Table VI protocol, cutout&mix patches, the model's in-forward replacement).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass
class IVGFModelOutput(ModelOutput):
    """Output of [`IVGFModel`].

    Args:
        feature_maps (`tuple[torch.FloatTensor]`): the fused maps F1..F4: (B, C1, H/4, W/4), (B, C2, H/8, W/8),
            (B, C3, H/16, W/16), (B, C3, floor((H/16 - 3)/2) + 1, same for W).
        hidden_states (`tuple[torch.FloatTensor]`, *optional*): with ``output_hidden_states=True``, the maps that
            the task heads read, in stride order 4, 8, 16, 32: the fused F1..F4 (a single-modality model: its
            encoder's F1..F4). The same tuple as ``hidden_states`` of every IVGF task model.
        visible_feature_maps (`tuple[torch.FloatTensor]`, *optional*): the visible encoder's maps after the FEM,
            returned with ``output_hidden_states=True``.
        infrared_feature_maps (`tuple[torch.FloatTensor]`, *optional*): the same for the infrared encoder.
        visible_hidden_states (`tuple[torch.FloatTensor]`, *optional*): the visible transformer stage's tokens
            (B, N, C3), N = H/16 * W/16: the embedded input, then each block's output (after the TEM where it acts).
        infrared_hidden_states (`tuple[torch.FloatTensor]`, *optional*): the same for the infrared encoder.
    """

    feature_maps: Optional[tuple] = None
    hidden_states: Optional[tuple] = None
    visible_feature_maps: Optional[tuple] = None
    infrared_feature_maps: Optional[tuple] = None
    visible_hidden_states: Optional[tuple] = None
    infrared_hidden_states: Optional[tuple] = None


class IVGFPreTrainedModel(PreTrainedModel):
    """Weight initialisation, gradient checkpointing and the loading conventions shared by every IVGF model."""

    config_class = IVGFConfig
    base_model_prefix = "ivgf"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["IVGFEncoder"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if not init_fusion_weights(module, std):
            init_encoder_weights(module, std)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' ``save_pretrained`` (also behind ``push_to_hub`` and the Trainer's saves and pushes).

        The folder gets the code files and ``auto_map`` (every IVGF class sets ``_auto_class``), so it loads with
        ``trust_remote_code=True`` without ``ivgf_hf``; task models also record their RGB-T pipeline in
        ``config.custom_pipelines``, and its file ``pipeline_ivgf.py`` is copied with the model's file.
        """
        pipelines = self._custom_pipelines()
        if pipelines:
            self.config.custom_pipelines = pipelines
        elif hasattr(self.config, "custom_pipelines"):  # a base model saved with a task model's configuration
            del self.config.custom_pipelines
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _custom_pipelines(self) -> dict:
        # A relative import in the model's file is what makes transformers copy pipeline_ivgf.py along with it.
        from .pipeline_ivgf import custom_pipelines

        return custom_pipelines(type(self).__name__)


def _check_pixel_arguments(pixel_values, pixel_values_ir) -> None:
    """Raise a ValueError for what no IVGF forward can take: no images, an empty batch, non-float tensors."""
    if pixel_values is None and pixel_values_ir is None:
        raise ValueError(
            "IVGF needs pixel_values (visible, (batch, channels, height, width)) and/or pixel_values_ir (infrared, "
            "same layout); both are None"
        )
    for name, tensor in (("pixel_values", pixel_values), ("pixel_values_ir", pixel_values_ir)):
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{name} must be a (batch, channels, height, width) tensor, got {shape}")
        if tensor.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {tuple(tensor.shape)}); pass at least one image")
        if not tensor.is_floating_point():
            raise ValueError(
                f"{name} has dtype {tensor.dtype}; IVGF takes normalised floating-point images (IVGFImageProcessor "
                "turns uint8 images into them)"
            )


def _replace_missing_modality(
    pixel_values: Optional[torch.Tensor], pixel_values_ir: Optional[torch.Tensor], config: IVGFConfig
) -> tuple:
    """Fill a missing modality with the other one (the paper's Table VI protocol), converting channels.

    Works on the normalised tensors the model receives, since the model does not know the processor's mean / std:
    grey = BT.601 luma (:data:`LUMA_WEIGHTS`) of the three visible channels (their mean for other channel counts),
    visible = the infrared channel(s)' mean repeated. The exact protocol replaces the raw image before
    normalisation (``ivgf_hf.inference.apply_protocol``, used by ``ivgf eval``); the two differ by the
    normalisation (raw grey 128 becomes 0.191 here but 0.385 there with the default constants).
    """
    if pixel_values is None and pixel_values_ir is None:
        raise ValueError("IVGF needs pixel_values (visible) or pixel_values_ir (infrared); both are None")
    if pixel_values_ir is None:
        channels = config.num_channels_ir
        if pixel_values.shape[1] == len(LUMA_WEIGHTS):
            weights = pixel_values.new_tensor(LUMA_WEIGHTS).view(1, -1, 1, 1)
            grey = (pixel_values * weights).sum(dim=1, keepdim=True)
        else:
            grey = pixel_values.mean(dim=1, keepdim=True)
        pixel_values_ir = grey.expand(-1, channels, -1, -1)
    elif pixel_values is None:
        grey = pixel_values_ir.mean(dim=1, keepdim=True)
        pixel_values = grey.expand(-1, config.num_channels, -1, -1)
    return pixel_values.contiguous(), pixel_values_ir.contiguous()


class IVGFModel(IVGFPreTrainedModel):
    """The two encoders with the fusion modules; returns the fused multi-scale maps F1..F4.

    With ``config.modalities`` set to ``"visible"`` or ``"infrared"`` only that encoder is built and its maps are
    returned as they are (no fusion): the single-modality models.
    """

    _auto_class = "AutoModel"

    def __init__(self, config: IVGFConfig):
        super().__init__(config)
        for modality in config.active_modalities:
            encoder = IVGFEncoder(
                config.encoder_settings(modality), config.layer_norm_eps, config.conv_layer_norm_eps, config.hidden_act
            )
            setattr(self, f"{modality}_encoder", encoder)
        self.is_fused = config.modalities == "both"
        if self.is_fused:
            channels = config.feature_channels
            if config.use_fem:
                self.feature_enhancements = nn.ModuleList(
                    [
                        IVGFFeatureEnhancement(
                            c,
                            config.fem_spatial_reduction,
                            config.fem_channel_reduction,
                            config.fem_mode,
                            config.fem_scaled_residual,
                            config.fusion_fan_init,
                        )
                        for c in channels
                    ]
                )
            if config.use_tem:
                dim = channels[2]
                self.token_enhancements = nn.ModuleList(
                    [
                        IVGFTokenEnhancement(
                            dim,
                            config.tem_hidden_size or dim,
                            config.tem_num_adapters,
                            config.tem_adapter_bottleneck,
                            config.layer_norm_eps,
                            config.tem_prompt_range,
                            config.tem_initial_prompt,
                        )
                        for _ in config.tem_layers
                    ]
                )
            if config.use_agf:
                self.fusions = nn.ModuleList(
                    [
                        IVGFAttentionGuidedFusion(
                            c,
                            heads,
                            stride,
                            config.agf_residual,
                            config.agf_norm,
                            config.layer_norm_eps,
                            config.fusion_fan_init,
                            config.agf_neighbourhood,
                            config.agf_merge_norm,
                        )
                        for c, heads, stride in zip(channels, config.agf_num_heads, config.agf_kv_stride)
                    ]
                )
            else:
                self.fusions = nn.ModuleList([IVGFSumFusion() for _ in channels])
        self.post_init()

    def _check_inputs(self, pixel_values: torch.Tensor, pixel_values_ir: torch.Tensor):
        if pixel_values.shape[0] != pixel_values_ir.shape[0]:
            raise ValueError(
                f"batch sizes differ: pixel_values {pixel_values.shape[0]}, pixel_values_ir {pixel_values_ir.shape[0]}"
            )
        if self.is_fused and pixel_values.shape[-2:] != pixel_values_ir.shape[-2:]:
            raise ValueError(
                f"visible and infrared images must be aligned pairs of the same size, got pixel_values "
                f"{tuple(pixel_values.shape)} and pixel_values_ir {tuple(pixel_values_ir.shape)}"
            )
        encoders = {"visible": ("pixel_values", pixel_values), "infrared": ("pixel_values_ir", pixel_values_ir)}
        for modality in self.config.active_modalities:
            name, tensor = encoders[modality]
            getattr(self, f"{modality}_encoder").check_pixel_values(tensor, name)
        if not torch.compiler.is_compiling():
            for name, tensor in encoders.values():
                if not torch.isfinite(tensor).all():
                    raise ValueError(f"{name} contains NaN or infinite values")

    def _forward_single(self, pixel_values: torch.Tensor, output_hidden_states: bool) -> IVGFModelOutput:
        modality = self.config.modalities
        encoder = getattr(self, f"{modality}_encoder")
        f1 = encoder.stage1(pixel_values)
        f2 = encoder.stage2(f1)
        tokens, grid = encoder.embed_tokens(f2)
        hidden = [tokens]
        for block in encoder.blocks3:
            tokens = block(tokens, grid)
            hidden.append(tokens)
        f3 = encoder.tokens_to_map(tokens, grid)
        maps = (f1, f2, f3, encoder.stage4(f3))
        extras = {}
        if output_hidden_states:
            extras = {
                "hidden_states": maps,
                f"{modality}_feature_maps": maps,
                f"{modality}_hidden_states": tuple(hidden),
            }
        return IVGFModelOutput(feature_maps=maps, **extras)

    def _enhance(self, index: int, visible: torch.Tensor, infrared: torch.Tensor) -> tuple:
        if not self.config.use_fem:
            return visible, infrared
        return self.feature_enhancements[index](visible, infrared)

    def _forward_fused(self, pixel_values, pixel_values_ir, output_hidden_states: bool) -> IVGFModelOutput:
        vis_encoder, ir_encoder = self.visible_encoder, self.infrared_encoder
        vis, ir = self._enhance(0, vis_encoder.stage1(pixel_values), ir_encoder.stage1(pixel_values_ir))
        vis_maps, ir_maps = [vis], [ir]
        vis, ir = self._enhance(1, vis_encoder.stage2(vis), ir_encoder.stage2(ir))
        vis_maps.append(vis)
        ir_maps.append(ir)

        vis_tokens, grid = vis_encoder.embed_tokens(vis)
        ir_tokens, _ = ir_encoder.embed_tokens(ir)
        vis_hidden, ir_hidden = [vis_tokens], [ir_tokens]
        tem_after = {block: index for index, block in enumerate(self.config.tem_layers)} if self.config.use_tem else {}
        for index in range(max(len(vis_encoder.blocks3), len(ir_encoder.blocks3))):
            if index < len(vis_encoder.blocks3):
                vis_tokens = vis_encoder.blocks3[index](vis_tokens, grid)
            if index < len(ir_encoder.blocks3):
                ir_tokens = ir_encoder.blocks3[index](ir_tokens, grid)
            if index + 1 in tem_after:
                vis_tokens, ir_tokens = self.token_enhancements[tem_after[index + 1]](vis_tokens, ir_tokens)
            vis_hidden.append(vis_tokens)
            ir_hidden.append(ir_tokens)

        vis, ir = self._enhance(
            2, vis_encoder.tokens_to_map(vis_tokens, grid), ir_encoder.tokens_to_map(ir_tokens, grid)
        )
        vis_maps.append(vis)
        ir_maps.append(ir)
        vis, ir = self._enhance(3, vis_encoder.stage4(vis), ir_encoder.stage4(ir))
        vis_maps.append(vis)
        ir_maps.append(ir)

        fused = tuple(fusion(v, i) for fusion, v, i in zip(self.fusions, vis_maps, ir_maps))
        extras = {}
        if output_hidden_states:
            extras = dict(
                hidden_states=fused,
                visible_feature_maps=tuple(vis_maps),
                infrared_feature_maps=tuple(ir_maps),
                visible_hidden_states=tuple(vis_hidden),
                infrared_hidden_states=tuple(ir_hidden),
            )
        return IVGFModelOutput(feature_maps=fused, **extras)

    def forward(
        self,
        pixel_values: Optional[torch.FloatTensor] = None,
        pixel_values_ir: Optional[torch.FloatTensor] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`, *optional*):
                Normalised visible images (see [`IVGFImageProcessor`]); height and width divisible by 16.
            pixel_values_ir (`torch.FloatTensor` of shape `(batch_size, num_channels_ir, height, width)`, *optional*):
                Normalised infrared images aligned with the visible ones. A missing modality (None) is replaced by
                the other one, as in the paper's missing-modality protocol; both None is an error.
            output_hidden_states (`bool`, *optional*): also return `hidden_states` (F1..F4) and each modality's maps
                and transformer tokens.
            return_dict (`bool`, *optional*): return an [`IVGFModelOutput`] instead of a tuple.

        Floating-point inputs are cast to the weights' dtype (e.g. bf16 images into an fp32 model); other dtypes,
        empty batches and both inputs None are `ValueError`s, as are mismatched visible / infrared sizes.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        _check_pixel_arguments(pixel_values, pixel_values_ir)
        # floating-point inputs follow the weights' dtype (fp16 / bf16 images into an fp32 model, and the reverse)
        pixel_values, pixel_values_ir = (t if t is None else t.to(self.dtype) for t in (pixel_values, pixel_values_ir))
        pixel_values, pixel_values_ir = _replace_missing_modality(pixel_values, pixel_values_ir, self.config)
        self._check_inputs(pixel_values, pixel_values_ir)
        if self.is_fused:
            output = self._forward_fused(pixel_values, pixel_values_ir, output_hidden_states)
        else:
            single = pixel_values if self.config.modalities == "visible" else pixel_values_ir
            output = self._forward_single(single, output_hidden_states)
        return output if return_dict else output.to_tuple()


class IVGFBackbone(IVGFPreTrainedModel):
    """IVGF as a backbone: ``BackboneOutput.feature_maps`` are the fused maps of ``out_features``.

    For consumers that pass a single tensor, ``pixel_values`` may also hold the visible and infrared channels
    stacked (``num_channels + num_channels_ir`` channels, visible first): they are split here.
    """

    _auto_class = "AutoBackbone"
    stage_names = ["stage1", "stage2", "stage3", "stage4"]

    def __init__(self, config: IVGFConfig):
        super().__init__(config)
        self.ivgf = IVGFModel(config)
        out_features = getattr(config, "out_features", None) or list(self.stage_names)
        unknown = [name for name in out_features if name not in self.stage_names]
        if unknown:
            raise ValueError(f"out_features {unknown} are not among the stages {self.stage_names}")
        self.out_features = list(out_features)
        self.out_indices = [self.stage_names.index(name) for name in self.out_features]
        self.num_features = list(config.feature_channels)
        self.post_init()

    @property
    def channels(self) -> list:
        """Channels of each returned map."""
        return [self.num_features[index] for index in self.out_indices]

    def forward(
        self,
        pixel_values: Optional[torch.FloatTensor] = None,
        pixel_values_ir: Optional[torch.FloatTensor] = None,
        output_hidden_states: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        r"""
        Args:
            pixel_values, pixel_values_ir: as in [`IVGFModel`]; or visible and infrared stacked in ``pixel_values``.
            output_attentions: not supported (IVGF uses fused attention kernels); must be None or False.
        """
        if output_attentions:
            raise ValueError("IVGFBackbone does not return attention weights")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        stacked = self.config.num_channels + self.config.num_channels_ir
        if pixel_values is not None and pixel_values_ir is None and pixel_values.shape[1] == stacked:
            pixel_values, pixel_values_ir = pixel_values.split(
                [self.config.num_channels, self.config.num_channels_ir], 1
            )
        output = self.ivgf(pixel_values, pixel_values_ir, output_hidden_states=output_hidden_states, return_dict=True)
        maps = tuple(output.feature_maps[index] for index in self.out_indices)
        hidden = output.hidden_states
        if not return_dict:
            return (maps,) + ((hidden,) if hidden is not None else ())
        return BackboneOutput(feature_maps=maps, hidden_states=hidden)


def _auxiliary_head(config: IVGFConfig) -> UperNetFCNHead:
    """transformers' FCN head on F3; its constructor takes ``in_channels`` since v5 and reads the config before."""
    if config.auxiliary_in_channels is None:
        config.auxiliary_in_channels = config.feature_channels[2]
    if "in_channels" in inspect.signature(UperNetFCNHead.__init__).parameters:
        return UperNetFCNHead(config, in_channels=config.feature_channels, in_index=2)
    return UperNetFCNHead(config, in_index=2)


class IVGFForSemanticSegmentation(IVGFPreTrainedModel):
    """IVGF with transformers' UperNet decode head (pool scales 1, 2, 3, 6) and an auxiliary FCN head on F3.

    Logits are upsampled (bilinear) to the input size. With ``labels`` the loss is the cross-entropy of the decode
    head plus ``auxiliary_loss_weight`` times that of the auxiliary head, ignoring ``semantic_loss_ignore_index`` and
    weighting classes by ``semantic_loss_class_weights`` when set.
    The heads use BatchNorm as in the paper: training with one image per process needs SyncBatchNorm across
    several processes (the training loop converts it under multi-GPU); a single process needs 2 or more images.
    """

    _auto_class = "AutoModelForSemanticSegmentation"

    def __init__(self, config: IVGFConfig):
        super().__init__(config)
        self.ivgf = IVGFModel(config)
        self.decode_head = UperNetHead(config, in_channels=config.feature_channels)
        self.auxiliary_head = _auxiliary_head(config) if config.use_auxiliary_head else None
        self.post_init()

    def _check_batch_norm_batch(self, batch_size: int):
        if self.training and batch_size == 1 and torch.is_grad_enabled():
            plain = [m for m in self.decode_head.modules() if type(m) is nn.BatchNorm2d]
            if plain:
                raise ValueError(
                    "training IVGFForSemanticSegmentation with 1 image per step fails in the UperNet pooling branch "
                    "(BatchNorm on a 1x1 map): use a batch of 2 or more, or SyncBatchNorm across several processes "
                    "(torch.nn.SyncBatchNorm.convert_sync_batchnorm; `ivgf train` does this under multi-GPU)"
                )

    def forward(
        self,
        pixel_values: Optional[torch.FloatTensor] = None,
        pixel_values_ir: Optional[torch.FloatTensor] = None,
        labels: Optional[torch.LongTensor] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        r"""
        Args:
            pixel_values, pixel_values_ir: as in [`IVGFModel`].
            labels (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*):
                Class ids per pixel in `[0, num_labels)`, or `semantic_loss_ignore_index` (255) to ignore.
            output_hidden_states (`bool`, *optional*): also return the fused maps F1..F4 as `hidden_states`.
            return_dict (`bool`, *optional*): return a [`SemanticSegmenterOutput`] instead of a tuple.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        _check_pixel_arguments(pixel_values, pixel_values_ir)
        if labels is not None and self.config.num_labels < 2:
            raise ValueError(f"segmentation needs num_labels >= 2, got {self.config.num_labels}")
        self._check_batch_norm_batch((pixel_values if pixel_values is not None else pixel_values_ir).shape[0])
        per_modality_loss = labels is not None and self._uses_modality_auxiliary_loss()
        outputs = self.ivgf(
            pixel_values,
            pixel_values_ir,
            output_hidden_states=output_hidden_states or per_modality_loss,
            return_dict=True,
        )
        features = list(outputs.feature_maps)
        batch_size = features[0].shape[0]
        size = (features[0].shape[-2] * 4, features[0].shape[-1] * 4)
        logits = F.interpolate(self.decode_head(features), size=size, mode="bilinear", align_corners=False)

        loss = None
        if labels is not None:
            if labels.shape != (batch_size, *size):
                raise ValueError(f"labels must have shape {(batch_size, *size)}, got {tuple(labels.shape)}")
            loss = self._loss(logits, labels)
            if self.auxiliary_head is not None:
                auxiliary = F.interpolate(
                    self.auxiliary_head(features), size=size, mode="bilinear", align_corners=False
                )
                loss = loss + self.config.auxiliary_loss_weight * self._loss(auxiliary, labels)
            if per_modality_loss:
                loss = loss + self._modality_auxiliary_loss(outputs, labels, size)

        hidden_states = outputs.hidden_states if output_hidden_states else None
        if not return_dict:
            output = (logits,) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=hidden_states)

    def _uses_modality_auxiliary_loss(self) -> bool:
        return self.config.modality_auxiliary_loss_weight > 0 and self.ivgf.is_fused and self.auxiliary_head is not None

    def _modality_auxiliary_loss(self, outputs: IVGFModelOutput, labels: torch.Tensor, size: tuple) -> torch.Tensor:
        """``modality_auxiliary_loss_weight`` x the auxiliary head's loss on each modality's own maps (before
        fusion), summed over the two modalities."""
        total = 0.0
        for maps in (outputs.visible_feature_maps, outputs.infrared_feature_maps):
            logits = F.interpolate(self.auxiliary_head(list(maps)), size=size, mode="bilinear", align_corners=False)
            total = total + self._loss(logits, labels)
        return self.config.modality_auxiliary_loss_weight * total

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weighted mean cross-entropy over the labelled pixels; 0 (graph-connected) when every pixel is ignored.

        Branch-free, so `torch.compile` traces it without graph breaks; the label-range check runs in eager mode.
        """
        ignore = self.config.semantic_loss_ignore_index
        labelled = labels != ignore
        if not torch.compiler.is_compiling():
            invalid = labelled & ((labels < 0) | (labels >= self.config.num_labels))
            if invalid.any():
                raise ValueError(
                    f"labels contain ids {labels[invalid].unique().tolist()} outside [0, {self.config.num_labels}) "
                    f"that are not the ignore index {ignore}"
                )
        weights = self._class_weights(logits)
        total = F.cross_entropy(logits.float(), labels, weight=weights, ignore_index=ignore, reduction="sum")
        if weights is None:
            normaliser = labelled.sum()
        else:
            normaliser = (weights[torch.where(labelled, labels, 0)] * labelled).sum()
        return total / normaliser.float().clamp(min=torch.finfo(torch.float32).tiny)

    def _class_weights(self, logits: torch.Tensor):
        """`config.semantic_loss_class_weights` as a float32 tensor on the logits' device, or None."""
        weights = self.config.semantic_loss_class_weights
        if weights is None:
            return None
        if len(weights) != self.config.num_labels:
            raise ValueError(
                f"semantic_loss_class_weights has {len(weights)} values but the model has {self.config.num_labels} "
                "labels"
            )
        return torch.tensor(weights, dtype=torch.float32, device=logits.device)
