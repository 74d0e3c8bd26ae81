"""`python -m resnet`: build every registered model and print its size and cost."""

from __future__ import annotations

import time

from .registry import create, registered_models
from .summary import summarize


def main() -> None:
    header = f"{'model':<18} {'depth':>5} {'shortcut':>8} {'parameters':>12} {'GMACs':>8} {'input':>16} {'output':>10} {'build s':>8}"
    print(header)
    print("-" * len(header))
    for depth, dataset in registered_models():
        start = time.perf_counter()
        model = create(depth, dataset)
        summary = summarize(model)
        elapsed = time.perf_counter() - start
        print(
            f"{summary.name:<18} {summary.depth:>5} {summary.shortcut:>8} {summary.parameters:>12,} "
            f"{summary.macs / 1e9:>8.3f} {'x'.join(map(str, summary.input_shape)):>16} "
            f"{'x'.join(map(str, summary.output_shape)):>10} {elapsed:>8.2f}"
        )


if __name__ == "__main__":
    main()
