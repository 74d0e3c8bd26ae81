"""What a Triton repository written by this toolkit records, and what it reads: the marker in
each model folder (`--force` replaces only a folder that is exactly what the toolkit wrote) and the
SLA record of `resnet-bench --sla-p99-ms X --json` (`--sla-from`)."""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.files import parse_json, read_small_text, sha256_file

MARKER = ".resnet-deploy-toolkit.json"  # in each model folder this toolkit writes: what it wrote


def write_marker(folder: Path, name: str) -> None:
    """The record of what `resnet-deploy triton` wrote in a model folder: the model's name and
    each file with its SHA-256, so that `--force` replaces only a folder that is exactly that."""
    files = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    record = {"written_by": "resnet-deploy triton", "name": name, "files": files}
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def is_written_model(folder: Path, name: str) -> bool:
    """Whether `folder` is a model folder this toolkit wrote under that name and nobody changed
    since: its marker names it, and the folder's files are exactly the marker's, unchanged (a
    hand-written folder, or one with a file added or edited, is not replaced)."""
    marker = folder / MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        record = parse_json(read_small_text(marker, "marker", "a marker"), str(marker), "a marker")
        present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()} - {MARKER}
        files = record["files"]
        return (
            record.get("name") == name
            and present == set(files)
            and all(not (folder / f).is_symlink() and sha256_file(folder / f) == digest for f, digest in files.items())
        )
    except (OSError, ToolkitError, ValueError, KeyError, TypeError, AttributeError):
        return False


def read_sla_record(path: str | Path) -> tuple[int, int, dict | None]:
    """(preferred batch, max queue delay in microseconds, the measured file) from the "sla" record
    that `resnet-bench --sla-p99-ms X --json` writes: the chosen batch, and the budget left over at
    it; the measured file as {"sha256", "target", "record"} where the record names its checksum."""
    from toolkit.files import read_json_file

    path = Path(path)
    document = read_json_file(path, "--sla-from", "resnet-bench JSON")
    sla = document.get("sla") if isinstance(document, dict) else None
    if not isinstance(sla, dict) or "batch" not in sla:
        raise ToolkitError(
            f'{path} has no "sla" record: write it with resnet-bench MODEL --sla-p99-ms X --json {path.name}'
        )
    if sla["batch"] is None:
        raise ToolkitError(f"{path} records that no batch size met {sla.get('p99_budget_ms')} ms: nothing to configure")
    measured = sla.get("model_sha256")
    measured = {"sha256": measured, "target": str(sla.get("target")), "record": str(path)} if measured else None
    batch, delay = sla["batch"], sla.get("max_queue_delay_us")
    for key, value, low in (("batch", batch, 1), ("max_queue_delay_us", delay, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 10**9:
            raise ToolkitError(
                f'{path}: the "sla" record\'s {key} must be a whole number from {low} to 10^9, not {value!r}; '
                "write it again with resnet-bench MODEL --sla-p99-ms X --json"
            )
    return batch, delay, measured


def check_measured(path: Path, measured: dict | None) -> None:
    """An --sla-from record configures the file it measured only."""
    if measured is not None and sha256_file(path) != measured["sha256"]:
        raise ToolkitError(
            f"{measured['record']} measured {measured['target']}, not {path.name} (their checksums differ); "
            f"measure this file: resnet-bench {path.name} --sla-p99-ms X --json FILE"
        )
