"""ivgf_hf.training: recipes, layer-wise decay, schedule, data order, exact resume after SIGKILL, 2 processes (gloo).

Runs use the tiny preset on SynthRGBT at 64x96 with one intra-op thread per process (bit-identical comparisons need
equal thread counts, and one thread per process is also what torchrun gives each rank).
"""

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ivgf_hf import get_config
from ivgf_hf.cli import main
from ivgf_hf.data import generate_synthrgbt
from ivgf_hf.modeling import IVGFForSemanticSegmentation
from ivgf_hf.training.checkpointing import STATE_FILE, CheckpointManager
from ivgf_hf.training.data import EpochBatchSampler, SeededTransformDataset, build_train_transform, load_recipe_data
from ivgf_hf.training.loop import train
from ivgf_hf.training.model_setup import build_model
from ivgf_hf.training.optim import PolynomialWarmupSchedule, encoder_layer_id, layer_decay_parameter_groups
from ivgf_hf.training.recipes import RecipeError, get_recipe, resolve_recipe
from ivgf_hf.training.run_files import clear_run

REPO = Path(__file__).resolve().parents[1]
# A short synth-seg-cpu run: 64x96 images, 64 px crops, a checkpoint every 2 steps.
RUN = dict(
    crop_size=64,
    eval_size=None,
    num_workers=0,
    log_every=1,
    save_every=2,
    eval_every=4,
    keep_last=2,
    export_check=False,
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_synthrgbt(
        tmp_path_factory.mktemp("synth") / "mfnet", "mfnet", num_train=12, num_test=4, height=64, width=96, seed=0
    )


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _env():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    return env


def _cli(*args):
    return [sys.executable, "-m", "ivgf_hf.cli", "train", *args]


def _run_args(root, output_dir, steps, workers=0):
    sets = [f"--set={k}={v}" for k, v in RUN.items() if k != "num_workers"]
    return [
        "--recipe",
        "synth-seg-cpu",
        "--data-root",
        str(root),
        "--output-dir",
        str(output_dir),
        "--max-steps",
        str(steps),
        "--num-workers",
        str(workers),
        *sets,
    ]


# --- recipes ------------------------------------------------------------------------------------------------------


def test_paper_recipes_hold_the_papers_settings():
    seg, det = get_recipe("mfnet-seg"), get_recipe("m3fd-det")
    for recipe in (seg, det, get_recipe("msrs-seg")):
        assert (recipe.learning_rate, recipe.batch_size, recipe.warmup_steps, recipe.poly_power) == (1e-4, 2, 1500, 1.0)
        assert recipe.layer_decay == 0.75 and recipe.cma and recipe.preset == "base"
    assert (seg.weight_decay, seg.max_steps, seg.crop_size, seg.task) == (0.05, 240_000, 512, "segmentation")
    assert (det.weight_decay, det.max_steps, det.crop_size, det.task) == (0.1, 160_000, 896, "detection")


def test_recipe_resolution_order_types_and_errors(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "learning_rate: 1e-3\nmax_steps: 50\nscale_range: [0.75, 1.25]\nmodel_overrides:\n  use_tem: false\n"
    )
    overrides = {"max_steps": "70", "model_overrides.drop_path_rate": "0.1", "report_to": "tensorboard"}
    recipe = resolve_recipe("synth-seg-cpu", config, overrides)
    assert recipe.learning_rate == 1e-3  # YAML reads "1e-3" as text; the float field converts it
    assert recipe.max_steps == 70  # the override wins over the file
    assert recipe.scale_range == (0.75, 1.25) and recipe.report_to == ("tensorboard",)
    assert recipe.model_overrides == {"use_tem": False, "drop_path_rate": 0.1}
    saved = recipe.save(tmp_path / "recipe.json")
    assert resolve_recipe(config_file=saved) == recipe  # recipe.json is a valid --config

    with pytest.raises(RecipeError, match="did you mean learning_rate"):
        get_recipe("synth-seg-cpu", learnig_rate=1.0)
    with pytest.raises(RecipeError, match="max_steps: cannot use '1.5' as int"):
        get_recipe("synth-seg-cpu", max_steps="1.5")
    with pytest.raises(RecipeError, match="multiple of 32"):
        get_recipe("mfnet-seg", crop_size=500)
    with pytest.raises(RecipeError, match="is for detection"):
        get_recipe("mfnet-seg", dataset="m3fd")
    with pytest.raises(RecipeError, match="excludes"):
        get_recipe("mfnet-seg", init_from="x", infrared_checkpoint="y")


def test_cli_resolves_flags_then_set_and_guards_existing_runs(tmp_path, capsys):
    main(
        [
            "train",
            "--recipe",
            "mfnet-seg",
            "--lr",
            "3e-4",
            "--set",
            "warmup_steps=10",
            "--max-steps",
            "99",
            "--print-recipe",
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    assert (printed["learning_rate"], printed["warmup_steps"], printed["max_steps"]) == (3e-4, 10, 99)

    (tmp_path / "recipe.json").write_text(json.dumps(get_recipe("synth-seg-cpu").to_dict()))
    with pytest.raises(SystemExit, match="--resume to continue it or --overwrite"):
        main(["train", "--recipe", "synth-seg-cpu", "--data-root", str(tmp_path), "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"different recipe \(learning_rate"):
        main(["train", "--resume", "--output-dir", str(tmp_path), "--lr", "1.0"])
    with pytest.raises(SystemExit, match="--recipe is required"):
        main(["train", "--output-dir", str(tmp_path / "new")])

    (tmp_path / "checkpoints" / "step-00000002").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    clear_run(tmp_path)  # what --overwrite deletes: the run's own entries only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- optimiser and schedule ---------------------------------------------------------------------------------------


def test_layer_decay_groups_follow_convmae():
    names = (
        "pos_embed",
        "patch_embed4.weight",
        "blocks2.1.attn.weight",
        "blocks3.0.norm1.weight",
        "blocks3.10.mlp.fc2.bias",
        "stage4.conv.weight",
    )
    assert [encoder_layer_id(n, 11) for n in names] == [0, 0, 0, 1, 11, 12]
    model = IVGFForSemanticSegmentation(get_config("tiny", num_labels=3))
    model.ivgf.visible_encoder.patch_embed1.proj.weight.requires_grad_(False)
    groups = layer_decay_parameter_groups(model, learning_rate=1.0, weight_decay=0.05, layer_decay=0.5)
    found = {name: group for group in groups for name in group["param_names"]}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(found) == trainable and sum(len(g["params"]) for g in groups) == len(trainable)
    # tiny: 2 transformer blocks per encoder, so layers 0..3 get 0.5^3, 0.5^2, 0.5^1, 1
    expected = {
        "ivgf.visible_encoder.pos_embed": (0.125, 0.05),
        "ivgf.infrared_encoder.blocks1.0.conv1.weight": (0.125, 0.05),
        "ivgf.infrared_encoder.blocks1.0.conv1.bias": (0.125, 0.0),
        "ivgf.visible_encoder.blocks3.0.attn.qkv.weight": (0.25, 0.05),
        "ivgf.visible_encoder.blocks3.1.norm1.weight": (0.5, 0.0),
        "ivgf.visible_encoder.blocks3.1.layer_scale_1.gamma": (0.5, 0.0),
        "ivgf.visible_encoder.stage4.conv.weight": (1.0, 0.05),
        "ivgf.feature_enhancements.0.channel_visible.fc1.weight": (1.0, 0.05),
        "decode_head.classifier.weight": (1.0, 0.05),
    }
    for name, (scale, decay) in expected.items():
        assert name in found, name
        assert (found[name]["lr"], found[name]["weight_decay"]) == (scale, decay), name
    assert "ivgf.visible_encoder.patch_embed1.proj.weight" not in found


def test_polynomial_schedule_with_linear_warmup():
    schedule = PolynomialWarmupSchedule(max_steps=100, warmup_steps=10, warmup_ratio=0.1, power=1.0)
    assert schedule(0) == pytest.approx(0.1)  # warmup_ratio x poly(0)
    assert schedule(5) == pytest.approx((1 - 0.5 * 0.9) * 0.95)
    assert schedule(10) == pytest.approx(0.9) and schedule(55) == pytest.approx(0.45)
    assert schedule(100) == 0.0
    squared = PolynomialWarmupSchedule(100, 0, 1.0, power=2.0, min_ratio=0.1)
    assert squared(50) == pytest.approx(0.9 * 0.25 + 0.1)


# --- data ---------------------------------------------------------------------------------------------------------


def test_batches_are_sharded_seeded_and_resumable(synth):
    sampler = EpochBatchSampler(10, batch_size=2, num_processes=1, process_index=0, seed=3)
    stream = iter(sampler)
    first = [next(stream) for _ in range(12)]  # 5 batches per epoch (remainder dropped): 2 epochs and more
    assert sorted(i for batch in first[:5] for _, i in batch) == sorted(sampler.permutation(0)[:10].tolist())
    assert [e for batch in first for e, _ in batch] == [0] * 10 + [1] * 10 + [2] * 4
    later = iter(EpochBatchSampler(10, 2, 1, 0, seed=3, start=7))
    assert [next(later) for _ in range(5)] == first[7:]
    ranks = [iter(EpochBatchSampler(10, 2, 2, r, seed=3)) for r in (0, 1)]
    global_batches = [next(ranks[0]) + next(ranks[1]) for _ in range(2)]
    assert global_batches == [first[0] + first[1], first[2] + first[3]]  # rank r takes the r-th slice

    recipe = get_recipe("synth-seg-cpu", data_root=str(synth), **RUN)
    data = load_recipe_data(recipe, synth.parent)
    dataset = SeededTransformDataset(data["train"], build_train_transform(recipe, None), "segmentation", seed=0)
    torch.manual_seed(123)
    sample = dataset[(1, 4)]
    global_state = torch.get_rng_state()
    again = dataset[(1, 4)]
    assert torch.equal(torch.get_rng_state(), global_state)  # the global generator is untouched
    assert all(torch.equal(sample[k], again[k]) for k in sample)
    assert not torch.equal(sample["pixel_values"], dataset[(2, 4)]["pixel_values"])  # another epoch, new draws


# --- model initialisation -----------------------------------------------------------------------------------------


def test_build_model_from_foundation_checkpoints_or_a_saved_folder(tmp_path):
    fixture = load_file(REPO / "tests" / "fixtures" / "convmae_tiny_parity.safetensors")
    visible = {k[len("state.") :]: v for k, v in fixture.items() if k.startswith("state.")}
    torch.save({"model": visible}, tmp_path / "mcmae.pth")
    recipe = get_recipe("synth-seg-cpu", visible_checkpoint=str(tmp_path / "mcmae.pth"))
    model, processor, report = build_model(recipe, ["a", "b", "c"])
    assert torch.equal(model.ivgf.visible_encoder.blocks3[1].mlp.fc2.weight, visible["blocks3.1.mlp.fc2.weight"])
    assert report.startswith(f"visible encoder from {tmp_path / 'mcmae.pth'}") and "dropped" in report
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"} and processor.ir_num_channels == 1

    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    detector, _, report = build_model(get_recipe("synth-det-cpu", init_from=str(tmp_path / "saved")), ["People", "Car"])
    assert type(detector).__name__ == "IVGFForObjectDetection" and detector.config.num_labels == 2
    assert torch.equal(detector.ivgf.visible_encoder.blocks3[1].mlp.fc2.weight, visible["blocks3.1.mlp.fc2.weight"])
    assert "missing keys:" in report and "roi_heads" in report  # the new head is listed, the encoders are not


def test_enet_class_weights_come_from_the_training_labels(synth):
    from ivgf_hf.data import load_mfnet
    from ivgf_hf.training.class_weights import class_weights_for, enet_class_weights, label_pixel_counts

    assert enet_class_weights([90, 10, 0]) == pytest.approx(
        [1 / math.log(1.92), 1 / math.log(1.12), 1 / math.log(1.02)]
    )
    train_split = load_mfnet(synth, splits=["train"])["train"]
    counts = label_pixel_counts(train_split, 9)
    assert counts.sum() == 12 * 64 * 96 - sum((np.asarray(row["label"]) == 255).sum() for row in train_split)
    weights = class_weights_for("enet", train_split, 9)
    assert weights[0] == min(weights) and class_weights_for("none", train_split, 9) is None  # unlabelled is common
    with pytest.raises(ValueError, match=r"training row \d+: label ids \[[\d, ]+\] are outside \[0, 3\)"):
        label_pixel_counts(train_split, 3)
    with pytest.raises(RecipeError, match="class_weighting must be one of"):
        get_recipe("synth-seg-cpu", class_weighting="balanced")
    with pytest.raises(RecipeError, match="segmentation only"):
        get_recipe("synth-det-cpu", class_weighting="enet")
    model, _, _ = build_model(get_recipe("synth-seg-cpu"), [str(i) for i in range(9)], weights)
    assert model.config.semantic_loss_class_weights == weights


# --- end to end ---------------------------------------------------------------------------------------------------


def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(
                f"training exited with {process.returncode} before writing {path}:\n"
                f"{process.stderr.read().decode()[-3000:]}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def _optimizer_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "optimizer.bin", weights_only=False)["state"]


@pytest.mark.slow
def test_sigkill_then_resume_ends_bit_identical_to_an_uninterrupted_run(synth, tmp_path, one_thread):
    steps = 8
    reference = train(get_recipe("synth-seg-cpu", data_root=str(synth), max_steps=steps, **RUN), tmp_path / "ref")
    assert reference.global_step == steps and reference.best_model is not None

    run = tmp_path / "killed"
    process = subprocess.Popen(
        _cli(*_run_args(synth, run, steps, workers=1)), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _wait_for(run / "checkpoints" / "step-00000002" / STATE_FILE, process, timeout=240)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert not (run / "final_model").exists(), "the run finished before it was killed"
    killed_at = CheckpointManager(run / "checkpoints", 2).checkpoints()[-1][0]
    assert killed_at < steps
    (run / "checkpoints" / ".staging-step-00000099").mkdir()  # a save cut short

    assert main(["train", "--resume", "--output-dir", str(run), "--num-workers", "0"]) == 0
    assert not (run / "checkpoints" / ".staging-step-00000099").exists()

    expected = load_file(tmp_path / "ref" / "checkpoints" / f"step-{steps:08d}" / "model.safetensors")
    actual = load_file(run / "checkpoints" / f"step-{steps:08d}" / "model.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected), "weights differ after resume"
    moments = _optimizer_state(tmp_path / "ref" / "checkpoints" / f"step-{steps:08d}")
    resumed_moments = _optimizer_state(run / "checkpoints" / f"step-{steps:08d}")
    assert all(torch.equal(moments[i]["exp_avg_sq"], resumed_moments[i]["exp_avg_sq"]) for i in moments)

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    reference_records = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == list(range(1, steps + 1))  # no step logged twice across the kill
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses == [r["loss"] for r in reference_records if r["kind"] == "train"]
    best = json.loads((run / "checkpoints" / f"step-{steps:08d}" / STATE_FILE).read_text())["best_step"]
    kept = {CheckpointManager.name(step) for step in (best, steps - 2, steps)}  # the best and the last two
    assert {p.name for p in (run / "checkpoints").iterdir()} == kept

    from transformers import AutoModelForSemanticSegmentation

    loaded = AutoModelForSemanticSegmentation.from_pretrained(run / "final_model", trust_remote_code=True)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in actual.items())
    assert loaded.config.id2label[2] == "person"


_RANK_SCRIPT = """
import json, os, sys
from pathlib import Path
import torch
from ivgf_hf.training.loop import train
from ivgf_hf.training.recipes import TrainingRecipe

recipe = TrainingRecipe(**json.loads(Path(sys.argv[1]).read_text()))
result = train(recipe, sys.argv[2])
state = {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()}
torch.save({"world": int(os.environ["WORLD_SIZE"]), "state": state}, Path(sys.argv[2]) / f"rank{os.environ['RANK']}.pt")
"""


@pytest.mark.slow
def test_two_processes_with_gloo_keep_weights_in_sync(synth, tmp_path):
    steps, accumulation = 3, 2
    recipe = get_recipe(
        "synth-seg-cpu",
        data_root=str(synth),
        max_steps=steps,
        warmup_steps=2,
        gradient_accumulation_steps=accumulation,
        **{**RUN, "eval_every": 3},
    )
    recipe_file = recipe.save(tmp_path / "recipe_in.json")
    script = tmp_path / "run_rank.py"
    script.write_text(_RANK_SCRIPT)
    out = tmp_path / "ddp"
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(recipe_file),
            str(out),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert launched.returncode == 0, launched.stderr[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2

    # the ranks trained on different samples (disjoint slices) yet hold identical parameters, equal to the checkpoint
    # (BatchNorm running statistics are per rank until DDP broadcasts rank 0's at the next forward)
    saved = load_file(out / "checkpoints" / f"step-{steps:08d}" / "model.safetensors")
    parameters = [n for n, _ in IVGFForSemanticSegmentation(get_config("tiny", num_labels=9)).named_parameters()]
    assert all(torch.equal(ranks[0]["state"][name], value) for name, value in saved.items())
    assert all(torch.equal(ranks[1]["state"][name], saved[name]) for name in parameters)
    info = json.loads((out / "run_info.json").read_text())
    assert (info["num_processes"], info["effective_batch_size"]) == (2, 2 * 2 * accumulation)
    state = json.loads((out / "checkpoints" / f"step-{steps:08d}" / STATE_FILE).read_text())
    assert state["micro_batches"] == steps * accumulation and state["num_processes"] == 2
    before = load_file(out / "checkpoints" / f"step-{steps - 1:08d}" / "model.safetensors")
    assert any(not torch.equal(before[k], saved[k]) for k in saved)  # the last step changed the weights

    # the prepared scheduler stepped once per optimizer step, not once per process
    schedule = PolynomialWarmupSchedule(steps, 2, recipe.warmup_ratio, recipe.poly_power)
    logged = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert [r["lr"] for r in logged] == pytest.approx([recipe.learning_rate * schedule(s) for s in (1, 2, 3)])
    evaluation = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    assert len(evaluation) == 1 and 0.0 <= evaluation[0]["metrics"]["all"]["mIoU"] <= 1.0


@pytest.mark.slow
def test_detection_run_with_bf16_checkpointing_and_tensorboard(tmp_path, one_thread):
    root = generate_synthrgbt(tmp_path / "m3fd", "m3fd", num_train=4, num_test=2, height=64, width=96, seed=2)
    recipe = get_recipe(
        "synth-det-cpu",
        data_root=str(root),
        max_steps=2,
        mixed_precision="bf16",
        gradient_checkpointing=True,
        report_to=["tensorboard"],
        **RUN,
    )
    result = train(recipe, tmp_path / "run")
    assert any(getattr(module, "gradient_checkpointing", False) for module in result.model.modules())
    evaluation = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert evaluation["kind"] == "eval" and set(evaluation["metrics"]["all"]) >= {"mAP", "mAP50", "per_class_AP"}
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    config = json.loads((tmp_path / "run" / "final_model" / "config.json").read_text())
    assert config["architectures"] == ["IVGFForObjectDetection"]
    assert "AutoModelForObjectDetection" in config["auto_map"] and config["id2label"]["1"] == "Car"
    assert json.loads((tmp_path / "run" / "recipe.json").read_text()) == recipe.to_dict()


# --- failures before the first step, checkpoint writes on a full disk --------------------------------------------


def test_batch_size_1_fails_clearly_and_the_fixed_command_needs_no_overwrite(synth, tmp_path, capsys, one_thread):
    output_dir = tmp_path / "run"
    (tmp_path / "notes.txt").write_text("mine")
    argv = ["train", *_run_args(synth, output_dir, 1), "--set", "eval_split=None"]
    with pytest.raises(SystemExit, match="batch_size 1 cannot train segmentation.*--batch-size 2") as exit_info:
        main(argv + ["--batch-size", "1"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("ivgf train: batch_size 1") and "Traceback" not in error
    assert not output_dir.exists()  # nothing left that would need --overwrite
    assert main(argv + ["--batch-size", "2"]) == 0
    assert (output_dir / "final_model" / "model.safetensors").is_file()


def test_a_start_that_fails_at_its_first_step_removes_its_files(synth, tmp_path, monkeypatch, one_thread):
    from ivgf_hf.training import loop

    def fail(self, batches):
        raise RuntimeError("simulated failure in the first step")

    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / "notes.txt").write_text("mine")
    monkeypatch.setattr(loop._TrainingRun, "optimizer_step", fail)
    recipe = get_recipe("synth-seg-cpu", data_root=str(synth), max_steps=1, eval_split=None, **RUN)
    with pytest.raises(RuntimeError, match="simulated failure"):
        train(recipe, output_dir)
    assert sorted(p.name for p in output_dir.iterdir()) == ["notes.txt"]


def test_empty_training_split_is_named_and_leaves_nothing(synth, tmp_path, capsys, caplog):
    root = shutil.copytree(synth, tmp_path / "data")
    (root / "train.txt").write_text("")
    output_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"train_split 'train' of .*data has 0 sample\(s\)") as exit_info:
        main(["train", *_run_args(root, output_dir, 1)])
    assert exit_info.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert f"split 'train' is empty: no usable sample from {root / 'train.txt'}" in caplog.text
    assert not output_dir.exists()


class _FakeAccelerator:
    """The part of Accelerator that CheckpointManager.save uses; save_state writes ``written`` bytes, then ``error``."""

    is_main_process = True

    def __init__(self, written=0, error=None):
        self.written, self.error = written, error

    def wait_for_everyone(self):
        pass

    def save_state(self, folder):
        (Path(folder) / "model.safetensors").write_bytes(b"\0" * self.written)
        if self.error is not None:
            raise self.error


def test_checkpoints_check_free_space_and_clean_up_a_failed_write(tmp_path, monkeypatch):
    from collections import namedtuple

    from ivgf_hf.training import checkpointing
    from ivgf_hf.training.checkpointing import TrainingProgress

    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2, expected_bytes=10 * 2**20)
    assert manager.save(_FakeAccelerator(written=100), TrainingProgress(global_step=1)).name == "step-00000001"

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    with pytest.raises(
        OSError,
        match=r"not enough disk space for the checkpoint of step 2 in .*checkpoints: about 10 "
        r"MiB needed, 1 MiB free",
    ) as info:
        manager.save(_FakeAccelerator(written=100), TrainingProgress(global_step=2))
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in manager.folder.iterdir()) == ["step-00000001"]

    # torch's message for a write that hit a full disk; the staging folder is removed
    free = iter([2**30, 0, 0])
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda path: usage(2**31, 2**30, next(free)))
    torch_error = RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 64 vs 0")
    with pytest.raises(OSError, match="not enough disk space for the checkpoint of step 3") as info:
        manager.save(_FakeAccelerator(written=100, error=torch_error), TrainingProgress(global_step=3))
    assert info.value.__cause__ is torch_error
    assert sorted(p.name for p in manager.folder.iterdir()) == ["step-00000001"]

    monkeypatch.undo()
    with pytest.raises(ValueError, match="not about space"):  # other failures keep their type, still cleaned up
        manager.save(_FakeAccelerator(error=ValueError("not about space")), TrainingProgress(global_step=4))
    assert sorted(p.name for p in manager.folder.iterdir()) == ["step-00000001"]


def test_paired_init_gives_every_variant_of_a_seed_the_same_encoders_and_head():
    """synth-seg-cpu's paired_init: sum fusion, IVGF and a single-modality model of one seed start alike, and the
    caller's random state is untouched."""
    variants = {
        "sum": {"use_fem": False, "use_tem": False, "use_agf": False},
        "ivgf": {},
        "visible": {"modalities": "visible"},
    }
    states, reports = {}, {}
    for name, overrides in variants.items():
        torch.manual_seed(123)
        recipe = get_recipe("synth-seg-cpu", seed=3, model_overrides=overrides)
        model, _, reports[name] = build_model(recipe, ["a", "b", "c"])
        states[name] = model.state_dict()
    assert all(torch.equal(states["sum"][k], states["ivgf"][k]) for k in states["sum"])
    assert all(torch.equal(states["sum"][k], v) for k, v in states["visible"].items())
    assert "paired init" in reports["ivgf"]
    recipe = get_recipe("synth-seg-cpu", seed=3, paired_init=False)
    torch.manual_seed(123)
    unpaired = build_model(recipe, ["a", "b", "c"])[0].state_dict()
    assert not torch.equal(unpaired["decode_head.classifier.weight"], states["ivgf"]["decode_head.classifier.weight"])
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    build_model(get_recipe("synth-seg-cpu", seed=3), ["a", "b", "c"])
    plain_after = torch.get_rng_state()
    torch.manual_seed(123)
    build_model(get_recipe("synth-seg-cpu", seed=3, paired_init=False), ["a", "b", "c"])
    assert torch.equal(plain_after, torch.get_rng_state()) and not torch.equal(rng, plain_after)
