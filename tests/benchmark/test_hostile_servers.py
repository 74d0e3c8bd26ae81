"""`resnet-bench --triton` and `--ray` against a hostile or broken server on loopback (issue 35,
items 4 and 5): a server of the test's own whose answers lie (an empty answer, a negative batch,
NaN logits), never end (an endless body, a byte every second), or describe a model no client
could load (a shape of 112 GiB, a negative dimension). Each is a failed request counted with its
reason, or one sentence and exit 2; none is a figure, a traceback or an unbounded wait."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main as bench_main
from benchmark.connections import HttpConnection

METADATA = {
    "name": "m",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 8, 8]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
}


def answer(body: bytes | dict, status: int = 200, headers: dict | None = None) -> bytes:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(data)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def logits_answer(rows: int, values: np.ndarray | None = None, parameters: dict | None = None) -> bytes:
    """A binary-extension answer of `rows` x 10 logits (zeros unless `values`)."""
    data = (values if values is not None else np.zeros((rows, 10), np.float32)).astype("<f4").tobytes()
    output = {"name": "logits", "datatype": "FP32", "shape": [rows, 10], "parameters": {"binary_data_size": len(data)}}
    head = json.dumps({"outputs": [output], "parameters": parameters or {"batch_size": rows}}).encode()
    return answer(head + data, headers={"Inference-Header-Content-Length": len(head)})


class HostileServer:
    """HTTP/1.1 on a free loopback port; `routes[(method, path suffix)]` gives what to answer to a
    request (bytes, or a callable that gets the socket and writes what it likes); the others get
    a well-formed answer of a small model. Counts the requests it read."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.routes: dict = {}
        self.requests = 0
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.stopped:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(connection,), daemon=True).start()

    def _connection(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                method, path = line.split()[:2]
                headers = {}
                while (header := reader.readline()) not in (b"\r\n", b""):
                    key, _, value = header.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", 0)))
                self.requests += 1
                split = int(headers.get("inference-header-content-length", len(body)))
                reply = self._reply(method.decode(), path.decode(), body[:split])
                if callable(reply):
                    reply(connection)
                    return
                connection.sendall(reply)
        except OSError:
            return
        finally:
            connection.close()

    def _reply(self, method: str, path: str, body: bytes):
        for (wanted, suffix), reply in self.routes.items():
            if method == wanted and path.endswith(suffix):
                return reply
        if path.endswith("/config"):
            return answer({"max_batch_size": 8})
        if path.endswith("/stats"):
            counts = {"success": {"count": self.requests, "ns": 1000 * self.requests}}
            stats = {"inference_stats": counts, "inference_count": self.requests, "execution_count": self.requests}
            return answer({"model_stats": [stats]})
        if path.endswith("/infer"):
            rows = json.loads(body)["inputs"][0]["shape"][0]
            return logits_answer(rows)
        return answer(METADATA)

    def close(self) -> None:
        self.stopped = True
        self.listener.close()


@pytest.fixture
def hostile():
    server = HostileServer()
    yield server
    server.close()


def bench(server: HostileServer, *extra: str, kind: str = "--ray"):
    url = f"http://{server.url}"
    args = [kind, url, "--model", "m", "--duration", "0.6", "--warmup", "0.1s", "--load-generator", "builtin"]
    return CliRunner().invoke(bench_main, args + list(extra))


def test_a_well_formed_server_is_measured(hostile):
    """The control: the same server answering well gives figures and no failure."""
    for kind in ("--ray", "--triton"):
        result = bench(hostile, "--json", "-", kind=kind)
        assert result.exit_code == 0, result.output
        (measured,) = json.loads(result.output)["measurements"]
        assert measured["extra"]["failed"] == 0 and measured["images_per_second"] > 0


@pytest.mark.parametrize(
    "reply, said",
    [
        (answer({}), "the answer holds no output"),
        (logits_answer(1, parameters={"batch_size": -7}), "batch_size -7 is not a batch size"),
        (logits_answer(1, parameters={"batch_size": "many"}), 'batch_size "many" is not a batch size'),
        (logits_answer(1, values=np.full((1, 10), np.nan)), "holds NaN or infinite values"),
        (logits_answer(2), "has shape [2, 10]; [1, 10] was asked"),
        (
            answer({"outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 10], "data": [1.0]}]}),
            "holds 1 values",
        ),
    ],
)
def test_an_answer_that_is_not_the_models_output_is_a_failed_request(reply, said, hostile):
    """Before: `200 {}` gave "8,630 img/s ... none failed", batch_size -7 "-764 executions", NaN
    logits counted, batch_size "many" a traceback. Now every such answer is a failed request, and a
    run in which none succeeded is one sentence that says why."""
    hostile.routes[("POST", "/infer")] = reply
    result = bench(hostile)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "succeeded" in lines[0] and said in lines[0], lines[0]


def _endless(chunked: bool):
    def reply(connection: socket.socket) -> None:
        head = "Transfer-Encoding: chunked" if chunked else "Content-Length: -1"
        connection.sendall(f"HTTP/1.1 200 OK\r\n{head}\r\n\r\n".encode())
        block = (b"100000\r\n" + b"x" * 0x100000 + b"\r\n") if chunked else b"x" * 0x100000
        try:
            for _ in range(200):  # 200 MB, past the bound
                connection.sendall(block)
        except OSError:
            pass

    return reply


def _drip(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    try:
        for _ in range(30):
            time.sleep(1)
            connection.sendall(b"x")
    except OSError:
        pass


def _no_length(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + json.dumps(METADATA).encode())


@pytest.mark.parametrize(
    "reply, said, within",
    [
        (
            answer(b"", headers={"Content-Length": "-1"}).replace(b"Content-Length: 0\r\n", b""),
            "Content-Length '-1' is not a size",
            5,
        ),
        (_endless(chunked=False), "is not a size", 5),
        (_endless(chunked=True), "over 64 MB", 20),
        (_drip, "no whole answer within 5 s", 15),
    ],
)
def test_metadata_that_never_ends_is_bounded(reply, said, within, hostile):
    """An endless body (Content-Length -1, or chunks without end) grew the client to 6.4 and 3.2 GB;
    a byte every second kept it waiting for ever (its timeout was per read). Now the answer is
    bounded in size and the exchange in time: one sentence, exit 2, within seconds."""
    hostile.routes[("GET", "/m")] = reply
    started = time.monotonic()
    result = bench(hostile)
    assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output, result.output
    assert time.monotonic() - started < within


def test_an_answer_without_length_is_read_to_its_end(hostile):
    """Neither Content-Length nor chunks: the body ends with the connection (it was read as empty)."""
    hostile.routes[("GET", "/m")] = _no_length
    result = bench(hostile, "--json", "-")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "inputs, config, said",
    [
        ([-1, 3, 100000, 100000], 8, "GiB of memory"),
        ([-1, 3, -5, 8], 8, "describes its input as"),
        ([3, -1, 8], 0, "a dimension of any size (-1) besides the batch axis"),
    ],
)
def test_a_model_no_client_could_load_is_one_sentence(inputs, config, said, hostile):
    """A declared shape of 112 GiB was allocated (a traceback), a negative dimension and a
    non-batching model with a -1 dimension were tracebacks: now each is one sentence, exit 2."""
    metadata = dict(METADATA, inputs=[{"name": "input", "datatype": "FP32", "shape": inputs}])
    hostile.routes[("GET", "/m")] = answer(metadata)
    hostile.routes[("GET", "/config")] = answer({"max_batch_size": config})
    result = bench(hostile, kind="--triton")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and said in lines[0], result.output


def test_a_non_batching_model_with_a_leading_any_size_axis_is_loaded_along_it(hostile):
    """max_batch_size 0 and a leading -1 (the model batches itself): that axis takes --batch."""
    hostile.routes[("GET", "/config")] = answer({"max_batch_size": 0})
    result = bench(hostile, "--batch", "2", "--json", "-", kind="--triton")
    assert result.exit_code == 0, result.output


def test_a_request_is_never_sent_twice_and_a_closed_idle_connection_is_opened_again(hostile):
    """The retry re-sent a POST after any ValueError (the server may have acted on it). Now a
    server that reads a request and closes without a word gets it once (an error, whether the
    connection was new or kept alive); a kept-alive connection the server closed while idle is
    opened again before the request goes out."""
    connection = HttpConnection(hostile.url)
    metadata = connection.request_bytes("GET", "/v2/models/m")
    infer = connection.request_bytes("POST", "/v2/models/m/infer", b"{}")
    assert connection.exchange(metadata)[0] == 200  # kept alive
    hostile.routes[("POST", "/infer")] = lambda sock: None  # reads the request, closes without a word
    for _ in range(2):  # on the kept-alive connection, then on a new one
        seen = hostile.requests
        with pytest.raises(ConnectionError, match="closed the connection without answering"):
            connection.exchange(infer)
        assert hostile.requests == seen + 1
    hostile.routes[("GET", "/m")] = lambda sock: sock.sendall(answer(METADATA))  # answers, then closes
    assert connection.exchange(metadata)[0] == 200
    time.sleep(0.2)  # the server has closed the idle connection
    hostile.routes.pop(("POST", "/infer"))
    seen = hostile.requests
    assert connection.exchange(connection.request_bytes("GET", "/v2/models/m/config"))[0] == 200
    assert hostile.requests == seen + 1


FAKE_PERF_ANALYZER = """#!{python}
# A broken perf_analyzer of the test's own (what $PERF_ANALYZER may point at): --help prints bytes
# that are not UTF-8; a run writes the CSV row of $FAKE_ROW ('-' drops a column) and a summary.
import os, sys
if "--help" in sys.argv:
    sys.stdout.buffer.write(bytes([0xff, 0xfe]) + b" usage: perf_analyzer\\n")
    sys.exit(0)
columns = ["Concurrency", "Inferences/Second", "Server Queue", "Server Compute Input", "Server Compute Infer",
           "Server Compute Output", "p50 latency", "p90 latency", "p95 latency", "p99 latency"]
values = os.environ["FAKE_ROW"].split(",")
kept = [(c, v) for c, v in zip(columns, values) if v != "-"]
with open(sys.argv[sys.argv.index("-f") + 1], "w") as report:
    report.write(",".join(c for c, _ in kept) + "\\n" + ",".join(v for _, v in kept) + "\\n")
sys.stdout.buffer.write(b"Request count: 100\\n" + bytes([0xff]) + b"\\n")
"""


@pytest.fixture
def fake_perf_analyzer(tmp_path, monkeypatch):
    import sys

    program = tmp_path / "perf_analyzer"
    program.write_text(FAKE_PERF_ANALYZER.format(python=sys.executable))
    program.chmod(0o755)
    monkeypatch.setenv("PERF_ANALYZER", str(program))
    return program


GOOD_ROW = "1,500,10,10,1000,10,1500,1800,1900,2000"


@pytest.mark.parametrize(
    "row, said",
    [
        ("1,nan,10,10,1000,10,1500,1800,1900,2000", "'Inferences/Second': no measurement"),
        ("1,inf,10,10,1000,10,1500,1800,1900,2000", "'Inferences/Second': no measurement"),
        ("1,-500,10,10,1000,10,1500,1800,1900,2000", "perf_analyzer reported -500 infer/s"),
        ("1,500,10,10,1000,10,0,0,0,0", "p50 0 ms and p99 0 ms"),
        ("1,500,10,10,1000,10,abc,1800,1900,2000", "gives 'abc' for 'p50 latency', not a number"),
        ("1,500,10,10,1000,10,1500,1800,1900,-", "has no column 'p99 latency'"),
    ],
)
def test_perf_analyzer_figures_that_are_no_measurement_are_one_sentence(
    row, said, hostile, fake_perf_analyzer, monkeypatch
):
    """Issue 35, items 4 and 6: perf_analyzer figures of NaN, inf, negative or all zero were printed
    as measurements (exit 0); a non-numeric value or a missing column was a traceback, and so was
    output that is not UTF-8. Each is one sentence, exit 2."""
    monkeypatch.setenv("FAKE_ROW", row)
    url = f"http://{hostile.url}"
    result = CliRunner().invoke(bench_main, ["--triton", url, "--model", "m", "--duration", "0.6",
                                             "--load-generator", "perf_analyzer"])  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert said in lines[0], lines[0]
    monkeypatch.setenv("FAKE_ROW", GOOD_ROW)  # the control: the same program, figures that are figures
    result = CliRunner().invoke(bench_main, ["--triton", url, "--model", "m", "--duration", "0.6",
                                             "--load-generator", "perf_analyzer", "--json", "-"])  # fmt: skip
    assert result.exit_code == 0 and json.loads(result.output)["measurements"][0]["images_per_second"] == 500


@pytest.mark.parametrize("broken", ["missing", "not executable", "help hangs"])
def test_a_perf_analyzer_that_does_not_run_is_passed_over_with_a_word(broken, fake_perf_analyzer, monkeypatch):
    """A $PERF_ANALYZER that is missing, not executable or whose --help never ends was silently
    replaced by the installed binary (or, hanging, held `auto` for 30 s with no fallback): now it
    is passed over, and the note says why."""
    from benchmark import perf_analyzer

    if broken == "missing":
        fake_perf_analyzer.unlink()
    elif broken == "not executable":
        fake_perf_analyzer.chmod(0o644)
    else:
        fake_perf_analyzer.write_text("#!/bin/sh\nsleep 60\n")
        monkeypatch.setattr(perf_analyzer, "HELP_TIMEOUT_S", 1.0)  # the bound, shortened for the test
    notes: list[str] = []
    started = time.monotonic()
    found = perf_analyzer.find(notes)
    assert found is None or found.binary != fake_perf_analyzer
    assert len(notes) == 1 and notes[0].startswith("$PERF_ANALYZER is not used: "), notes
    assert {"missing": "is not a file", "not executable": "is not executable", "help hangs": "did not end"}[
        broken
    ] in notes[0]
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("content", ["a wheel without the binary", "not a zip"])
def test_a_wheel_without_perf_analyzer_is_one_sentence(content, tmp_path):
    """`perf_analyzer install` from a wheel that lacks the binary was a KeyError."""
    import zipfile

    from benchmark.perf_analyzer import extract_binary
    from toolkit.errors import ToolkitError

    wheel = tmp_path / "tritonclient-2.51.0-py3-none-manylinux1_x86_64.whl"
    if content == "not a zip":
        wheel.write_bytes(b"not a zip")
    else:
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("tritonclient/__init__.py", "")
    with pytest.raises(ToolkitError, match="holds no tritonclient-2.51.0.data/data/bin/perf_analyzer"):
        extract_binary(wheel, tmp_path / "perf_analyzer")
