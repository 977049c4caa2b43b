"""The transformers.Trainer recipe: 2 training steps and an evaluation on SynthRGBT (tiny preset, 64x96 images)."""

import math

import pytest
import torch

from ivgf_hf.data import generate_synthrgbt
from ivgf_hf.evaluation import evaluate_compute_metrics, load_evaluate_metric
from ivgf_hf.evaluation.runner import evaluate_model
from ivgf_hf.training.data import load_recipe_data
from ivgf_hf.training.model_setup import build_model
from ivgf_hf.training.optim import PolynomialWarmupSchedule
from ivgf_hf.training.recipes import get_recipe
from ivgf_hf.training.trainer_recipe import build_trainer

SMALL = dict(
    crop_size=64,
    eval_size=None,
    num_workers=0,
    eval_batch_size=2,
    max_steps=2,
    log_every=1,
    save_every=2,
    eval_every=2,
    layer_decay=0.5,
)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_trainer_trains_and_evaluates_segmentation_with_the_recipe(tmp_path, one_thread):
    root = generate_synthrgbt(tmp_path / "synth", "mfnet", num_train=8, num_test=4, height=64, width=96, seed=1)
    recipe = get_recipe("synth-seg-cpu", data_root=str(root), **SMALL)
    data = load_recipe_data(recipe, tmp_path)
    model, processor, _ = build_model(recipe, data.class_names)
    assert model.config.semantic_loss_class_weights is None
    trainer = build_trainer(recipe, model, processor, data, tmp_path / "trainer")
    assert len(model.config.semantic_loss_class_weights) == 9  # the recipe's ENet weights, as `ivgf train` sets them

    assert trainer.model_accepts_loss_kwargs is False  # IVGF's forward has no **kwargs: loss scaling stays on
    assert trainer.args.remove_unused_columns is False and trainer.args.batch_eval_metrics
    trainer.train()
    assert trainer.state.global_step == 2
    scales = sorted({group["lr_scale"] for group in trainer.optimizer.param_groups})
    assert scales == [0.125, 0.25, 0.5, 1.0]  # tiny: 2 transformer blocks, layer decay 0.5
    schedule = trainer.lr_scheduler.lr_lambdas[0]
    assert isinstance(schedule, PolynomialWarmupSchedule) and schedule.max_steps == 2
    assert (tmp_path / "trainer" / "checkpoint-2" / "model.safetensors").is_file()
    assert (tmp_path / "trainer" / "checkpoint-2" / "preprocessor_config.json").is_file()

    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_mIoU"] <= 1.0 and "eval_IoU_person" in metrics
    # the Trainer's running confusion matrix gives the evaluation runner's numbers (same images, full size)
    reference = evaluate_model(trainer.model, data["test"], task="segmentation", processor=processor, batch_size=2)
    assert metrics["eval_mIoU"] == pytest.approx(reference["metrics"]["mIoU"], abs=1e-6)
    assert metrics["eval_pixel_accuracy"] == pytest.approx(reference["metrics"]["pixel_accuracy"], abs=1e-6)

    # the same evaluation through the `evaluate` module
    trainer.compute_metrics = evaluate_compute_metrics(
        load_evaluate_metric("rgbt_mean_iou", cache_dir=str(tmp_path / "evaluate")), num_labels=9
    )
    with_evaluate = trainer.evaluate()
    assert with_evaluate["eval_mean_iou"] == pytest.approx(metrics["eval_mIoU"], abs=1e-6)
    assert with_evaluate["eval_overall_accuracy"] == pytest.approx(metrics["eval_pixel_accuracy"], abs=1e-6)


def test_trainer_trains_and_evaluates_detection(tmp_path, one_thread):
    root = generate_synthrgbt(tmp_path / "synth", "m3fd", num_train=4, num_test=2, height=64, width=96, seed=1)
    recipe = get_recipe("synth-det-cpu", data_root=str(root), **{**SMALL, "max_steps": 1, "save_every": 1})
    data = load_recipe_data(recipe, tmp_path)
    model, processor, _ = build_model(recipe, data.class_names)
    trainer = build_trainer(recipe, model, processor, data, tmp_path / "trainer")
    assert trainer.model_accepts_loss_kwargs is False
    trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(trainer.state.log_history[0]["loss"])
    metrics = trainer.evaluate()
    assert {"eval_mAP", "eval_mAP50", "eval_AP_Car"} <= set(metrics)
    assert math.isnan(metrics["eval_mAP"]) or 0.0 <= metrics["eval_mAP"] <= 1.0
