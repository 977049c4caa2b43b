"""Benchmark harness: latency, throughput, training step, peak memory, FLOPs and utilisation of IVGF models.

One run measures, for one preset / task / input size / batch / dtype / device / ``torch.compile`` / channels-last
choice:

- each model variant side by side (:data:`VARIANTS`: IVGF, the sum-fusion baseline, the single-modality models):
  inference latency (median of N after warm-up) and images/s, training step time (forward + backward + AdamW),
  peak memory of both phases, the tensor memory of a training step by part (counted op by op, so a CPU run
  gives what a GPU needs), FLOPs per forward and per training step (``torch.utils.flop_counter``), achieved
  FLOP/s and its ratio to the dense matmul throughput measured in the same process (the utilisation), the
  forward time and FLOPs split by module (encoders / FEM / TEM / AGF / head, through forward hooks), the share
  of ``aten::copy_`` in the profiled forward and, with ``torch.compile``, the graph breaks of the forward
  (``torch._dynamo.explain``);
- the attention-guided fusion through ``scaled_dot_product_attention`` against a naive attention reference that
  writes out the N x N matrix: peak memory per input size (:func:`measure_agf_case`);
- the data pipeline's pairs/s (``scripts/benchmark_data.py`` of a source checkout, run as it is).

By default every model phase and AGF case runs in a fresh subprocess (``python -m ivgf_hf.benchmark --case ...``),
so that peak memory is that of the case alone: on CUDA ``torch.cuda.max_memory_allocated``, on the CPU the peak
resident set size of the process (its mark reset where Linux allows it), which includes the interpreter and torch.

The command line is ``ivgf benchmark`` (``ivgf_hf/commands/benchmark.py``); :func:`run_benchmark` is the API.

Modules: ``settings`` (what a run measures), ``measure`` (clocks, peak memory, matmul throughput), ``profiling``
(FLOPs, time split and op profile per module group), ``cases`` (one model phase, in this process or a fresh one),
``agf`` (the AGF memory case), ``tensor_memory`` (tensor memory counted op by op), ``runner`` (a whole run),
``report`` (markdown and JSON) and ``plots``.
"""

from .agf import NaiveAttentionFusion, measure_agf_case, naive_attention_estimate_bytes
from .cases import build_model, low_precision_error, make_batch, measure_model_case, run_case, run_in_subprocess
from .measure import measure_matmul_throughput
from .plots import plot_report
from .profiling import ModuleGroupProbe, count_flops, module_groups, parameter_counts
from .report import agf_memory_markdown, report_markdown, write_report
from .runner import run_benchmark
from .settings import AGF_IMPLEMENTATIONS, AGF_PASSES, DTYPES, MODULE_GROUPS, TASKS, VARIANTS, BenchmarkSettings
from .tensor_memory import TensorMemoryTracker, training_step_tensor_memory

__all__ = [
    "VARIANTS",
    "TASKS",
    "DTYPES",
    "MODULE_GROUPS",
    "AGF_IMPLEMENTATIONS",
    "AGF_PASSES",
    "BenchmarkSettings",
    "run_benchmark",
    "run_case",
    "run_in_subprocess",
    "build_model",
    "make_batch",
    "module_groups",
    "ModuleGroupProbe",
    "count_flops",
    "parameter_counts",
    "low_precision_error",
    "measure_matmul_throughput",
    "measure_model_case",
    "measure_agf_case",
    "NaiveAttentionFusion",
    "naive_attention_estimate_bytes",
    "agf_memory_markdown",
    "report_markdown",
    "write_report",
    "plot_report",
    "TensorMemoryTracker",
    "training_step_tensor_memory",
]
