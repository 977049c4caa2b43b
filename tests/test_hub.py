"""ivgf push and init-checkpoint, the checks of an exported folder, and remote-code loading of both tasks.

The Hub is never contacted: uploads go to ``HfApi`` methods patched at their boundary, the unreachable case talks
to a closed local port. Subprocess reloads (about 10 s each): the push test, the detector export, and -- with
``IVGF_COMPAT_PYTHON`` set -- one per task under the second transformers version.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
from safetensors.torch import load_file, save_file

from ivgf_hf import __version__, get_config, hub
from ivgf_hf.auto import register_auto_classes
from ivgf_hf.cli import main
from ivgf_hf.hub import (
    HubFolderError,
    check_export_folder,
    export_for_hub,
    inspect_export_folder,
    push_folder,
)
from ivgf_hf.modeling import IVGFForSemanticSegmentation, IVGFImageProcessor
from ivgf_hf.modeling.detection_ivgf import IVGFForObjectDetection

FIXTURES = Path(__file__).parent / "fixtures"
CLASSES = ["road", "car", "person"]
SEGMENTATION_FILES = [
    "README.md",
    "config.json",
    "configuration_ivgf.py",
    "encoder_ivgf.py",
    "fusion_ivgf.py",
    "image_processing_ivgf.py",
    "model.safetensors",
    "modeling_ivgf.py",
    "pipeline_ivgf.py",
    "preprocessor_config.json",
]
COMPAT_PYTHON = os.environ.get("IVGF_COMPAT_PYTHON")


def snapshot(folder: Path) -> dict:
    """{relative path: sha256} of every file under ``folder``, hidden ones included."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def labelled_config(**overrides):
    return get_config(
        "tiny", id2label=dict(enumerate(CLASSES)), label2id={n: i for i, n in enumerate(CLASSES)}, **overrides
    )


@pytest.fixture(scope="module")
def segmentation_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(labelled_config()).eval()
    folder = tmp_path_factory.mktemp("export") / "ivgf-seg"
    return export_for_hub(model, IVGFImageProcessor(), folder, card="# my own card\n", check=False)


@pytest.fixture(scope="module")
def detector_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = labelled_config(fpn_channels=32, anchor_sizes=(16, 32, 64, 128, 256), box_detections_per_image=20)
    model = IVGFForObjectDetection(config).eval()
    return export_for_hub(model, IVGFImageProcessor(), tmp_path_factory.mktemp("export") / "ivgf-det")


@pytest.fixture
def online(monkeypatch):
    """The Hub client believes it is online; any call that escapes the patches hits a closed local port."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")


class FakeHub:
    """Records what HfApi.create_repo / create_branch / list_repo_files / create_commit receive."""

    def __init__(self, monkeypatch, existing=()):
        self.calls, self.existing, self.commit = [], list(existing), None
        for name in ("create_repo", "create_branch", "list_repo_files", "create_commit"):
            monkeypatch.setattr(HfApi, name, self._unbound(getattr(self, name)))

    @staticmethod
    def _unbound(record):
        def method(api, *args, **kwargs):  # a plain function, so HfApi instances pass themselves as `api`
            return record(api, *args, **kwargs)

        return method

    def create_repo(self, api, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs, api.token))

    def create_branch(self, api, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def list_repo_files(self, api, repo_id, **kwargs):
        self.calls.append(("list_repo_files", repo_id, kwargs))
        return self.existing

    def create_commit(self, api, repo_id, operations, **kwargs):
        added = {}
        for op in operations:
            if isinstance(op, CommitOperationAdd):
                source = op.path_or_fileobj
                added[op.path_in_repo] = source if isinstance(source, bytes) else Path(source).read_bytes()
        deleted = [op.path_in_repo for op in operations if isinstance(op, CommitOperationDelete)]
        self.commit = SimpleNamespace(repo_id=repo_id, added=added, deleted=deleted, **kwargs)
        self.calls.append(("create_commit", repo_id))
        pr = "https://hub.test/org/ivgf-seg/discussions/1" if kwargs.get("create_pr") else None
        return SimpleNamespace(commit_url="https://hub.test/org/ivgf-seg/commit/0123abcd", pr_url=pr)


def forbid_hub(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was contacted")

    for name in ("create_repo", "create_branch", "list_repo_files", "create_commit", "upload_folder"):
        monkeypatch.setattr(HfApi, name, refuse)


def inspect_only(monkeypatch):
    """Replace the reload check by the folder inspection (the reload itself is proven once, in the push test)."""
    seen = []

    def check(folder, python=None, **kwargs):
        seen.append(Path(folder))
        return inspect_export_folder(folder)

    monkeypatch.setattr(hub, "check_export_folder", check)
    return seen


@pytest.mark.slow
def test_push_sends_exactly_the_checked_folder(segmentation_folder, online, monkeypatch, capsys):
    before = snapshot(segmentation_folder)
    existing = [".gitattributes", "README.md", "model.safetensors", "modeling_old.py", "pytorch_model.bin", "demo.png"]
    fake = FakeHub(monkeypatch, existing=existing)
    code = main(
        [
            "push",
            str(segmentation_folder),
            "org/ivgf-seg",
            "--revision",
            "v1",
            "--create-pr",
            "--private",
            "--token",
            "hf_test",
            "--commit-message",
            "Release v1",
        ]
    )
    assert code == 0
    assert [call[0] for call in fake.calls] == ["create_repo", "create_branch", "list_repo_files", "create_commit"]
    assert fake.calls[0] == (
        "create_repo",
        "org/ivgf-seg",
        {"private": True, "exist_ok": True, "repo_type": "model"},
        "hf_test",
    )
    assert fake.calls[1][2] == {"branch": "v1", "exist_ok": True, "repo_type": "model"}
    assert fake.calls[2][2] == {"revision": "v1", "repo_type": "model"}
    commit = fake.commit
    assert sorted(commit.added) == SEGMENTATION_FILES
    assert all(commit.added[name] == (segmentation_folder / name).read_bytes() for name in SEGMENTATION_FILES)
    assert commit.added["README.md"] == b"# my own card\n"
    assert commit.deleted == ["modeling_old.py", "pytorch_model.bin"]
    assert commit.commit_message == "Release v1"
    assert commit.revision == "v1" and commit.create_pr is True
    output = capsys.readouterr().out
    assert "pull request: https://hub.test/org/ivgf-seg/discussions/1" in output
    assert snapshot(segmentation_folder) == before


def test_push_default_message_and_rendered_card(segmentation_folder, online, monkeypatch, tmp_path):
    inspect_only(monkeypatch)
    fake = FakeHub(monkeypatch)
    metrics = {
        "task": "segmentation",
        "split": "val",
        "metrics": {
            "mIoU": 0.5,
            "pixel_accuracy": 0.9,
            "mean_accuracy": 0.6,
            "per_class_iou": {"road": 0.75, "car": 0.5, "person": 0.25},
        },
    }
    (tmp_path / "eval.json").write_text(json.dumps(metrics))
    plot = tmp_path / "per_class_iou.png"
    plot.write_bytes(b"\x89PNG fake")
    before = snapshot(segmentation_folder)
    assert (
        main(
            [
                "push",
                str(segmentation_folder),
                "org/ivgf-seg",
                "--metrics",
                str(tmp_path / "eval.json"),
                "--plot",
                str(plot),
                "--dataset",
                "org/mfnet",
            ]
        )
        == 0
    )
    assert fake.calls[0][2] == {"private": None, "exist_ok": True, "repo_type": "model"}
    assert "create_branch" not in [call[0] for call in fake.calls]
    commit = fake.commit
    assert commit.commit_message == f"Upload IVGFForSemanticSegmentation with ivgf-hf {__version__}"
    assert commit.revision is None and commit.create_pr is False
    assert sorted(commit.added) == sorted(SEGMENTATION_FILES + ["plots/per_class_iou.png"])
    assert commit.added["plots/per_class_iou.png"] == b"\x89PNG fake"
    card = commit.added["README.md"].decode()
    assert 'repo_id, revision = "org/ivgf-seg", "main"' in card
    assert "| mIoU | 50.0 |" in card and "![per class iou](plots/per_class_iou.png)" in card
    assert "- org/mfnet" in card and "`road`, `car`, `person`" in card
    assert snapshot(segmentation_folder) == before  # the folder's own README.md was not touched


def test_dry_run_lists_files_and_works_offline(segmentation_folder, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forbid_hub(monkeypatch)
    checked = inspect_only(monkeypatch)
    plot = tmp_path / "confusion.png"
    plot.write_bytes(b"png")
    assert main(["push", str(segmentation_folder), "org/ivgf-seg", "--dry-run", "--plot", str(plot)]) == 0
    assert checked == [segmentation_folder]
    lines = capsys.readouterr().out.splitlines()
    assert "nothing was uploaded" in lines[0]
    assert [line.strip() for line in lines[1:-1]] == sorted(SEGMENTATION_FILES + ["plots/confusion.png"])
    assert lines[-1].startswith("README.md: rendered from model_cards/segmentation.md")

    result = push_folder(segmentation_folder, "org/ivgf-seg", dry_run=True, check=False)
    assert result.files == SEGMENTATION_FILES and result.commit_url is None

    no_card = shutil.copytree(segmentation_folder, tmp_path / "no-card", ignore=shutil.ignore_patterns("README.md"))
    assert main(["push", str(no_card), "org/ivgf-seg", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.strip() for line in lines[1:-1]] == SEGMENTATION_FILES  # README.md: a card without results
    assert lines[-1].startswith("README.md: rendered from model_cards/segmentation.md")
    assert not (no_card / "README.md").exists()


def test_offline_push_fails_before_any_work(segmentation_folder, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forbid_hub(monkeypatch)
    checked = inspect_only(monkeypatch)
    before = snapshot(segmentation_folder)
    with pytest.raises(SystemExit) as exit_info:
        main(["push", str(segmentation_folder), "org/ivgf-seg"])
    assert exit_info.value.code == 2
    assert "HF_HUB_OFFLINE is set" in str(exit_info.value) and "--dry-run" in str(exit_info.value)
    assert checked == [] and snapshot(segmentation_folder) == before


def test_unreachable_hub_gives_a_clear_error(segmentation_folder, online, monkeypatch):
    inspect_only(monkeypatch)
    before = snapshot(segmentation_folder)
    with pytest.raises(SystemExit) as exit_info:  # the real client, connecting to a closed port
        main(["push", str(segmentation_folder), "org/ivgf-seg", "--token", "hf_dummy"])
    message = str(exit_info.value)
    assert message.startswith("ivgf push: cannot reach the Hugging Face Hub at http://127.0.0.1:9")
    assert "nothing was uploaded" in message and str(segmentation_folder) in message
    assert snapshot(segmentation_folder) == before


def test_folder_checks_refuse_pickles_drift_and_broken_weights(segmentation_folder, tmp_path, monkeypatch):
    forbid_hub(monkeypatch)
    pickled = shutil.copytree(segmentation_folder, tmp_path / "pickled")
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(SystemExit, match=r"pickle files \['pytorch_model.bin'\]"):
        main(["push", str(pickled), "org/x", "--dry-run"])

    drifted = shutil.copytree(segmentation_folder, tmp_path / "drifted")
    with open(drifted / "fusion_ivgf.py", "a") as handle:
        handle.write("\n# edited by hand\n")
    with pytest.raises(HubFolderError, match="fusion_ivgf.py differs from the installed ivgf_hf"):
        check_export_folder(drifted)

    broken = shutil.copytree(segmentation_folder, tmp_path / "broken")
    weights = load_file(broken / "model.safetensors")
    dropped = next(key for key in weights if key.endswith("classifier.weight"))
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(HubFolderError, match=dropped.replace(".", r"\.")):
        check_export_folder(broken)

    (broken / "model.safetensors").unlink()
    with pytest.raises(HubFolderError, match="no model.safetensors"):
        inspect_export_folder(broken)
    with pytest.raises(ValueError, match="Repo id"):
        push_folder(segmentation_folder, "not a/valid/id", dry_run=True, check=False)


@pytest.mark.slow
def test_detector_export_loads_as_remote_code(detector_folder):
    export = inspect_export_folder(detector_folder)
    assert export.task == "detection" and export.model_class == "IVGFForObjectDetection"
    assert {"detection_ivgf.py", "modeling_ivgf.py", "encoder_ivgf.py", "fusion_ivgf.py"} <= set(export.files)
    auto_map = json.loads((detector_folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForObjectDetection"] == "detection_ivgf.IVGFForObjectDetection"
    register_auto_classes()
    loaded = transformers.AutoModelForObjectDetection.from_pretrained(detector_folder)
    assert type(loaded) is IVGFForObjectDetection and loaded.config.id2label[2] == "person"


def write_original_checkpoints(folder: Path) -> dict:
    """InfMAE / ConvMAE pretraining checkpoints in their original layout ({"model": ..., "args": Namespace})."""
    paths, states = {}, {}
    for modality, name in (("infrared", "infmae"), ("visible", "convmae")):
        tensors = load_file(FIXTURES / f"{name}_tiny_parity.safetensors")
        state = {key[len("state.") :]: value for key, value in tensors.items() if key.startswith("state.")}
        assert "mask_token" in state and any(key.startswith("decoder_") for key in state)
        paths[modality] = folder / f"{name}.pth"
        torch.save({"model": state, "args": argparse.Namespace(model=name)}, paths[modality])
        states[modality] = state
    return {"paths": paths, "states": states}


def training_inputs(task: str):
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "pixel_values": torch.randn(2, 3, 64, 64, generator=generator),
        "pixel_values_ir": torch.randn(2, 1, 64, 64, generator=generator),
    }
    if task == "segmentation":
        inputs["labels"] = torch.randint(0, len(CLASSES), (2, 64, 64), generator=generator)
    else:
        inputs["labels"] = [
            {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.3]])},
            {"class_labels": torch.tensor([2, 0]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])},
        ]
    return inputs


@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_init_checkpoint_builds_a_folder_that_fine_tunes(task, tmp_path, capsys):
    originals = write_original_checkpoints(tmp_path)
    out = tmp_path / f"ivgf-{task}-init"
    args = [
        "init-checkpoint",
        "--infrared-checkpoint",
        str(originals["paths"]["infrared"]),
        "--visible-checkpoint",
        str(originals["paths"]["visible"]),
        "--preset",
        "tiny",
        "--task",
        task,
        "--id2label",
        json.dumps(CLASSES),
        "--set",
        "pretrain_image_size=128",
        "--out",
        str(out),
        "--no-check",
    ]
    if task == "detection":
        args += ["--set", "fpn_channels=32"]
    assert main(args) == 0
    report = capsys.readouterr().out
    assert "== infrared encoder <- " in report and "== visible encoder <- " in report
    assert "  - mask_token" in report and "  - decoder_embed.weight" in report
    assert "resized patch_embed1.proj.weight: (32, 3, 4, 4) -> (32, 1, 4, 4)" in report
    assert "resized pos_embed" not in report  # 128 px / 16 = the checkpoints' 8 x 8 grid

    export = inspect_export_folder(out)
    assert export.task == task and export.id2label == dict(enumerate(CLASSES))
    model_class = IVGFForSemanticSegmentation if task == "segmentation" else IVGFForObjectDetection
    model = model_class.from_pretrained(out, dtype=torch.float32)
    visible, infrared = originals["states"]["visible"], originals["states"]["infrared"]
    encoders = model.ivgf
    assert torch.equal(
        encoders.visible_encoder.state_dict()["blocks3.1.attn.qkv.weight"], visible["blocks3.1.attn.qkv.weight"]
    )
    assert torch.equal(
        encoders.infrared_encoder.state_dict()["blocks2.0.mlp.fc1.weight"], infrared["blocks2.0.mlp.fc1.weight"]
    )
    assert torch.allclose(
        encoders.infrared_encoder.state_dict()["patch_embed1.proj.weight"],
        infrared["patch_embed1.proj.weight"].sum(dim=1, keepdim=True),
    )

    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(0)
    loss = model(**training_inputs(task)).loss
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert "ivgf.visible_encoder.blocks3.1.attn.qkv.weight" in changed
    assert "ivgf.infrared_encoder.patch_embed1.proj.weight" in changed
    head = "decode_head.classifier.weight" if task == "segmentation" else "roi_heads.box_predictor.cls_score.weight"
    assert head in changed


def test_init_checkpoint_refuses_bad_input(tmp_path):
    originals = write_original_checkpoints(tmp_path)
    base = ["init-checkpoint", "--preset", "tiny", "--task", "segmentation", "--num-labels", "3"]
    with pytest.raises(SystemExit, match="--infrared-checkpoint and/or --visible-checkpoint"):
        main(base + ["--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="checkpoint not found: .*missing.pth"):
        main(base + ["--visible-checkpoint", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "b")])
    with pytest.raises(SystemExit, match="--num-labels 3 but --id2label has 2 names"):
        main(
            base
            + [
                "--visible-checkpoint",
                str(originals["paths"]["visible"]),
                "--id2label",
                '["a", "b"]',
                "--out",
                str(tmp_path / "c"),
            ]
        )
    with pytest.raises(SystemExit, match="--set 'hidden_size_typo=3'"):
        main(
            base
            + [
                "--visible-checkpoint",
                str(originals["paths"]["visible"]),
                "--set",
                "hidden_size_typo=3",
                "--out",
                str(tmp_path / "d"),
            ]
        )
    with pytest.raises(SystemExit, match="shapes do not match the infrared encoder"):
        main(
            base
            + [
                "--infrared-checkpoint",
                str(originals["paths"]["infrared"]),
                "--set",
                "hidden_sizes=[32, 48, 80]",
                "--out",
                str(tmp_path / "e"),
            ]
        )
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="pass --overwrite"):
        main(base + ["--visible-checkpoint", str(originals["paths"]["visible"]), "--out", str(occupied)])
    assert (occupied / "notes.txt").read_text() == "mine"
    assert not any((tmp_path / name).exists() for name in "abcde")


@pytest.mark.skipif(
    not COMPAT_PYTHON,
    reason="IVGF_COMPAT_PYTHON is unset: run `bash scripts/setup_compat_venv.sh` and export IVGF_COMPAT_PYTHON to "
    "the interpreter it prints to check loading under transformers 4.57",
)
@pytest.mark.slow
def test_exports_load_as_remote_code_under_the_other_transformers(segmentation_folder, detector_folder):
    probe = subprocess.run(
        [COMPAT_PYTHON, "-c", "import transformers; print(transformers.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    compat_version = probe.stdout.strip()
    assert compat_version.split(".")[0] != transformers.__version__.split(".")[0], (compat_version, transformers)
    for folder in (segmentation_folder, detector_folder):
        check_export_folder(folder, python=COMPAT_PYTHON)
