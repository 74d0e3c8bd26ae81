"""A board's cold start: `resnet-deploy predict MODEL IMAGE` against a bare script that does the same
work by hand, each a fresh process, alternating, so that the toolkit's own cost is a ratio.

    python -m benchmark.cold_start tour/bundle tests/data/digits/heldout/3/0062.png
    python -m benchmark.cold_start rn50-bundle cat.png --runs 10 --command .board/bin/resnet-deploy

The bare script (`BARE`, written here on purpose, apart from `deploy`: a reference must not share
the code it checks) imports onnxruntime, NumPy and Pillow, creates the session, preprocesses the
image with the model's recipe (the sizes, mean and std are read from the file before the timed
runs and given to it) and runs it once. Each run's wall time (process start to exit) and peak RSS
(the child's `ru_maxrss`) are measured; the medians and their ratios are printed, with the
toolkit's own split of its first prediction (`predict --json`: import, open, first run). A bundle
for this machine runs its `model.ort` (ONNX Runtime's own format), the bare script the `.onnx`.
The targets (docs/deploy.md): no slower than the bare script, in less memory. Exit status 1 when a
target is missed. Measure the board's install (`--command BOARD_VENV/bin/resnet-deploy --python
BOARD_VENV/bin/python`, a `pip install '.[cpu,images]'`): an editable install's import hook costs
~20 ms more at every start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = """\
import sys
import numpy as np
import onnxruntime as ort
from PIL import Image

path, image_path, height, width, resize = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
mean, std = (np.array([float(v) for v in text.split(",")], np.float32) for text in sys.argv[6:8])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
image = Image.open(image_path).convert("RGB")
if resize:
    scale = resize / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    image = image.crop((left, top, left + width, top + height))
else:
    image = image.resize((width, height), Image.BILINEAR)
x = ((np.asarray(image, dtype=np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None]
print(int(session.run(None, {session.get_inputs()[0].name: x})[0].argmax()))
"""
TARGET_TIME, TARGET_RSS = 1.0, 1.0  # at most the bare script's time; less than its peak RSS


def _timed(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cold_start: {' '.join(command)} failed: {err.strip()[-300:]}")
    return seconds, usage.ru_maxrss / 1024, out


def _onnx_file(model: Path) -> Path:
    return model / "model.onnx" if model.is_dir() else model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a bundle folder or an ONNX file")
    parser.add_argument("image", type=Path)
    parser.add_argument("--runs", type=int, default=7, help="runs of each, alternating")
    beside = Path(sys.executable).parent / "resnet-deploy"  # this environment's, activated or not
    parser.add_argument("--command", default=str(beside) if beside.is_file() else shutil.which("resnet-deploy"))
    parser.add_argument("--python", default=sys.executable, help="the Python that runs the bare script")
    args = parser.parse_args(argv)

    from deploy.artifacts import read_onnx_info

    spec = read_onnx_info(_onnx_file(args.model)).input_spec
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "bare.py"
        script.write_text(BARE)
        bare = [args.python, str(script), str(_onnx_file(args.model)), str(args.image), str(spec.height)]
        bare += [str(spec.width), str(spec.resize or 0), ",".join(map(str, spec.mean)), ",".join(map(str, spec.std))]
        ours = [args.command, "predict", str(args.model), str(args.image), "--top-k", "1", "--json"]
        runs: dict[str, list[tuple[float, float]]] = {"bare": [], "toolkit": []}
        splits = []
        for index in range(args.runs + 1):  # the first round warms the disk cache and is dropped
            order = (("bare", bare), ("toolkit", ours)) if index % 2 else (("toolkit", ours), ("bare", bare))
            for name, command in order:
                seconds, rss, out = _timed(command)
                if index:
                    runs[name].append((seconds, rss))
                    if name == "toolkit":
                        splits.append(json.loads(out)["cold_start"])
    median = {
        name: (statistics.median(s for s, _ in r), statistics.median(m for _, m in r)) for name, r in runs.items()
    }
    (bare_s, bare_mb), (ours_s, ours_mb) = median["bare"], median["toolkit"]
    split = {key: statistics.median(s[key] for s in splits) for key in splits[0]}
    print(f"{args.model} with {args.image.name}, {args.runs} runs each, alternating (medians)")
    print(f"  bare script   {bare_s:.3f} s, peak RSS {bare_mb:.0f} MB")
    print(
        f"  predict       {ours_s:.3f} s, peak RSS {ours_mb:.0f} MB   ("
        + ", ".join(f"{k} {v:.3f} s" for k, v in split.items())
        + ")"
    )
    time_ratio, rss_ratio = ours_s / bare_s, ours_mb / bare_mb
    targets = f"targets: time <= {TARGET_TIME}x, RSS < {TARGET_RSS}x"
    print(f"  ratio         time {time_ratio:.2f}x, peak RSS {rss_ratio:.2f}x ({targets})")
    return 0 if time_ratio <= TARGET_TIME and rss_ratio < TARGET_RSS else 1


if __name__ == "__main__":
    sys.exit(main())
