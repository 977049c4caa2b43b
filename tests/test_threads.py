"""The CPU thread policy (ivgf_hf.threads) and its use by the command line and the DataLoaders."""

import os

import pytest
import torch

from ivgf_hf import threads
from ivgf_hf.cli import build_parser, main


@pytest.fixture
def clean_env(monkeypatch):
    for name in (threads.ENV_VAR, "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.setenv(name, "")  # records the current value, restored after the test (also after the CLI sets it)
        monkeypatch.delenv(name)
    return monkeypatch


def _machine(monkeypatch, tmp_path, cores: int, cpu_max=None):
    """Pretend the affinity mask holds ``cores`` cores and the cgroup's cpu.max reads ``cpu_max``."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    cgroup = tmp_path / "cpu.max"
    if cpu_max is not None:
        cgroup.write_text(cpu_max + "\n")
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", cgroup)
    monkeypatch.setattr(threads.available_cpus, "__defaults__", (cgroup,))


@pytest.mark.parametrize(
    "text, expected",
    [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("garbage", None)],
)
def test_cgroup_cpu_limit(tmp_path, text, expected):
    path = tmp_path / "cpu.max"
    path.write_text(text + "\n")
    assert threads.cgroup_cpu_limit(path) == expected


def test_cgroup_cpu_limit_without_file(tmp_path):
    assert threads.cgroup_cpu_limit(tmp_path / "absent") is None


def test_available_cpus_is_affinity_capped_by_quota(clean_env, tmp_path):
    _machine(clean_env, tmp_path, cores=8, cpu_max="300000 100000")
    assert threads.available_cpus() == 3
    _machine(clean_env, tmp_path, cores=2, cpu_max="max 100000")
    assert threads.available_cpus() == 2
    _machine(clean_env, tmp_path, cores=4)
    assert threads.available_cpus() == 4


def test_resolve_divides_cores_among_local_processes(clean_env, tmp_path):
    _machine(clean_env, tmp_path, cores=8, cpu_max="600000 100000")
    assert threads.resolve_num_threads() == 6
    assert threads.resolve_num_threads(processes=4) == 1
    assert threads.resolve_num_threads(processes=16) == 1
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.resolve_num_threads() == 3


def test_resolve_order_flag_then_ivgf_variable_then_omp(clean_env, tmp_path):
    _machine(clean_env, tmp_path, cores=8)
    clean_env.setenv("OMP_NUM_THREADS", "5")
    assert threads.resolve_num_threads() == 5
    clean_env.setenv(threads.ENV_VAR, "3")
    assert threads.resolve_num_threads() == 3
    assert threads.resolve_num_threads(requested=7) == 7


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_resolve_rejects_bad_counts_naming_the_source(clean_env, bad):
    clean_env.setenv(threads.ENV_VAR, bad)
    with pytest.raises(ValueError, match=threads.ENV_VAR):
        threads.resolve_num_threads()
    with pytest.raises(ValueError, match="--threads"):
        threads.resolve_num_threads(requested=0)


@pytest.mark.parametrize("command", ["train", "quickstart", "ablate", "eval", "predict"])
def test_commands_take_threads(command):
    parser = build_parser()
    extra = {
        "eval": ["--model", "m", "--dataset", "paired", "--data-root", "d", "--out", "o"],
        "predict": ["--model", "m", "--visible", "v", "--infrared", "i", "--out", "o"],
    }
    try:
        args = parser.parse_args([command, "--threads", "3", *extra.get(command, [])])
    except SystemExit:  # predict's required options differ: the flag itself must still be known
        args = None
    assert "--threads" in parser._subparsers._group_actions[0].choices[command].format_help()
    if args is not None:
        assert args.threads == 3


def test_cli_sets_torch_threads_and_exports_the_count(clean_env, monkeypatch):
    before = torch.get_num_threads()
    seen = {}

    def handler(args):
        seen["threads"] = torch.get_num_threads()
        seen["env"] = os.environ.get(threads.ENV_VAR)
        return 0

    parser = build_parser()
    args = parser.parse_args(["train", "--threads", "1", "--list-recipes"])
    args.handler = handler
    monkeypatch.setattr("ivgf_hf.cli.build_parser", lambda: _Fixed(args))
    try:
        assert main([]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == {"threads": 1, "env": "1"}


def test_cli_names_a_bad_thread_count(clean_env):
    with pytest.raises(SystemExit, match="--threads must be a positive integer"):
        main(["train", "--threads", "0", "--list-recipes"])


class _Fixed:
    def __init__(self, args):
        self.args = args

    def parse_args(self, argv):
        return self.args


def test_dataloader_workers_run_one_thread():
    """torch's worker loop sets one intra-op thread per worker: the policy relies on it, so the train loader's
    workers do not each start a full set."""
    from ivgf_hf.training.data import train_loader

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loader = train_loader(_WorkerThreads(), [[0]], "segmentation", num_workers=1)
        loader.collate_fn = lambda batch: batch
        assert next(iter(loader)) == [1]
    finally:
        torch.set_num_threads(before)


class _WorkerThreads(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        return torch.get_num_threads()
