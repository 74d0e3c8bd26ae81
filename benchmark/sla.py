"""The best batch for a latency budget (`resnet-bench --sla-p99-ms`), and the pictures of a profile
and of that choice.

The batch sizes given are each measured the way the harness measures (the same run, interleaved
with a `--vs` target when there is one); the choice is the first target's batch with the highest
throughput whose p99 latency fits the budget. What the served model is configured from
(`resnet-deploy triton --sla-from`): that batch as the preferred batch size, and the budget left
over at that batch (budget - p99) as the longest queue delay, so that waiting to fill a batch and
computing it stay within the budget.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.numbers import check_number
from toolkit.optional import require

from .harness import Measurement


def choose_batch(measurements: list[Measurement], label: str, budget_ms: float) -> dict:
    """The "sla" record of a run: `budget_ms`, the chosen batch (None when none fits) and a row per
    measured batch of the target `label` (batch, images_per_second, p99_ms, fits)."""
    check_number(budget_ms, "--sla-p99-ms", low=0, low_open=True, high=3.6e6)
    rows = [
        {
            "batch": m.batch,
            "images_per_second": m.images_per_second,
            "p99_ms": m.latency.p99,
            "fits": m.latency.p99 <= budget_ms,
        }
        for m in measurements
        if m.label == label
    ]
    fitting = [row for row in rows if row["fits"]]
    best = max(fitting, key=lambda row: row["images_per_second"]) if fitting else None
    return {
        "target": label,
        "p99_budget_ms": budget_ms,
        "batch": best["batch"] if best else None,
        "max_queue_delay_us": int((budget_ms - best["p99_ms"]) * 1000) if best else None,
        "rows": rows,
    }


def sla_failure(sla: dict) -> str:
    """The sentence when no measured batch size fits the budget."""
    smallest = min(sla["rows"], key=lambda row: row["batch"])
    return f"no batch size meets {sla['p99_budget_ms']:g} ms (batch {smallest['batch']} p99 is {smallest['p99_ms']:.3f} ms)"


def format_sla(sla: dict) -> str:
    lines = [f"sla: p99 budget {sla['p99_budget_ms']:g} ms for {sla['target']}", "  batch     img/s    p99 ms  fits"]
    for row in sla["rows"]:
        chosen = "  <- chosen" if row["batch"] == sla["batch"] else ""
        lines.append(
            f"  {row['batch']:>5}  {row['images_per_second']:>8.1f}  {row['p99_ms']:>8.3f}  {'yes' if row['fits'] else 'no':>4}{chosen}"
        )
    if sla["batch"] is not None:
        lines.append(
            f"  chosen      batch {sla['batch']}, max queue delay {sla['max_queue_delay_us']} us "
            f"(resnet-deploy triton MODEL --sla-from THIS.json)"
        )
    return "\n".join(lines)


def _pyplot():
    matplotlib = require("matplotlib", "--plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sla(run, path: Path) -> None:
    """Throughput and p99 per batch size, the budget line and the chosen batch."""
    from toolkit.files import atomic_path

    plt = _pyplot()
    sla = run.sla
    rows = sla["rows"]
    batches = [row["batch"] for row in rows]
    figure, left = plt.subplots(figsize=(7, 4))
    left.plot(batches, [row["images_per_second"] for row in rows], marker="o", color="tab:blue", label="images/s")
    left.set_xscale("log", base=2)
    left.set_xticks(batches, [str(b) for b in batches])
    left.set_xlabel("batch size")
    left.set_ylabel("images/s", color="tab:blue")
    right = left.twinx()
    right.plot(batches, [row["p99_ms"] for row in rows], marker="s", color="tab:orange", label="p99 ms")
    right.axhline(sla["p99_budget_ms"], color="tab:red", linestyle="--", label=f"budget {sla['p99_budget_ms']:g} ms")
    right.set_ylabel("p99 latency, ms", color="tab:orange")
    if sla["batch"] is not None:
        left.axvline(sla["batch"], color="tab:green", alpha=0.5, label=f"chosen: batch {sla['batch']}")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    left.set_title(f"{sla['target']}: the best batch for p99 <= {sla['p99_budget_ms']:g} ms", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as staged:
        figure.savefig(staged, format="png", dpi=110)
    plt.close(figure)


def plot_profile(measurement: Measurement, path: Path) -> None:
    """Horizontal bars: each stage's share, then the layers that take the most time, coloured by stage."""
    from toolkit.files import atomic_path

    from .profile import STAGES

    plt = _pyplot()
    profile = measurement.profile
    colours = dict(zip(STAGES, plt.get_cmap("tab10").colors, strict=False))
    layers = sorted(profile["layers"], key=lambda layer: -layer["ms"])[:20]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), gridspec_kw={"height_ratios": [1, 3]})
    stages = profile["stages"]
    top.barh(
        [s["name"] for s in stages][::-1],
        [s["ms"] for s in stages][::-1],
        color=[colours[s["name"]] for s in stages][::-1],
    )
    for index, stage in enumerate(stages[::-1]):
        top.text(stage["ms"], index, f" {stage['ms']:.2f} ms ({stage['share']:.0%})", va="center", fontsize=8)
    top.set_xlabel("ms per batch")
    gap = profile["measured_ms"] - profile["attributed_ms"]
    top.set_title(
        f"{measurement.label}, batch {measurement.batch}: {profile['attributed_ms']:.2f} ms in layers of "
        f"{profile['measured_ms']:.2f} ms measured (gap {gap:+.2f} ms)",
        fontsize=9,
    )
    bottom.barh(
        [layer["name"] for layer in layers][::-1],
        [layer["ms"] for layer in layers][::-1],
        color=[colours[layer["stage"]] for layer in layers][::-1],
    )
    bottom.set_xlabel("ms per batch (the 20 slowest layers)")
    bottom.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    with atomic_path(path) as staged:
        figure.savefig(staged, format="png", dpi=110)
    plt.close(figure)
