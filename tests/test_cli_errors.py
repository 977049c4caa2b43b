"""How `ivgf` reports failures: one line and exit status 2 for expected ones, tracebacks for the rest and on request."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivgf_hf.cli import main
from ivgf_hf.commands import errors
from ivgf_hf.conversion import CheckpointFormatError

REPO = Path(__file__).resolve().parents[1]


def convert_args(tmp_path, checkpoint):
    return [
        "convert",
        str(checkpoint),
        "--modality",
        "infrared",
        "--preset",
        "tiny",
        "--out",
        str(tmp_path / "out.safetensors"),
    ]


def test_expected_failure_is_one_line_with_status_2(tmp_path, capsys):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        main(convert_args(tmp_path, tmp_path / "empty.pth"))
    message = f"ivgf convert: {tmp_path / 'empty.pth'} is empty (0 bytes); download or copy the checkpoint again"
    assert exit_info.value.code == 2 and str(exit_info.value) == message
    assert capsys.readouterr().err == message + "\n"


@pytest.mark.parametrize("how", ["flag before", "flag after", "environment"])
def test_debug_shows_the_original_exception(tmp_path, monkeypatch, how):
    (tmp_path / "empty.pth").write_bytes(b"")
    argv = convert_args(tmp_path, tmp_path / "empty.pth")
    if how == "flag before":
        argv = ["--debug"] + argv
    elif how == "flag after":
        argv = argv + ["--debug"]
    else:
        monkeypatch.setenv(errors.DEBUG_VARIABLE, "1")
    with pytest.raises(CheckpointFormatError, match=r"empty.pth is empty \(0 bytes\)"):
        main(argv)


def test_debug_shows_the_exception_behind_a_command_s_own_exit(tmp_path, capsys):
    argv = [
        "train",
        "--recipe",
        "synth-seg-cpu",
        "--data-root",
        str(tmp_path / "missing"),
        "--output-dir",
        str(tmp_path / "run"),
        "--debug",
    ]
    with pytest.raises(SystemExit, match="ivgf train: data_root .*missing does not exist"):
        main(argv)
    error = capsys.readouterr().err
    assert "Traceback" in error and "FileNotFoundError" in error


def test_unexpected_exceptions_keep_their_traceback(monkeypatch):
    import ivgf_hf.commands.convert as convert

    def broken(args):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(convert, "_convert", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["convert", "x.pth", "--modality", "visible", "--out", "y.safetensors"])


def test_messages_get_the_command_prefix_once(monkeypatch, capsys):
    import ivgf_hf.commands.convert as convert

    for raised, shown in (
        (SystemExit("ivgf convert: already prefixed"), "ivgf convert: already prefixed"),
        (SystemExit("--tta-scales must be numbers"), "ivgf convert: --tta-scales must be numbers"),
        (
            FileNotFoundError(2, "No such file or directory", "a.pth"),
            "ivgf convert: [Errno 2] No such file or directory: 'a.pth'",
        ),
    ):

        def fail(args, error=raised):
            raise error

        monkeypatch.setattr(convert, "_convert", fail)
        with pytest.raises(SystemExit) as exit_info:
            main(["convert", "x.pth", "--modality", "visible", "--out", "y.safetensors"])
        assert exit_info.value.code == 2 and str(exit_info.value) == shown
        assert capsys.readouterr().err == shown + "\n"


@pytest.mark.slow
def test_the_command_line_exits_2_without_traceback(tmp_path):
    """A real process: status 2 and one line on stderr; with --debug the traceback (status 1)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop(errors.DEBUG_VARIABLE, None)
    command = [sys.executable, "-m", "ivgf_hf.cli", *convert_args(tmp_path, tmp_path / "missing.pth")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"ivgf convert: checkpoint not found: {tmp_path / 'missing.pth'}\n"
    debug = subprocess.run(command + ["--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr
