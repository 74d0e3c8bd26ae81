"""The toolkit on an ARM board, emulated (tools/board-aarch64: Debian 12 arm64 under QEMU's user
mode, a Cortex-A76 as in a Raspberry Pi 5 and a Cortex-A72 as in a Pi 4): a digits INT8 bundle
written here with its aarch64 wheelhouse (`resnet-deploy bundle --wheels aarch64`) installs on the
board by pip with no network, as its README says; the board's answers are this machine's (the same
top-1, INT8 logits within one output step, FP32 within 1e-4 relative, the
two ARM CPUs bit-identical to each other); `resnet-eval` names ARM's INT8 kernels and no x86 words;
`resnet-bench` runs and names the CPU; PyTorch is never imported. Correctness on ARM, never speed:
emulation is 55-280x slower than a board. Under CI a skip here fails the run (tests/ci_extras.py)."""

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from ci_extras import BOARD as SKIPPED  # under CI, a skip with these words fails the run
from onnx import numpy_helper

from deploy import Predictor

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "tests" / "data" / "digits" / "heldout"
IMAGES = sorted(HELDOUT.glob("*/*.png"))
SOME = IMAGES[::5]  # 100 scans, ten of each class
FEW = IMAGES[::100]  # five scans, for FP32 (FP32 is emulated in software: the slow path)

PROBE = """
import hashlib, json, platform, sys
from pathlib import Path
import numpy as np
from deploy import OrtRuntime, Predictor
with Predictor(sys.argv[1]) as predictor:
    batch = np.stack([predictor.preprocess(image) for image in sys.argv[2:]])
    logits = np.asarray(predictor.runtime.run(batch), dtype=np.float32)
    ran = predictor.runtime.path.name
onnx = OrtRuntime(Path(sys.argv[1]) / "model.onnx", provider="cpu")
print(json.dumps({"logits": logits.tolist(), "inputs": hashlib.sha256(batch.tobytes()).hexdigest(), "ran": ran,
                  "onnx_same": bool(np.array_equal(np.asarray(onnx.run(batch), dtype=np.float32), logits)),
                  "machine": platform.machine(), "torch": "torch" in sys.modules}))
"""


def _tool():
    spec = importlib.util.spec_from_file_location("board_aarch64", ROOT / "tools" / "board_aarch64.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(name: str, *arguments) -> subprocess.CompletedProcess:
    launch = f"from toolkit.launch import launch; launch({name!r})"
    command = [sys.executable, "-c", launch, *map(str, arguments)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)


@pytest.fixture(scope="module")
def arm(tmp_path_factory, digits_files):
    """The boards (A76, A72) with the toolkit installed from the INT8 bundle's wheelhouse, and the
    bundles: INT8 (the cpu form, with wheels: a Pi's bundle) and FP32 (the model alone)."""
    tool = _tool()
    folder = tmp_path_factory.mktemp("arm")
    try:
        boards = {cpu: tool.Board(cpu) for cpu in tool.CPUS}
    except tool.BoardError as error:
        pytest.skip(f"{SKIPPED}: {error}")
    int8, fp32 = folder / "int8-bundle", folder / "fp32-bundle"
    written = _cli(
        "resnet-deploy", "bundle", digits_files["cpu"], "-o", int8, "--wheels", "aarch64", "--python", "3.11"
    )
    assert written.returncode == 0, written.stderr
    assert _cli("resnet-deploy", "bundle", digits_files["fp32"], "-o", fp32).returncode == 0
    site = boards["cortex-a76"].install(int8, site=folder / "site")  # pip on the board, no network
    for board in boards.values():
        board.site = site
    return {"tool": tool, "boards": boards, "int8": int8, "fp32": fp32, "site": site, "bundle_output": written.stdout}


def probe(board, bundle: Path, images: list[Path]) -> dict:
    done = board.run(["python", "-c", PROBE, str(bundle), *map(str, images)])
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def here(bundle: Path, images: list[Path]) -> tuple[np.ndarray, str]:
    with Predictor(bundle) as predictor:
        batch = np.stack([predictor.preprocess(image) for image in images])
        logits = np.asarray(predictor.runtime.run(batch), dtype=np.float32)
    return logits, hashlib.sha256(batch.tobytes()).hexdigest()


def output_step(model: Path) -> float:
    """The INT8 model's output quantisation step: the scale of the DequantizeLinear that gives the logits."""
    graph = onnx.load(str(model)).graph
    last = next(node for node in graph.node if graph.output[0].name in node.output)
    assert last.op_type == "DequantizeLinear", last.op_type
    scale = next(init for init in graph.initializer if init.name == last.input[1])
    return float(numpy_helper.to_array(scale))


def test_the_wheelhouse_installs_with_no_network_and_without_pytorch(arm):
    listed = {path.name.split("-")[0].lower() for path in arm["site"].glob("*.dist-info")}
    assert {"resnet_deploy_toolkit", "onnxruntime", "numpy", "pillow"} <= listed and "torch" not in listed
    assert "pip install --no-index --find-links wheels --require-hashes" in arm["bundle_output"]
    readme = (arm["int8"] / "README.md").read_text()
    assert "--no-index" in readme and "TensorRT" not in readme and "resnet-build" not in readme
    network = arm["boards"]["cortex-a76"].command(["python", "-c", "pass"])
    if arm["tool"]._can_unshare():  # pip ran in a network namespace of its own: no route anywhere
        assert network[:2] == ["unshare", "-n"]
    else:
        pytest.skip("unshare -n is not allowed here: pip ran with --no-index only")


def test_int8_answers_are_x86s(arm):
    expected, inputs = here(arm["int8"], SOME)
    step = output_step(arm["int8"] / "model.onnx")
    answers = {cpu: probe(board, arm["int8"], SOME) for cpu, board in arm["boards"].items()}
    for cpu, answer in answers.items():
        assert answer["machine"] == "aarch64" and answer["torch"] is False, cpu
        assert answer["inputs"] == inputs, f"{cpu}: preprocessing differs from x86's"
        logits = np.asarray(answer["logits"], dtype=np.float32)
        assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all(), cpu
        assert np.abs(logits - expected).max() <= step * 1.0001, f"{cpu}: more than one output step ({step}) off"
    assert answers["cortex-a76"]["logits"] == answers["cortex-a72"]["logits"], "the ARM CPUs disagree"
    for cpu, answer in answers.items():  # the bundle's model.ort, written for aarch64 here: what ran there
        assert answer["ran"] == "model.ort" and answer["onnx_same"], (
            f"{cpu}: {answer['ran']}, onnx_same {answer['onnx_same']}"
        )


def test_fp32_answers_are_x86s(arm):
    expected, inputs = here(arm["fp32"], FEW)
    answer = probe(arm["boards"]["cortex-a76"], arm["fp32"], FEW)
    assert answer["inputs"] == inputs and answer["torch"] is False
    assert answer["ran"] == "model.onnx"  # its model.ort is x86-64's (written here without --wheels)
    logits = np.asarray(answer["logits"], dtype=np.float32)
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("cpu, kernels", [("cortex-a76", "ARM dot product (asimddp)"), ("cortex-a72", "ARM NEON")])
def test_eval_on_the_board_names_arms_int8_kernels(arm, cpu, kernels):
    done = arm["boards"][cpu].run(["resnet-eval", str(arm["int8"]), str(HELDOUT), "--json", "-"])
    assert done.returncode == 0, done.stderr[-2000:]
    board = json.loads(done.stdout)
    x86 = _cli("resnet-eval", arm["int8"], HELDOUT, "--json", "-")
    assert x86.returncode == 0, x86.stderr
    assert board["images"] == 500 and board["top1"] == json.loads(x86.stdout)["top1"]
    assert board["int8_path"].startswith(kernels), board["int8_path"]
    for word in ("VNNI", "avx", "int16", "saturat"):
        assert word.lower() not in board["int8_path"].lower()


def test_bench_on_the_board_names_the_cpu_and_never_imports_pytorch(arm):
    """resnet-bench as its console script runs it, with a line at exit saying whether torch was imported."""
    told = (
        "import atexit, sys; atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))"
    )
    bench = f"{told}; from toolkit.launch import launch; launch('resnet-bench')"
    arguments = [arm["int8"] / "model.onnx", "--iterations", "3", "--warmup", "1", "--no-peak", "--json", "-"]
    done = arm["boards"]["cortex-a76"].run(["python", "-c", bench, *map(str, arguments)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch imported: False" in done.stderr
    machine = json.dumps(json.loads(done.stdout))
    assert "Cortex-A76" in machine and "asimddp" in machine, machine[:2000]
