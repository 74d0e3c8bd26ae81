"""The best batch for a latency budget (`resnet-bench --sla-p99-ms`), as a `SlaChoice`, and its picture.

The batch sizes given are each measured the way the harness measures (the same run, interleaved
with a `--vs` target when there is one); the choice is the first target's batch with the highest
throughput whose p99 latency fits the budget. What the served model is configured from
(`resnet-deploy triton --sla-from`): that batch as the preferred batch size, and the budget left
over at that batch (budget - p99) as the longest queue delay, so that waiting to fill a batch and
computing it stay within the budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from toolkit.numbers import check_number

from .harness import Measurement


@dataclass
class SlaRow:
    """One measured batch size against the budget."""

    batch: int
    images_per_second: float
    p99_ms: float
    fits: bool


@dataclass
class SlaChoice:
    """The best batch of `target` for a p99 budget: the batch (None when none fits), the queue delay
    left over at it, and every measured batch size."""

    target: str
    p99_budget_ms: float
    batch: int | None
    max_queue_delay_us: int | None
    rows: list[SlaRow]
    model_sha256: str | None = None  # the measured file's: `--sla-from` configures that file only

    def to_dict(self) -> dict:
        return asdict(self)

    def failure(self) -> str:
        """The sentence when no measured batch size fits the budget."""
        smallest = min(self.rows, key=lambda row: row.batch)
        return f"no batch size meets {self.p99_budget_ms:g} ms (batch {smallest.batch} p99 is {smallest.p99_ms:.3f} ms)"


def choose_batch(measurements: list[Measurement], label: str, budget_ms: float) -> SlaChoice:
    """The `SlaChoice` of the target `label` among `measurements` for a p99 of `budget_ms`."""
    check_number(budget_ms, "--sla-p99-ms", low_open=True, limit="milliseconds")
    rows = [
        SlaRow(m.batch, m.images_per_second, m.latency.p99, m.latency.p99 <= budget_ms)
        for m in measurements
        if m.label == label
    ]
    fitting = [row for row in rows if row.fits]
    best = max(fitting, key=lambda row: row.images_per_second) if fitting else None
    return SlaChoice(
        target=label,
        p99_budget_ms=budget_ms,
        batch=best.batch if best else None,
        max_queue_delay_us=int((budget_ms - best.p99_ms) * 1000) if best else None,
        rows=rows,
    )


def format_sla(sla: SlaChoice) -> str:
    lines = [f"sla: p99 budget {sla.p99_budget_ms:g} ms for {sla.target}", "  batch     img/s    p99 ms  fits"]
    for row in sla.rows:
        chosen = "  <- chosen" if row.batch == sla.batch else ""
        lines.append(
            f"  {row.batch:>5}  {row.images_per_second:>8.1f}  {row.p99_ms:>8.3f}  {'yes' if row.fits else 'no':>4}{chosen}"
        )
    if sla.batch is not None:
        lines.append(
            f"  chosen      batch {sla.batch}, max queue delay {sla.max_queue_delay_us} us "
            f"(resnet-deploy triton MODEL --sla-from THIS.json)"
        )
    return "\n".join(lines)


def plot_sla(sla: SlaChoice, path: Path) -> None:
    """Throughput and p99 per batch size, the budget line and the chosen batch."""
    from toolkit.files import atomic_path

    from .pyplot import pyplot

    plt = pyplot()
    batches = [row.batch for row in sla.rows]
    figure, left = plt.subplots(figsize=(7, 4))
    left.plot(batches, [row.images_per_second for row in sla.rows], marker="o", color="tab:blue", label="images/s")
    left.set_xscale("log", base=2)
    left.set_xticks(batches, [str(b) for b in batches])
    left.set_xlabel("batch size")
    left.set_ylabel("images/s", color="tab:blue")
    right = left.twinx()
    right.plot(batches, [row.p99_ms for row in sla.rows], marker="s", color="tab:orange", label="p99 ms")
    right.axhline(sla.p99_budget_ms, color="tab:red", linestyle="--", label=f"budget {sla.p99_budget_ms:g} ms")
    right.set_ylabel("p99 latency, ms", color="tab:orange")
    if sla.batch is not None:
        left.axvline(sla.batch, color="tab:green", alpha=0.5, label=f"chosen: batch {sla.batch}")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    left.set_title(f"{sla.target}: the best batch for p99 <= {sla.p99_budget_ms:g} ms", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as staged:
        figure.savefig(staged, format="png", dpi=110)
    plt.close(figure)
