"""Fine-tuning IVGF with ``transformers.Trainer``: the same recipe, optimizer and schedule as ``ivgf train``.

``build_trainer(recipe, model, processor, data, output_dir)`` wires up what the Trainer needs for IVGF:

* datasets transformed on the fly (``with_transform``) and ``remove_unused_columns=False``: the transforms return
  new keys (``pixel_values``, ``pixel_values_ir``, ``labels``) that the Trainer would otherwise drop;
* the collators of :mod:`ivgf_hf.data` (detection keeps ``labels`` as a list of dicts);
* segmentation metrics per batch (``batch_eval_metrics=True`` with a running confusion matrix, and
  ``preprocess_logits_for_metrics`` reducing logits to class ids), so no logits pile up in memory;
* detection evaluation through :class:`IVGFTrainer`'s ``prediction_step``, which feeds a :class:`DetectionMetric`
  (R-CNN models return no loss in eval mode, which the stock loop needs);
* the layer-wise-decay AdamW and the warm-up + polynomial schedule of :mod:`ivgf_hf.training.optim`.

IVGF's ``forward`` takes no ``**kwargs``, so the Trainer keeps its loss scaling under gradient accumulation and
DDP (``trainer.model_accepts_loss_kwargs`` is False). Unlike ``ivgf train``, augmentation draws from the Trainer's
seeded global generator, and evaluation runs at the eval transform's size (``recipe.eval_size``).
"""

import inspect
import logging

import torch
from transformers import Trainer, TrainingArguments

from ..data import DetectionEvalTransform, SegmentationEvalTransform, collate_detection, collate_segmentation
from ..evaluation.detection import DetectionMetric
from ..evaluation.segmentation import preprocess_logits_for_metrics, segmentation_compute_metrics
from ..modeling.image_processing_ivgf import normalised_cxcywh_to_xyxy
from .class_weights import class_weights_for
from .data import build_train_transform
from .optim import PolynomialWarmupSchedule, build_optimizer

logger = logging.getLogger(__name__)

__all__ = ["IVGFTrainer", "trainer_arguments", "build_trainer"]


class IVGFTrainer(Trainer):
    """A ``Trainer`` with the recipe's optimizer and schedule, and box mAP evaluation for detection.

    Args:
        recipe: the :class:`~ivgf_hf.training.recipes.TrainingRecipe` (optimizer, schedule, task).
        class_names: class names of the labels (detection metrics).
        *args, **kwargs: the ``Trainer``'s.
    """

    def __init__(self, *args, recipe, class_names=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.detection_metric = None
        if recipe.task == "detection":
            names = list(class_names or self.model.config.id2label.values())
            self.detection_metric = DetectionMetric(len(names), names)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.model if model is None else model, self.recipe)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            schedule = PolynomialWarmupSchedule(
                num_training_steps,
                self.recipe.warmup_steps,
                self.recipe.warmup_ratio,
                self.recipe.poly_power,
                self.recipe.min_lr / self.recipe.learning_rate,
            )
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, schedule)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if self.detection_metric is None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(pixel_values=inputs["pixel_values"], pixel_values_ir=inputs["pixel_values_ir"])
        height, width = inputs["pixel_values"].shape[-2:]
        preds = [
            {"boxes": d["boxes"].float().cpu(), "scores": d["scores"].float().cpu(), "labels": d["labels"].cpu()}
            for d in outputs.detections
        ]
        targets = [
            {
                "boxes": normalised_cxcywh_to_xyxy(t["boxes"].float(), height, width).cpu(),
                "labels": t["class_labels"].cpu(),
            }
            for t in inputs["labels"]
        ]
        self.detection_metric.update(preds, targets)
        return None, None, None

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        if self.detection_metric is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        self.detection_metric.reset()
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        result = self.detection_metric.compute()
        detection = {f"{metric_key_prefix}_{k}": result[k] for k in ("mAP", "mAP50", "mAP75")}
        detection.update({f"{metric_key_prefix}_AP_{name}": v for name, v in result["per_class_AP"].items()})
        self.log(detection)
        return {**metrics, **detection}


def trainer_arguments(recipe, output_dir, **overrides) -> TrainingArguments:
    """``TrainingArguments`` from a recipe; ``overrides`` replace any of them (e.g. ``max_steps=2``)."""
    values = dict(
        output_dir=str(output_dir),
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.eval_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        adam_beta1=recipe.adam_betas[0],
        adam_beta2=recipe.adam_betas[1],
        adam_epsilon=recipe.adam_epsilon,
        max_grad_norm=recipe.max_grad_norm or 0.0,
        warmup_steps=recipe.warmup_steps,
        seed=recipe.seed,
        bf16=recipe.mixed_precision == "bf16",
        fp16=recipe.mixed_precision == "fp16",
        remove_unused_columns=False,
        label_names=["labels"],
        eval_strategy="steps" if recipe.eval_split else "no",
        eval_steps=recipe.eval_every,
        save_strategy="steps",
        save_steps=recipe.save_every,
        save_total_limit=recipe.keep_last,
        logging_steps=recipe.log_every,
        dataloader_num_workers=recipe.num_workers,
        batch_eval_metrics=recipe.task == "segmentation",
        metric_for_best_model=recipe.metric_for_best,
        greater_is_better=True,
        report_to=list(recipe.report_to) or "none",
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    if recipe.gradient_checkpointing:  # transformers 5 renamed the arguments; 4.x knows only the old names
        renamed = "activation_checkpointing" in inspect.signature(TrainingArguments).parameters
        prefix = "activation" if renamed else "gradient"
        values.update({f"{prefix}_checkpointing": True, f"{prefix}_checkpointing_kwargs": {"use_reentrant": False}})
    values.update(overrides)
    return TrainingArguments(**values)


def build_trainer(
    recipe, model, processor, data, output_dir, class_names=None, compute_metrics=None, **argument_overrides
) -> IVGFTrainer:
    """An :class:`IVGFTrainer` for ``model`` on ``data`` (a ``DatasetDict`` with the loaders' columns).

    Args:
        recipe: the training recipe (splits, transforms, optimizer, schedule, cadence).
        model: an ``IVGFForSemanticSegmentation`` or ``IVGFForObjectDetection`` matching ``recipe.task``. With a
            recipe ``class_weighting`` and no ``semantic_loss_class_weights`` in its config, the weights are
            computed from the training split and set in its config, as ``ivgf train`` does.
        processor: the ``IVGFImageProcessor`` whose normalisation the transforms use (saved with checkpoints).
        data: the data set; ``recipe.train_split`` and ``recipe.eval_split`` (if any) are used.
        output_dir: the Trainer's output folder.
        class_names: label names (default: the model's ``id2label``).
        compute_metrics: segmentation only, replaces the running confusion matrix, e.g. the ``evaluate`` module
            ``ivgf_hf.evaluation.evaluate_compute_metrics(load_evaluate_metric("rgbt_mean_iou"), num_labels)``.
        **argument_overrides: replace :func:`trainer_arguments` values.
    """
    names = list(class_names or [model.config.id2label[i] for i in range(model.config.num_labels)])
    if recipe.class_weighting != "none" and getattr(model.config, "semantic_loss_class_weights", None) is None:
        weights = class_weights_for(recipe.class_weighting, data[recipe.train_split], len(names))
        model.config.semantic_loss_class_weights = weights
        logger.info("loss class weights (%s): %s", recipe.class_weighting, dict(zip(names, weights)))
    train_dataset = data[recipe.train_split].with_transform(
        build_train_transform(recipe, processor, model.config.modalities)
    )
    eval_dataset, metrics = None, {}
    if recipe.eval_split is not None:
        if recipe.task == "segmentation":
            transform = SegmentationEvalTransform(processor=processor, size=recipe.eval_size, size_divisor=32)
            metrics = dict(
                compute_metrics=compute_metrics or segmentation_compute_metrics(len(names), 255, names),
                preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            )
        else:
            transform = DetectionEvalTransform(processor=processor, size=recipe.eval_size, size_divisor=32)
        eval_dataset = data[recipe.eval_split].with_transform(transform)
    return IVGFTrainer(
        model=model,
        args=trainer_arguments(recipe, output_dir, **argument_overrides),
        data_collator=collate_segmentation if recipe.task == "segmentation" else collate_detection,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        recipe=recipe,
        class_names=names,
        **metrics,
    )
