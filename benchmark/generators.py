"""Both load generators of `resnet-bench --triton` on one served model, side by side:
`python -m benchmark.generators URL MODEL [grpc|http] [ROUNDS]` alternates the builtin generator
and perf_analyzer at concurrency 1, 4 and 8, ROUNDS times (default 2), and prints each round's
img/s and their ratios (docs/benchmark.md has the figures)."""

from __future__ import annotations

import sys

from toolkit.errors import ToolkitError

from .connections import ServedTarget
from .serving import GENERATORS, LoadSettings, measure_load


def compare(url: str, model: str, protocol: str = "grpc", rounds: int = 2, concurrency=(1, 4, 8)) -> list[str]:
    """Both load generators on one served model, alternating at each concurrency, `rounds` times:
    a line per concurrency with each round's img/s and the builtin / perf_analyzer ratios."""
    served, lines = ServedTarget(url, model, protocol), []
    for c in concurrency:
        rates = {generator: [] for generator in GENERATORS}
        for _ in range(rounds):
            for generator, measured in rates.items():
                settings = LoadSettings(warmup_seconds=1.0, window_seconds=1.5, generator=generator)
                measured.append(measure_load(served, c, 1, settings).images_per_second)
        ratios = ", ".join(f"{b / p:.2f}" for b, p in zip(rates["builtin"], rates["perf_analyzer"], strict=True))
        shown = "; ".join(f"{g} {', '.join(f'{r:,.1f}' for r in values)}" for g, values in rates.items())
        lines.append(f"{model} {protocol} c{c}: {shown}; builtin / perf_analyzer {ratios}")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    rounds = args[3] if len(args) > 3 else "2"
    if not 2 <= len(args) <= 4 or (len(args) > 2 and args[2] not in ("grpc", "http")) or not rounds.isdigit():
        print("usage: python -m benchmark.generators URL MODEL [grpc|http] [ROUNDS]", file=sys.stderr)
        return 2
    try:
        compare(args[0], args[1], *args[2:3], int(rounds))
    except ToolkitError as error:
        print(f"generators: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
