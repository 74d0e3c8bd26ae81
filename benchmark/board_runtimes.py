"""The toolkit's bundle beside the other runtimes a board can run a ResNet with: ONNX Runtime on the
`.onnx` file by hand (the reference), LiteRT (`ai-edge-litert`, a `.tflite` converted with
`litert-torch`) and ExecuTorch (`executorch`, an XNNPACK `.pte`), on one model, one machine.

    python -m benchmark.board_runtimes --depth 18 --board .board/bin/python --others .others/bin/python

`--board` is a Python where the toolkit is installed as a board installs it (`pip install
'.[cpu,images]'`, no PyTorch); `--others` one with `litert-torch`, `ai-edge-litert` and `executorch`
(they need PyTorch, NumPy >= 2 and each other's pins: an environment of their own; the project's
notes give the pip line). The model is `resnet.create(depth)` with seeded weights, exported here
(`resnet-export`), bundled (`resnet-deploy bundle`: its `model.ort` for this machine) and converted
there. Measured, each runtime in a process of its own:

- latency at batch 1, with 1 and 2 threads: `--rounds` rounds, interleaved (each round runs every
  runtime `--iterations` times, in a rotating order), the median per runtime, and its ratio to the
  bare ONNX Runtime loop's, measured in the same rounds;
- cold start to the first prediction of an image (a fresh process: imports, opening the model,
  preprocessing, one run) and its peak RSS, interleaved likewise: the toolkit's `resnet-deploy
  predict BUNDLE IMAGE`, the others as bare scripts doing the same work;
- the artifact's size, and the install's (the runtime's distributions and what they require, as
  installed: `du` of their files);
- agreement with the toolkit: top-1 and the largest logit difference on 8 seeded inputs.

Results go to `--json` and a Markdown table on stdout (docs/benchmark.md keeps one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONVERT = """\
import sys, torch
sys.path.insert(0, sys.argv[1])
import resnet
model = resnet.create(int(sys.argv[2]), "imagenet")
model.load_state_dict(torch.load(sys.argv[3], weights_only=True))
model.eval()
sample = (torch.zeros(1, 3, 224, 224),)
import litert_torch
litert_torch.convert(model, sample).export(sys.argv[4])
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.exir import to_edge_transform_and_lower
program = to_edge_transform_and_lower(torch.export.export(model, sample), partitioner=[XnnpackPartitioner()])
with open(sys.argv[5], "wb") as out:
    out.write(program.to_executorch().buffer)
"""

# A worker: loads one runtime's model with THREADS threads, then answers lines on stdin:
# "time N" (N timed runs at batch 1: their milliseconds) and "logits" (for the 8 seeded inputs).
WORKER = """\
import json, sys, time
import numpy as np
kind, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
inputs = np.random.default_rng(0).standard_normal((8, 1, 3, 224, 224)).astype(np.float32)
if kind == "toolkit":
    from deploy.runtimes.onnxruntime import OrtRuntime
    runtime = OrtRuntime(path, provider="cpu", threads=threads)
    run = runtime.run
elif kind == "onnxruntime":
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = lambda x: session.run(None, {name: x})[0]
elif kind == "litert":
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    def run(x):
        interpreter.set_tensor(given, x)
        interpreter.invoke()
        return interpreter.get_tensor(taken)
else:
    import torch
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime
    portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(path).load_method("forward")
    run = lambda x: method.execute([torch.from_numpy(x)])[0].numpy()
for x in inputs[:2]:
    run(x)
print("ready", flush=True)
for line in sys.stdin:
    if line.startswith("time"):
        times = []
        for _ in range(int(line.split()[1])):
            started = time.perf_counter()
            run(inputs[0])
            times.append((time.perf_counter() - started) * 1e3)
        print(json.dumps(times), flush=True)
    elif line.startswith("logits"):
        print(json.dumps([np.asarray(run(x), dtype=np.float32).reshape(-1).tolist() for x in inputs]), flush=True)
"""

# A cold start by hand: the bare script of benchmark.cold_start, with the runtime's own lines.
COLD = """\
import sys
import numpy as np
from PIL import Image
kind, path, image_path = sys.argv[1], sys.argv[2], sys.argv[3]
{load}
image = Image.open(image_path).convert("RGB")
scale = 256 / min(image.size)
image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
left, top = (image.width - 224) // 2, (image.height - 224) // 2
image = image.crop((left, top, left + 224, top + 224))
mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
x = np.ascontiguousarray(((np.asarray(image, dtype=np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None])
print(int(np.asarray(run(x)).argmax()))
"""
COLD_LOADS = {
    "onnxruntime": """import onnxruntime as ort
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
run = lambda x: session.run(None, {session.get_inputs()[0].name: x})[0]""",
    "litert": """from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=path)
interpreter.allocate_tensors()
def run(x):
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])""",
    "executorch": """import torch
from executorch.runtime import Runtime
method = Runtime.get().load_program(path).load_method("forward")
run = lambda x: method.execute([torch.from_numpy(x)])[0].numpy()""",
}

# The install a runtime needs: its distributions and what they require (extras left out), as installed.
INSTALL = """\
import importlib.metadata as md, json, re, sys
seen, todo, size = set(), list(sys.argv[1:]), 0
while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in seen:
        continue
    seen.add(name)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    for file in dist.files or []:
        try:
            size += file.locate().stat().st_size
        except OSError:
            pass
    for requirement in dist.requires or []:
        spec, _, marker = requirement.partition(";")
        if "extra" not in marker:
            todo.append(re.split(r"[<>=!~\\[ (]", spec.strip(), maxsplit=1)[0])
print(json.dumps({"bytes": size, "distributions": sorted(seen)}))
"""
INSTALLS = {
    "toolkit": ["resnet-deploy-toolkit", "onnxruntime", "pillow"],
    "onnxruntime": ["onnxruntime", "numpy", "pillow"],
    "litert": ["ai-edge-litert", "numpy", "pillow"],
    "executorch": ["executorch", "torch", "numpy", "pillow"],  # its Python runtime imports torch
}
RUNTIMES = ("toolkit", "onnxruntime", "litert", "executorch")


def prepare(depth: int, folder: Path, others: str) -> dict[str, Path]:
    """The model exported, bundled and converted: {runtime: its file} (and the bundle, the image)."""
    import numpy as np
    import torch
    from PIL import Image

    import resnet
    from deploy.bundle import write_bundle
    from export import export_onnx

    torch.manual_seed(0)
    model = resnet.create(depth, "imagenet").eval()
    with torch.no_grad():  # running statistics that are not the identity: logits of some size
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), folder / "weights.pt")
    export_onnx(model, folder / "model.onnx", validate=False)
    bundle = write_bundle(folder / "model.onnx", folder / "bundle", force=True).folder
    image = folder / "image.png"
    pixels = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    files = {"toolkit": bundle / "model.ort", "onnxruntime": folder / "model.onnx"}
    files |= {"litert": folder / "model.tflite", "executorch": folder / "model.pte"}
    done = subprocess.run([others, "-c", CONVERT, str(ROOT), str(depth), str(folder / "weights.pt"),
                           str(files["litert"]), str(files["executorch"])], capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"board_runtimes: converting in {others} failed: {done.stderr.strip()[-600:]}")
    return {**files, "bundle": bundle, "image": image}


class Worker:
    """One runtime's process, answering `time N` and `logits` (see WORKER)."""

    def __init__(self, python: str, kind: str, path: Path, threads: int) -> None:
        environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.process = subprocess.Popen([python, "-c", WORKER, kind, str(path), str(threads)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)  # fmt: skip
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit(f"board_runtimes: the {kind} worker did not start: {self.process.stderr.read()[-600:]}")

    def ask(self, line: str):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def latencies(pythons: dict, files: dict, threads: int, rounds: int, iterations: int) -> tuple[dict, dict]:
    """Milliseconds per run of each runtime (interleaved rounds), and each one's logits."""
    workers = {kind: Worker(pythons[kind], kind, files[kind], threads) for kind in RUNTIMES}
    times: dict[str, list[float]] = {kind: [] for kind in RUNTIMES}
    try:
        for index in range(rounds):
            order = RUNTIMES[index % len(RUNTIMES) :] + RUNTIMES[: index % len(RUNTIMES)]
            for kind in order:
                times[kind] += workers[kind].ask(f"time {iterations}")
        logits = {kind: workers[kind].ask("logits") for kind in RUNTIMES}
    finally:
        for worker in workers.values():
            worker.close()
    return times, logits


def cold_starts(pythons: dict, files: dict, rounds: int) -> dict[str, list[tuple[float, float]]]:
    from .cold_start import _timed

    board_bin = Path(pythons["toolkit"]).parent
    commands = {
        "toolkit": [str(board_bin / "resnet-deploy"), "predict", str(files["bundle"]), str(files["image"]), "--top-k", "1"],
        **{kind: [pythons[kind], "-c", COLD.format(load=COLD_LOADS[kind]), kind, str(files[kind]), str(files["image"])]
           for kind in COLD_LOADS},
    }  # fmt: skip
    runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in RUNTIMES}
    for index in range(rounds + 1):  # the first round warms the disk cache and is dropped
        order = RUNTIMES[index % len(RUNTIMES) :] + RUNTIMES[: index % len(RUNTIMES)]
        for kind in order:
            seconds, rss, _ = _timed(commands[kind])
            if index:
                runs[kind].append((seconds, rss))
    return runs


def install_bytes(python: str, roots: list[str]) -> int:
    done = subprocess.run([python, "-c", INSTALL, *roots], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["bytes"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=18, choices=(18, 34, 50))
    parser.add_argument("--board", required=True, help="a Python with the toolkit's board install (no PyTorch)")
    parser.add_argument("--others", required=True, help="a Python with litert-torch, ai-edge-litert, executorch")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--cold-rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    pythons = {"toolkit": args.board, "onnxruntime": args.board, "litert": args.others, "executorch": args.others}
    with tempfile.TemporaryDirectory(prefix="board-runtimes-") as temporary:
        # In a process of its own: this one stays small, for a child's peak RSS is never less than
        # its parent's at the fork (Linux counts the RSS a child shares until it executes).
        preparing = (
            "import json, pathlib; from benchmark.board_runtimes import prepare; "
            f"files = prepare({args.depth}, pathlib.Path({temporary!r}), {args.others!r}); "
            "print(json.dumps({kind: str(path) for kind, path in files.items()}))"
        )
        done = subprocess.run([sys.executable, "-c", preparing], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"board_runtimes: preparing the model failed: {done.stderr.strip()[-600:]}")
        files = {kind: Path(path) for kind, path in json.loads(done.stdout.strip().splitlines()[-1]).items()}
        report = {"model": f"resnet{args.depth}", "machine": _machine(), "rounds": args.rounds, "latency": {}}
        for threads in map(int, args.threads.split(",")):
            times, logits = latencies(pythons, files, threads, args.rounds, args.iterations)
            report["latency"][threads] = {kind: statistics.median(values) for kind, values in times.items()}
        cold = cold_starts(pythons, files, args.cold_rounds)
        report["cold_start_s"] = {kind: statistics.median(s for s, _ in runs) for kind, runs in cold.items()}
        report["peak_rss_mb"] = {kind: statistics.median(m for _, m in runs) for kind, runs in cold.items()}
        report["artifact_mb"] = {kind: files[kind].stat().st_size / 1e6 for kind in RUNTIMES}
        report["install_mb"] = {kind: install_bytes(pythons[kind], INSTALLS[kind]) / 1e6 for kind in RUNTIMES}
        reference = logits["toolkit"]
        report["agreement"] = {kind: _agreement(reference, logits[kind]) for kind in RUNTIMES}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(_markdown(report))
    return 0


def _agreement(reference: list, other: list) -> dict:
    import numpy as np

    a, b = np.asarray(reference), np.asarray(other)
    return {"top1": float((a.argmax(axis=1) == b.argmax(axis=1)).mean()),
            "max_relative": float(np.abs(a - b).max() / np.abs(a).max())}  # fmt: skip


def _machine() -> str:
    from deploy.runtimes.cpu import CpuFeatures, cpu_model

    flags = ", ".join(CpuFeatures.probe().flags) or "no relevant flags"
    return f"{cpu_model()} ({flags}), {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def _markdown(report: dict) -> str:
    names = {"toolkit": "toolkit bundle (model.ort)", "onnxruntime": "ONNX Runtime, bare (.onnx)",
             "litert": "LiteRT (.tflite)", "executorch": "ExecuTorch XNNPACK (.pte)"}  # fmt: skip
    threads = list(report["latency"])
    head = ["runtime", *[f"{t} thread{'s' * (t != 1)}: ms (x bare)" for t in threads], "cold start: s (x bare)",
            "peak RSS MB", "artifact MB", "install MB", "top-1 / max rel. diff vs toolkit"]  # fmt: skip
    rows = []
    for kind in RUNTIMES:
        cells = [names[kind]]
        for t in threads:
            ms, bare = report["latency"][t][kind], report["latency"][t]["onnxruntime"]
            cells.append(f"{ms:.1f} ({ms / bare:.2f}x)")
        cold, bare = report["cold_start_s"][kind], report["cold_start_s"]["onnxruntime"]
        agreement = report["agreement"][kind]
        cells += [f"{cold:.2f} ({cold / bare:.2f}x)", f"{report['peak_rss_mb'][kind]:.0f}",
                  f"{report['artifact_mb'][kind]:.1f}", f"{report['install_mb'][kind]:.0f}",
                  f"{agreement['top1']:.0%} / {agreement['max_relative']:.1e}"]  # fmt: skip
        rows.append(cells)
    lines = [f"{report['model']} on {report['machine']}, batch 1, medians of {report['rounds']} interleaved rounds", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
