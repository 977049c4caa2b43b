"""Smoke and unit tests of the benchmark harness (tiny preset, one iteration; no timing assertions)."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ivgf_hf import get_config
from ivgf_hf.benchmark import (
    MODULE_GROUPS,
    VARIANTS,
    BenchmarkSettings,
    TensorMemoryTracker,
    count_flops,
    measure_model_case,
    report_markdown,
    run_benchmark,
    run_case,
    run_in_subprocess,
    training_step_tensor_memory,
    write_report,
)
from ivgf_hf.benchmark.cases import graph_breaks
from ivgf_hf.commands.benchmark import main as benchmark_main
from ivgf_hf.modeling import IVGFForSemanticSegmentation

PHASE_FIELDS = {
    "inference": ("latency_s", "images_per_s", "memory", "flops", "time_split_s", "op_profile", "utilisation"),
    "training": ("step_s", "images_per_s", "schedule_hours", "memory", "tensor_memory", "flops", "utilisation"),
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One run of `ivgf benchmark` on the tiny preset: every variant, both phases, one AGF size, no data section."""
    folder = tmp_path_factory.mktemp("benchmark")
    argv = [
        "--preset",
        "tiny",
        "--size",
        "64",
        "--batch",
        "2",
        "--warmup",
        "0",
        "--iterations",
        "1",
        "--threads",
        "1",
        "--in-process",
        "--matmul-size",
        "256",
        "--agf-sizes",
        "64",
        "--skip-data",
        "--out",
        str(folder / "bench.json"),
        "--plot",
        str(folder / "bench"),
    ]
    assert benchmark_main(argv) == 0
    return folder, json.loads((folder / "bench.json").read_text())


def test_report_has_every_field(smoke):
    folder, report = smoke
    assert report["settings"]["preset"] == "tiny" and report["settings"]["device"] == "cpu"
    assert report["machine"]["device_name"] and report["machine"]["threads"] == 1
    assert [row["variant"] for row in report["models"]] == list(VARIANTS)
    for row in report["models"]:
        for phase, fields in PHASE_FIELDS.items():
            result = row[phase]
            assert "error" not in result, (row["variant"], phase, result.get("error"))
            for name in fields:
                assert name in result, (row["variant"], phase, name)
            assert result["memory"]["peak_bytes"] > 0
            assert result["parameters_by_part"]["total"] == result["parameters"]
            assert result["matmul"]["flop_per_s"] > 0 and result["utilisation"] > 0
            assert result["utilisation_cpu_time"] > 0  # CPU run: the load-independent ratio is reported
        for clock in ("time_split_s", "time_split_cpu_s"):  # wall time, and CPU time on the CPU
            split = row["inference"][clock]
            assert set(split) == {"total", "other", *MODULE_GROUPS}
            assert sum(split[group] for group in MODULE_GROUPS) <= split["total"] * 1.01
        assert 0.0 <= row["inference"]["op_profile"]["copy_share"] <= 1.0
    implementations = {(r["implementation"], r["pass"]) for r in report["agf_memory"]}
    assert implementations == {("sdpa", "forward+backward"), ("naive", "forward+backward")}
    assert all(r["peak_increase_bytes"] >= 0 for r in report["agf_memory"])
    markdown = (folder / "bench.md").read_text()
    for heading in (
        "### Models",
        "### Training step",
        "### Training step tensor memory",
        "### Forward time by module",
        "### AGF peak memory",
    ):
        assert heading in markdown
    assert "| ivgf |" in markdown and report["machine"]["device_name"] in markdown
    assert (folder / "bench_time_split.png").stat().st_size > 0
    assert (folder / "bench_memory.png").stat().st_size > 0


def test_flops_follow_the_architecture(smoke):
    _, report = smoke
    rows = {row["variant"]: row for row in report["models"]}
    flops = {variant: row["inference"]["flops"] for variant, row in rows.items()}
    # The fusion modules only exist in IVGF; the fused models run two encoders, the single-modality ones one.
    assert flops["ivgf"]["total"] > flops["sum_fusion"]["total"] > flops["visible"]["total"]
    for group in ("fem", "tem", "agf"):
        assert flops["ivgf"]["by_group"][group] > 0
        assert flops["visible"]["by_group"][group] == 0
    assert flops["sum_fusion"]["by_group"]["encoders"] > 1.5 * flops["visible"]["by_group"]["encoders"]
    for counts in flops.values():
        assert sum(counts["by_group"].values()) <= counts["total"]
    # A training step runs the forward and a backward of about twice its cost.
    for row in rows.values():
        assert row["training"]["flops"]["total"] > 2 * row["inference"]["flops"]["total"]


def test_detection_task_runs_both_phases():
    settings = BenchmarkSettings(
        preset="tiny",
        task="detection",
        size=64,
        batch=2,
        device="cpu",
        threads=1,
        warmup=0,
        iterations=1,
        matmul_size=128,
        variants=("ivgf",),
        isolate=False,
        agf_sizes=(),
        data_pipeline=False,
    )
    report = run_benchmark(settings, log=lambda line: None)
    row = report["models"][0]
    for phase, fields in PHASE_FIELDS.items():
        assert "error" not in row[phase], row[phase].get("error")
        assert all(name in row[phase] for name in fields)
    # The detection head (FPN, RPN, RoI heads) is the "head" group; the fused backbone is the same as segmentation's.
    assert row["inference"]["flops"]["by_group"]["head"] > 0
    assert "### Models" in report_markdown(report)


def test_flop_counter_counts_cpu_attention():
    batch, heads, tokens, keys, dim = 2, 3, 40, 24, 8
    query = torch.randn(batch, heads, tokens, dim)
    key, value = torch.randn(batch, heads, keys, dim), torch.randn(batch, heads, keys, dim)
    counted = count_flops(lambda: F.scaled_dot_product_attention(query, key, value))["total"]
    assert counted == 2 * 2 * batch * heads * tokens * keys * dim


def test_bf16_autocast_logits_stay_close_to_fp32():
    settings = BenchmarkSettings(
        preset="tiny",
        size=64,
        batch=2,
        dtype="bf16",
        device="cpu",
        threads=1,
        warmup=0,
        iterations=1,
        matmul_size=128,
    ).resolved()
    case = {"kind": "model", "settings": vars(settings), "variant": "ivgf", "phase": "inference"}
    errors = measure_model_case(case)["low_precision_error"]
    assert set(errors) == {"fused_maps", "logits"}
    for error in errors.values():
        assert error["reference_max_abs"] > 0 and error["max_abs"] > 0, "bf16 autocast changed nothing"
        assert error["relative"] < 0.05


@pytest.mark.slow
def test_agf_case_runs_in_a_fresh_process():
    case = dict(kind="agf", implementation="naive", size=64, stride=4, channels=8, heads=2, batch=1, device="cpu")
    case["pass"] = "forward"
    result = run_in_subprocess(case, timeout=120)
    assert "error" not in result, result.get("error")
    assert result["peak_increase_bytes"] >= 0 and result["seconds"] >= 0
    with pytest.raises(ValueError, match="unknown case kind"):
        run_case({"kind": "unknown"})


def test_settings_are_validated():
    with pytest.raises(ValueError, match="preset 'huge'"):
        BenchmarkSettings(preset="huge").resolved()
    with pytest.raises(ValueError, match="size 100"):
        BenchmarkSettings(size=100).resolved()
    with pytest.raises(ValueError, match="variants"):
        BenchmarkSettings(variants=("ivgf", "rgb")).resolved()
    with pytest.raises(ValueError, match="nothing to measure"):
        BenchmarkSettings(variants=(), agf_sizes=(), data_pipeline=False).resolved()
    with pytest.raises(ValueError, match="warmup"):
        BenchmarkSettings(compile=True, warmup=0).resolved()


def test_reports_are_not_overwritten_without_the_flag(smoke, tmp_path):
    _, report = smoke
    out = tmp_path / "bench.json"
    write_report(report, out)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_report(report, out)
    write_report(report, out, overwrite=True)
    with pytest.raises(SystemExit, match="exists"):
        benchmark_main(["--preset", "tiny", "--out", str(out)])


@pytest.mark.slow
def test_segmentation_forward_and_loss_compile_without_graph_breaks():
    """The fused backbone (every task's hot path) and a training forward with the loss are each one torch.compile
    graph (dynamo tracing only)."""
    config = get_config("tiny", num_labels=4, semantic_loss_class_weights=[1.0, 2.0, 3.0, 4.0])
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(config)
    pixel_values = torch.randn(2, config.num_channels, 64, 64)
    pixel_values_ir = torch.randn(2, config.num_channels_ir, 64, 64)
    labels = torch.randint(0, 4, (2, 64, 64))
    for module, kwargs in ((model.ivgf.eval(), {}), (model.train(), {"labels": labels})):
        explained = torch._dynamo.explain(module)(pixel_values, pixel_values_ir, **kwargs)
        reasons = [(reason.reason, reason.user_stack[-1:]) for reason in explained.break_reasons]
        assert explained.graph_count == 1 and explained.graph_break_count == 0, reasons


class _BreakingModel(nn.Module):
    def forward(self, pixel_values, pixel_values_ir):
        fused = pixel_values + pixel_values_ir
        torch._dynamo.graph_break()
        return fused.relu()


def test_graph_breaks_are_recorded_and_reported(smoke):
    _, report = smoke
    inputs = {"pixel_values": torch.randn(1, 3, 8, 8), "pixel_values_ir": torch.randn(1, 1, 8, 8)}
    breaks = graph_breaks(_BreakingModel(), inputs, BenchmarkSettings(device="cpu"))
    assert breaks["graph_count"] == 2 and breaks["graph_break_count"] == 1
    (entry,) = breaks["break_reasons"]
    assert entry["reason"] and entry["location"].startswith(__file__)
    report = copy.deepcopy(report)
    report["models"][0]["inference"]["graph_breaks"] = breaks
    markdown = report_markdown(report)
    assert "### torch.compile graph breaks" in markdown
    assert f"| {report['models'][0]['variant']} | 2 | 1 |" in markdown


def test_tensor_memory_counts_new_storages_until_they_are_freed():
    base = torch.randn(256, 256)
    with TensorMemoryTracker() as tracker:
        base.view(-1).add_(1.0)  # a view and an in-place op reuse the input's storage
        assert tracker.current_bytes == 0
        created = base * 2.0
        assert tracker.current_bytes == created.numel() * 4
        del created
        assert tracker.current_bytes == 0
    assert tracker.peak_bytes == 256 * 256 * 4


def test_training_step_tensor_memory_by_part():
    batch, width = 64, 32
    model = nn.Sequential(nn.Linear(width, width, bias=False), nn.ReLU(), nn.Linear(width, width, bias=False))
    optimizer = torch.optim.AdamW(model.parameters())
    inputs = torch.randn(batch, width)

    def loss():
        return model(inputs).square().mean()

    loss().backward()
    optimizer.step()
    memory = training_step_tensor_memory(model, optimizer, loss)
    weights = 2 * width * width * 4
    assert memory["parameters"] == weights and memory["gradients"] == weights
    assert 2 * weights <= memory["optimizer_state"] <= 2 * weights + 64  # AdamW's two moments and step counts
    # The backward keeps the ReLU output and the second layer's output (the input existed before), and the loss.
    assert memory["after_forward"] == 2 * batch * width * 4 + 4
    assert memory["step_peak"] >= memory["gradients"]
    assert memory["total_peak"] == memory["parameters"] + memory["optimizer_state"] + memory["step_peak"]


def test_memory_phase_counts_a_training_step_without_timing(smoke):
    _, report = smoke
    settings = BenchmarkSettings(
        preset="tiny",
        size=64,
        batch=2,
        device="cpu",
        threads=1,
        variants=("ivgf",),
        phases=("memory",),
        isolate=False,
        agf_sizes=(),
        data_pipeline=False,
    )
    row = run_benchmark(settings, log=lambda line: None)["models"][0]
    assert set(row) == {"variant", "config_overrides", "memory"}
    result = row["memory"]
    assert "error" not in result, result.get("error")
    assert "step_s" not in result and "utilisation" not in result
    memory = result["tensor_memory"]
    weights = 4 * result["parameters"]  # float32
    assert memory["parameters"] >= weights and memory["gradients"] == weights
    assert 2 * weights <= memory["optimizer_state"] <= 2.01 * weights  # AdamW's moments, made before the step
    assert memory["after_forward"] > 0 and memory["step_peak"] >= memory["gradients"]
    # The same step as the smoke run's training phase (same preset, input, batch): the same FLOPs.
    assert result["flops"]["total"] == report["models"][0]["training"]["flops"]["total"]
    markdown = report_markdown({**report, "models": [row]})
    assert "### Training step tensor memory" in markdown and "| ivgf |" in markdown


@pytest.mark.slow
def test_gradient_checkpointing_lowers_the_counted_tensor_memory():
    memory = {}
    for checkpointing in (False, True):
        settings = BenchmarkSettings(
            preset="tiny",
            size=128,
            batch=2,
            device="cpu",
            threads=1,
            variants=("ivgf",),
            phases=("memory",),
            gradient_checkpointing=checkpointing,
            isolate=False,
            agf_sizes=(),
            data_pipeline=False,
        )
        row = run_benchmark(settings, log=lambda line: None)["models"][0]
        memory[checkpointing] = row["memory"]["tensor_memory"]
    assert memory[True]["after_forward"] < 0.5 * memory[False]["after_forward"]
    assert memory[True]["step_peak"] < memory[False]["step_peak"]
