"""IVGF for object detection: the fused maps F1..F4 under torchvision's FPN, RPN and (Mask) R-CNN RoI heads.

Every detection part comes from torchvision (``FeaturePyramidNetwork``, ``RPNHead``, ``RegionProposalNetwork``,
``RoIHeads``, ``MultiScaleRoIAlign``, ``TwoMLPHead``, ``FastRCNNPredictor``, ``MaskRCNNHeads``,
``MaskRCNNPredictor``); so do the losses, the box coding and the NMS. torchvision's ``GeneralizedRCNNTransform`` is
not used: the image processor has normalised, resized and padded the images, and boxes stay in the
``pixel_values`` frame.
"""

import warnings
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.poolers import LevelMapper
from transformers.utils import ModelOutput

from .configuration_ivgf import IVGFConfig

# transformers 4.57 copies only the direct relative imports of a module loaded as remote code from a local folder:
# importing modeling_ivgf's own siblings here makes them travel with this file.
from .encoder_ivgf import IVGFEncoder  # noqa: F401
from .fusion_ivgf import IVGFAttentionGuidedFusion  # noqa: F401
from .image_processing_ivgf import normalised_cxcywh_to_xyxy
from .modeling_ivgf import IVGFModel, IVGFPreTrainedModel

__all__ = [
    "IVGFForObjectDetection",
    "IVGFObjectDetectionOutput",
    "IVGFAnchorGenerator",
    "init_detection_weights",
    "labels_to_torchvision_targets",
]

# Pyramid levels fed to the RoI poolers (P2..P5); the FPN's max-pool block adds "pool" (P6) for the RPN only.
POOLED_LEVELS = ("p2", "p3", "p4", "p5")
# Nominal strides of P2..P6. IVGF's stride-32 map has floor((H/16 - 3)/2) + 1 rows (no padding), so the strides
# torchvision would infer from the map sizes (image // grid, 2 ** round(log2(grid / image))) drift with the input.
PYRAMID_STRIDES = (4, 8, 16, 32, 64)
# Width of the two fully connected layers of the box head (torchvision's and MMDetection's Faster R-CNN).
BOX_HEAD_REPRESENTATION_SIZE = 1024

# Name of the attribute that carries a leaf module's torchvision initialisation (see init_detection_weights).
_INIT_ATTRIBUTE = "_ivgf_torchvision_init"
_INIT_RECIPES = ("fpn", "rpn", "torch_default", "mask_head", "mask_predictor")


@dataclass
class IVGFObjectDetectionOutput(ModelOutput):
    """Output of [`IVGFForObjectDetection`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): returned when `labels` are given; the sum of
            torchvision's RPN and RoI losses (every term weighted 1).
        loss_dict (`dict[str, torch.FloatTensor]`, *optional*): the terms of `loss`: `loss_objectness`,
            `loss_rpn_box_reg`, `loss_classifier`, `loss_box_reg`, and `loss_mask` when the mask head is trained.
        detections (`list[dict[str, torch.Tensor]]`, *optional*): eval mode, or training mode without `labels`;
            one dict per image with "boxes" `(n, 4)` float absolute (x0, y0, x1, y1) in the `pixel_values` frame
            (pixels), "scores" `(n,)` in decreasing order, "labels" `(n,)` int64 0-based class ids, and with the
            mask head "masks" `(n, 1, H, W)` float mask probabilities pasted into the `pixel_values` frame.
        hidden_states (`tuple[torch.FloatTensor]`, *optional*): with `output_hidden_states=True`, the fused maps
            F1..F4 of [`IVGFModel`] (strides 4, 8, 16, 32), as `IVGFModelOutput.hidden_states`.
    """

    loss: Optional[torch.FloatTensor] = None
    loss_dict: Optional[dict] = None
    detections: Optional[list] = None
    hidden_states: Optional[tuple] = None


class IVGFAnchorGenerator(AnchorGenerator):
    """torchvision's `AnchorGenerator` placed on fixed pyramid strides instead of strides inferred from map sizes.

    torchvision takes each level's stride as ``image_size // grid_size``; IVGF's unpadded stride-32 map makes that
    42 for a 128-pixel image and 33 at 896. Fixed strides keep the anchors on the grid that the RoI poolers assume.
    """

    def __init__(self, sizes: tuple, aspect_ratios: tuple, strides: tuple):
        super().__init__(sizes, aspect_ratios)
        if len(strides) != len(sizes):
            raise ValueError(f"need one stride per anchor level, got {len(strides)} strides for {len(sizes)} levels")
        self.strides = tuple(int(stride) for stride in strides)

    def forward(self, image_list: ImageList, feature_maps: list) -> list:
        """Anchors `(sum_l h_l * w_l * A, 4)` absolute xyxy, the same tensor for every image of the batch."""
        if len(feature_maps) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} feature maps, got {len(feature_maps)}")
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        grid_sizes = [list(feature_map.shape[-2:]) for feature_map in feature_maps]
        strides = [[torch.tensor(stride, dtype=torch.int64, device=device)] * 2 for stride in self.strides]
        self.set_cell_anchors(dtype, device)
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [anchors for _ in image_list.image_sizes]


def _roi_pooler(output_size: int) -> MultiScaleRoIAlign:
    """torchvision's multi-scale RoIAlign over P2..P5 (sampling ratio 2) with the scales fixed to 1/4..1/32.

    Left alone it infers and caches the scales from the first batch it sees (a 96-pixel batch would fix P5 at 1/64).
    """
    pooler = MultiScaleRoIAlign(featmap_names=list(POOLED_LEVELS), output_size=output_size, sampling_ratio=2)
    strides = PYRAMID_STRIDES[: len(POOLED_LEVELS)]
    pooler.scales = [1.0 / stride for stride in strides]
    levels = [stride.bit_length() - 1 for stride in strides]  # log2 of the strides: 2..5
    pooler.map_levels = LevelMapper(levels[0], levels[-1])
    return pooler


def _mark_init(module: nn.Module, recipe: str) -> None:
    """Tag every parameter-owning leaf of a torchvision module with the recipe torchvision initialised it with."""
    for leaf in module.modules():
        if isinstance(leaf, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            setattr(leaf, _INIT_ATTRIBUTE, recipe)


def init_detection_weights(module: nn.Module, std: float) -> bool:
    """Initialise a detection leaf module as torchvision does; True if ``module`` was one of them.

    The leaves of the FPN, RPN and RoI heads carry a recipe tag set at construction, so the rule keys on the
    module that directly owns the parameters (transformers 5.x skips parent-keyed branches for custom code):

    - "fpn": FPN convolutions, kaiming uniform (a=1), bias 0;
    - "rpn": RPN head convolutions, normal (std 0.01), bias 0;
    - "torch_default": the box head's and box predictor's linear layers, PyTorch's default (``reset_parameters``);
    - "mask_head": mask head convolutions, kaiming normal (fan_out, relu), bias 0;
    - "mask_predictor": mask predictor layers, kaiming normal (fan_out, relu) weight, PyTorch's default bias.

    ``std`` (the config's ``initializer_range``) is accepted for the shared ``init_*_weights(module, std)``
    signature; torchvision's initialisations do not use it.
    """
    recipe = getattr(module, _INIT_ATTRIBUTE, None)
    if recipe is None:
        return False
    if recipe == "fpn":
        nn.init.kaiming_uniform_(module.weight, a=1)
        nn.init.constant_(module.bias, 0)
    elif recipe == "rpn":
        nn.init.normal_(module.weight, std=0.01)
        nn.init.constant_(module.bias, 0)
    elif recipe == "torch_default":
        module.reset_parameters()
    elif recipe == "mask_head":
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(module.bias)
    elif recipe == "mask_predictor":
        module.reset_parameters()
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    else:
        raise ValueError(f"unknown detection init recipe {recipe!r}; expected one of {_INIT_RECIPES}")
    return True


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _as_tensor(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def _convert_one_image(entry, index: int, image_size: tuple, num_labels: int, device, with_masks: bool) -> dict:
    """One image's transformers-style labels -> torchvision target {"boxes" xyxy pixels, "labels" 1-based, ...}."""
    if not hasattr(entry, "keys") or "class_labels" not in entry or "boxes" not in entry:
        keys = sorted(entry.keys()) if hasattr(entry, "keys") else type(entry).__name__
        raise ValueError(
            f"labels[{index}] must be a dict with 'class_labels' (0-based ids) and 'boxes' (normalised cx, cy, w, h), "
            f"got {keys}"
        )
    classes = _as_tensor(entry["class_labels"])
    boxes = _as_tensor(entry["boxes"])
    if classes.ndim != 1 or classes.dtype not in _INTEGER_DTYPES:
        raise ValueError(
            f"labels[{index}]['class_labels'] must be a 1-D integer tensor, got {classes.dtype} {tuple(classes.shape)}"
        )
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != classes.shape[0]:
        raise ValueError(
            f"labels[{index}]['boxes'] must have shape (n, 4) with n = len(class_labels) = {classes.shape[0]}, "
            f"got {tuple(boxes.shape)}"
        )
    boxes = boxes.to(device=device, dtype=torch.float32)
    classes = classes.to(device=device, dtype=torch.int64)
    if not torch.isfinite(boxes).all():
        raise ValueError(f"labels[{index}]['boxes'] holds NaN or infinite values")
    out_of_range = (classes < 0) | (classes >= num_labels)
    if out_of_range.any():
        raise ValueError(
            f"labels[{index}]['class_labels'] holds ids {classes[out_of_range].unique().tolist()} outside "
            f"[0, {num_labels}) (config.num_labels = {num_labels}; ids are 0-based, without a background class)"
        )
    if (boxes[:, 2:] < 0).any():
        raise ValueError(
            f"labels[{index}]['boxes'] has a negative width or height: boxes must be normalised (cx, cy, w, h), got "
            f"{boxes[(boxes[:, 2:] < 0).any(dim=1)][:4].tolist()}"
        )

    height, width = image_size
    scale = boxes.new_tensor([width, height, width, height])
    corners = normalised_cxcywh_to_xyxy(boxes, height, width)
    corners = torch.minimum(corners.clamp(min=0), scale)
    degenerate = (corners[:, 2] <= corners[:, 0]) | (corners[:, 3] <= corners[:, 1])
    if degenerate.any():
        warnings.warn(
            f"labels[{index}]: dropped {int(degenerate.sum())} box(es) of zero size or outside the "
            f"{height}x{width} image at positions {degenerate.nonzero().flatten().tolist()}",
            stacklevel=3,
        )
    keep = ~degenerate
    target = {"boxes": corners[keep], "labels": classes[keep] + 1}
    if with_masks:
        masks = _as_tensor(entry["masks"])
        if masks.ndim != 3 or masks.shape[0] != classes.shape[0] or tuple(masks.shape[1:]) != (height, width):
            raise ValueError(
                f"labels[{index}]['masks'] must have shape (n, {height}, {width}) with n = {classes.shape[0]}, "
                f"got {tuple(masks.shape)}"
            )
        target["masks"] = masks.to(device=device)[keep]
    return target


def labels_to_torchvision_targets(
    labels: list, image_size: tuple, num_labels: int, device=None, with_masks: bool = False
) -> list:
    """transformers' detection labels -> torchvision's targets: the one place where the conventions meet.

    Args:
        labels: one dict per image with "class_labels" `(n,)` 0-based ids and "boxes" `(n, 4)` normalised
            (cx, cy, w, h) relative to `image_size`; with `with_masks` also "masks" `(n, H, W)`. Other keys are ignored.
        image_size: (H, W) of `pixel_values` in pixels.
        num_labels: number of object classes; ids must lie in [0, num_labels).
        device: where the targets go (default: where each label tensor is).
        with_masks: convert "masks" too.

    Returns:
        One dict per image with "boxes" `(m, 4)` float32 absolute (x0, y0, x1, y1) clipped to the image,
        "labels" `(m,)` int64 ids + 1 (0 is torchvision's background), and "masks" `(m, H, W)` when asked.

    Raises:
        ValueError: malformed entries, ids out of range, non-finite boxes, negative width or height.

    Boxes that extend past the image are clipped to it; boxes of zero size and boxes entirely outside the image
    (zero size after clipping) are dropped with a warning, so an image may end up without objects.
    """
    if not isinstance(labels, (list, tuple)):
        raise ValueError(f"labels must be a list with one dict per image, got {type(labels).__name__}")
    return [
        _convert_one_image(entry, index, tuple(image_size), num_labels, device, with_masks)
        for index, entry in enumerate(labels)
    ]


@contextmanager
def _module_mode(training: bool, *modules: nn.Module):
    """Put ``modules`` in training (or eval) mode for the block: torchvision's heads compute losses only in training
    mode, and detections only in eval mode."""
    previous = [module.training for module in modules]
    for module in modules:
        module.train(training)
    try:
        yield
    finally:
        for module, mode in zip(modules, previous):
            module.train(mode)


@contextmanager
def _mask_branch_off(roi_heads: RoIHeads):
    """Skip the mask branch of ``roi_heads`` for the block (``has_mask()`` is False while its pooler is None)."""
    pooler = roi_heads.mask_roi_pool
    roi_heads.mask_roi_pool = None
    try:
        yield
    finally:
        roi_heads.mask_roi_pool = pooler


class IVGFForObjectDetection(IVGFPreTrainedModel):
    """IVGF with a Faster / Mask R-CNN head from torchvision (the paper's MMDetection Mask R-CNN, boxes only on M3FD).

    Fused F1..F4 -> `FeaturePyramidNetwork` (`fpn_channels`, P2..P6 with the max-pool level) ->
    `RegionProposalNetwork` (`RPNHead`, anchors of `anchor_sizes` one per level x `anchor_aspect_ratios`) ->
    `RoIHeads` (`MultiScaleRoIAlign` 7x7 on P2..P5, `TwoMLPHead` 1024, `FastRCNNPredictor` with `num_labels + 1`
    classes, 0 = background), plus Mask R-CNN's mask branch (RoIAlign 14x14) when `use_mask_head` is set.

    The losses are torchvision's, which it computes only in training mode: in eval mode with `labels` the RPN and
    RoI heads run a second time, switched to training mode for that pass, to give the loss alongside the
    detections (the trunk runs once, in eval mode; anchor and proposal sampling make that loss random).
    """

    _auto_class = "AutoModelForObjectDetection"
    # The Trainer must not pass num_items_in_batch nor rescale the loss: forward returns the finished loss.
    accepts_loss_kwargs = False

    def __init__(self, config: IVGFConfig):
        super().__init__(config)
        # transformers derives loss_type "ForObjectDetection" (DETR's Hungarian loss) from the class name; the
        # losses here are torchvision's, computed in forward (see also the loss_function property).
        self.loss_type = None
        if config.num_labels < 1:
            raise ValueError(f"object detection needs num_labels >= 1, got {config.num_labels}")
        self.ivgf = IVGFModel(config)
        channels = config.fpn_channels
        self.fpn = FeaturePyramidNetwork(list(config.feature_channels), channels, extra_blocks=LastLevelMaxPool())
        _mark_init(self.fpn, "fpn")

        anchor_generator = self.build_anchor_generator(config)
        rpn_head = RPNHead(channels, anchor_generator.num_anchors_per_location()[0])
        _mark_init(rpn_head, "rpn")
        self.rpn = RegionProposalNetwork(
            anchor_generator,
            rpn_head,
            fg_iou_thresh=config.rpn_fg_iou_threshold,
            bg_iou_thresh=config.rpn_bg_iou_threshold,
            batch_size_per_image=config.rpn_batch_size_per_image,
            positive_fraction=config.rpn_positive_fraction,
            pre_nms_top_n={"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test},
            nms_thresh=config.rpn_nms_threshold,
        )

        num_classes = config.num_labels + 1
        box_head = TwoMLPHead(channels * 7 * 7, BOX_HEAD_REPRESENTATION_SIZE)
        box_predictor = FastRCNNPredictor(BOX_HEAD_REPRESENTATION_SIZE, num_classes)
        _mark_init(box_head, "torch_default")
        _mark_init(box_predictor, "torch_default")
        mask_parts = {}
        if config.use_mask_head:
            mask_head = MaskRCNNHeads(channels, [channels] * 4, 1)
            mask_predictor = MaskRCNNPredictor(channels, channels, num_classes)
            _mark_init(mask_head, "mask_head")
            _mark_init(mask_predictor, "mask_predictor")
            mask_parts = dict(mask_roi_pool=_roi_pooler(14), mask_head=mask_head, mask_predictor=mask_predictor)
        self.roi_heads = RoIHeads(
            _roi_pooler(7),
            box_head,
            box_predictor,
            fg_iou_thresh=config.box_fg_iou_threshold,
            bg_iou_thresh=config.box_bg_iou_threshold,
            batch_size_per_image=config.box_batch_size_per_image,
            positive_fraction=config.box_positive_fraction,
            bbox_reg_weights=None,
            score_thresh=config.box_score_threshold,
            nms_thresh=config.box_nms_threshold,
            detections_per_img=config.box_detections_per_image,
            **mask_parts,
        )
        self.post_init()

    @staticmethod
    def build_anchor_generator(config: IVGFConfig) -> "IVGFAnchorGenerator":
        """The RPN's anchors from the config: on level l (P2..P6, strides 4..64) one anchor per size
        `anchor_sizes[l] * s` (`s` in `anchor_scales`) and aspect ratio (`anchor_aspect_ratios`, height / width)."""
        return IVGFAnchorGenerator(
            sizes=tuple(tuple(float(size) * scale for scale in config.anchor_scales) for size in config.anchor_sizes),
            aspect_ratios=(tuple(config.anchor_aspect_ratios),) * len(config.anchor_sizes),
            strides=PYRAMID_STRIDES,
        )

    @property
    def loss_function(self):
        raise NotImplementedError(
            "IVGFForObjectDetection has no separate loss_function: forward(labels=...) returns torchvision's RPN + "
            "RoI losses (transformers' 'ForObjectDetection' loss is DETR's Hungarian loss and does not apply)"
        )

    def _custom_pipelines(self) -> dict:
        # As the base class's: transformers 4.57 copies only this file's own relative imports when it loads it.
        from .pipeline_ivgf import custom_pipelines

        return custom_pipelines(type(self).__name__)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if not init_detection_weights(module, self.config.initializer_range):
            super()._init_weights(module)

    def _targets(self, labels, image_size: tuple, batch_size: int, device) -> list:
        if not isinstance(labels, (list, tuple)) or len(labels) != batch_size:
            got = len(labels) if isinstance(labels, (list, tuple)) else type(labels).__name__
            raise ValueError(f"labels must be a list of {batch_size} dicts (one per image), got {got}")
        with_masks = False
        if self.config.use_mask_head:
            has_masks = [hasattr(entry, "keys") and "masks" in entry for entry in labels]
            if any(has_masks) and not all(has_masks):
                raise ValueError(
                    f"labels: 'masks' given for images {[i for i, m in enumerate(has_masks) if m]} only; give "
                    "instance masks for every image of the batch or for none (boxes-only training)"
                )
            with_masks = all(has_masks)
        return labels_to_torchvision_targets(labels, image_size, self.config.num_labels, device, with_masks)

    def _detect(self, images: ImageList, features: OrderedDict) -> list:
        """Eval-mode proposals and detections, labels shifted back to 0-based and masks pasted into the image."""
        with _module_mode(False, self.rpn, self.roi_heads):
            proposals, _ = self.rpn(images, features)
            detections, _ = self.roi_heads(features, proposals, images.image_sizes)
        for detection, image_size in zip(detections, images.image_sizes):
            detection["labels"] = detection["labels"] - 1
            if "masks" in detection:
                detection["masks"] = paste_masks_in_image(detection["masks"], detection["boxes"], image_size)
        return detections

    def _losses(self, images: ImageList, features: OrderedDict, targets: list) -> dict:
        """torchvision's RPN and RoI losses; the mask branch is skipped when the targets carry no masks."""
        skip_masks = self.roi_heads.has_mask() and "masks" not in targets[0]
        mask_branch = _mask_branch_off(self.roi_heads) if skip_masks else nullcontext()
        with _module_mode(True, self.rpn, self.roi_heads), mask_branch:
            proposals, rpn_losses = self.rpn(images, features, targets)
            _, roi_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        return {**rpn_losses, **roi_losses}

    def forward(
        self,
        pixel_values: Optional[torch.FloatTensor] = None,
        pixel_values_ir: Optional[torch.FloatTensor] = None,
        labels: Optional[list] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        r"""
        Args:
            pixel_values, pixel_values_ir: as in [`IVGFModel`] (normalised, padded; a missing modality is filled
                from the other one).
            labels (`list[dict]`, *optional*): one dict per image, transformers' detection convention:
                "class_labels" `(n,)` int64 0-based, "boxes" `(n, 4)` normalised (cx, cy, w, h) relative to the
                `pixel_values` height and width, and optionally "masks" `(n, H, W)` (used only with the mask head,
                given for all images of the batch or none). `n` may be 0 (the image trains as a negative). See
                [`labels_to_torchvision_targets`] for the validation rules.
            output_hidden_states (`bool`, *optional*): also return the fused maps F1..F4 as `hidden_states`.
            return_dict (`bool`, *optional*): return an [`IVGFObjectDetectionOutput`]; with False a tuple of its
                non-None fields in the order (loss, loss_dict, detections, hidden_states).

        With `labels`, training mode returns `loss` and `loss_dict`, eval mode also `detections`. Without `labels`
        there is no loss and both modes return `detections` (the RPN and RoI heads run in eval mode for them), as
        transformers' detectors do.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        reference = pixel_values if pixel_values is not None else pixel_values_ir
        if reference is None:
            raise ValueError("IVGF needs pixel_values (visible) or pixel_values_ir (infrared); both are None")
        batch_size, image_size = reference.shape[0], tuple(reference.shape[-2:])
        targets = None if labels is None else self._targets(labels, image_size, batch_size, reference.device)

        outputs = self.ivgf(pixel_values, pixel_values_ir, return_dict=True)
        features = self.fpn(OrderedDict(zip(POOLED_LEVELS, outputs.feature_maps)))
        images = ImageList(reference, [image_size] * batch_size)

        detections = None if self.training and targets is not None else self._detect(images, features)
        loss = loss_dict = None
        if targets is not None:
            loss_dict = self._losses(images, features, targets)
            loss = torch.stack(list(loss_dict.values())).sum()

        output = IVGFObjectDetectionOutput(
            loss=loss,
            loss_dict=loss_dict,
            detections=detections,
            hidden_states=outputs.feature_maps if output_hidden_states else None,
        )
        return output if return_dict else output.to_tuple()
