"""Plots of a report (matplotlib, Agg): AGF peak memory vs input size, and forward time by module."""

from pathlib import Path

from .settings import AGF_IMPLEMENTATIONS, AGF_PASSES, MODULE_GROUPS

PLOT_NAMES = ("memory", "time_split")


def plot_paths(prefix: Path) -> dict:
    """Plot name -> the file :func:`plot_report` writes for it: ``{prefix}_{name}.png``."""
    prefix = Path(prefix)
    return {name: prefix.parent / f"{prefix.name}_{name}.png" for name in PLOT_NAMES}


def plot_report(report: dict, prefix: Path, overwrite: bool = False) -> list:
    """Plots ``{prefix}_memory.png`` (AGF peak memory in MiB vs input size in px, every measured case) and
    ``{prefix}_time_split.png`` (forward time by module per variant), where the report has the data. Returns the
    written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = plot_paths(prefix)
    paths = []

    def save(figure, name):
        path = targets[name]
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)

    device = report["machine"]["device_name"]
    measured = [r for r in report["agf_memory"] if "peak_increase_bytes" in r]  # not skipped, no error
    if measured:
        figure, axis = plt.subplots(figsize=(6, 4))
        for implementation in AGF_IMPLEMENTATIONS:
            for pass_name in AGF_PASSES:
                points = [r for r in measured if r["implementation"] == implementation and r["pass"] == pass_name]
                if points:
                    axis.plot(
                        [r["size"] for r in points],
                        [r["peak_increase_bytes"] / 2**20 for r in points],
                        marker="o",
                        label=f"{implementation}, {pass_name}",
                    )
        # Logarithmic above 1 MiB, linear below: tiny cases whose increase rounds to 0 still show.
        axis.set_yscale("symlog", linthresh=1.0)
        axis.set(
            xlabel="input size (px, square)",
            ylabel="peak memory increase (MiB)",
            title=f"AGF at stride 4: SDPA vs naive attention\n{device}",
        )
        axis.legend()
        axis.grid(alpha=0.3)
        save(figure, "memory")
    rows = [r for r in report["models"] if "time_split_s" in r.get("inference", {})]
    if rows:
        groups = MODULE_GROUPS + ("other",)
        figure, axis = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.8))
        left = [0.0] * len(rows)
        splits = [r["inference"].get("time_split_cpu_s") or r["inference"]["time_split_s"] for r in rows]
        for group in groups:
            shares = [100 * split[group] / split["total"] for split in splits]
            axis.barh([r["variant"] for r in rows], shares, left=left, label=group)
            left = [a + b for a, b in zip(left, shares)]
        s = report["settings"]
        clock = "CPU time" if all("time_split_cpu_s" in r["inference"] for r in rows) else "wall time"
        axis.set(
            xlabel=f"share of the forward time (%, {clock})",
            xlim=(0, 100),
            title=f"Forward time by module: {s['preset']} {s['task']} {s['size']}px batch {s['batch']} "
            f"{s['dtype']}\n{device}",
        )
        axis.invert_yaxis()
        axis.legend(ncol=len(groups), loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize="small")
        save(figure, "time_split")
    return paths
