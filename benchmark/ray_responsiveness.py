"""How a Ray Serve application of the toolkit answers while it works: its health route's latency
under closed-loop load, its throughput, and what slow clients take from it.

    python -m benchmark.ray_responsiveness MODEL.onnx [--concurrency 1,4,8] [--slow 40] [--duration 4]

A one-node `LocalRayCluster` on loopback (2 CPUs), the model's application (`resnet-deploy ray`,
one replica, `--max-batch 8`), deployed with `serve deploy`. For each concurrency: clients send
batch-1 requests back to back in Triton's binary tensor form for `duration` s (their rate), then
again while `/v2/health/live` is asked every 0.2 s (its median and largest latency). With
`--slow N`: N connections send headers and part of a body, then wait; a health check and a
request are timed beside them. Compare two versions of the application by running this on each,
interleaved, on a quiet machine: the figures of docs/deploy.md came so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from toolkit.cli import parse_ints

HEADER = "Inference-Header-Content-Length"


def _request(url: str, body: bytes | None = None, header: int | None = None, timeout: float = 60) -> float:
    """Seconds one request took; it must answer 200."""
    headers = {HEADER: str(header)} if header is not None else {}
    started = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=timeout) as answer:
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{url} answered {answer.status}")
    return time.monotonic() - started


def _binary_body(shape: tuple[int, ...], name: str) -> tuple[bytes, int]:
    array = np.random.default_rng(0).standard_normal((1, *shape), dtype=np.float32)
    tensor = {"name": name, "shape": list(array.shape), "datatype": "FP32"}
    head = json.dumps({"inputs": [tensor | {"parameters": {"binary_data_size": array.nbytes}}]}).encode()
    return head + array.tobytes(), len(head)


def _under_load(url: str, infer: str, body: tuple[bytes, int], clients: int, duration: float, probe: bool) -> dict:
    stop, counts, health = threading.Event(), [], []

    def client() -> None:
        done = 0
        while not stop.is_set():
            _request(infer, *body)
            done += 1
        counts.append(done)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while time.monotonic() - started < duration:
        if probe:
            health.append(_request(f"{url}/v2/health/live") * 1e3)
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if not probe:
        return {"requests_per_second": sum(counts) / elapsed}
    return {"health_median_ms": statistics.median(health), "health_max_ms": max(health), "probes": len(health)}


def _beside_slow_clients(url: str, infer: str, body: tuple[bytes, int], count: int) -> dict:
    host, port = url.removeprefix("http://").split(":")
    held = []
    for _ in range(count):
        connection = socket.create_connection((host, int(port)), timeout=60)
        connection.sendall(
            b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + body[0][:100]
        )
        held.append(connection)
    time.sleep(2.0)
    try:
        return {
            "slow": count,
            "health_s": _request(f"{url}/v2/health/live", timeout=30),
            "infer_s": _request(infer, *body, timeout=30),
        }
    except OSError as error:
        return {"slow": count, "failed": str(error)}
    finally:
        for connection in held:
            connection.close()


def measure(model: Path, concurrency: list[int], duration: float, slow: int) -> list[dict]:
    from deploy.artifacts.onnx_file import inspect_onnx
    from deploy.ray_serve.dev_cluster import LocalRayCluster, free_port_block
    from deploy.ray_serve.writer import RayOptions, write_ray_app

    signature = inspect_onnx(model)
    body = _binary_body(tuple(signature.input.shape[1:]), signature.input.name)
    with tempfile.TemporaryDirectory() as folder, LocalRayCluster(workers=0, cpus=2) as cluster:
        (port,) = free_port_block("127.0.0.2", 1)
        options = RayOptions(min_replicas=1, max_replicas=1, batch_requests=8, http_host="127.0.0.2", http_port=port,
                             proxy_location="HeadOnly")  # fmt: skip
        app = write_ray_app(model, Path(folder) / "app", "m", options)
        serve = shutil.which("serve", path=str(Path(sys.executable).parent))
        subprocess.run([serve, "deploy", str(app / "serve_config.yaml"), "--address", cluster.dashboard],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        url, deadline = f"http://127.0.0.2:{port}", time.monotonic() + 300
        infer = f"{url}/v2/models/m/infer"
        while time.monotonic() < deadline:
            try:
                _request(infer, *body)
                break
            except OSError:
                time.sleep(0.5)
        rows = [
            {"clients": c}
            | _under_load(url, infer, body, c, duration, False)
            | _under_load(url, infer, body, c, duration, True)
            for c in concurrency
        ]
        return rows + ([_beside_slow_clients(url, infer, body, slow)] if slow else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.ray_responsiveness", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument(
        "--slow", type=int, default=0, help="Slow connections held beside a health check and a request."
    )
    arguments = parser.parse_args(argv)
    for row in measure(
        arguments.model, parse_ints(arguments.concurrency, "--concurrency"), arguments.duration, arguments.slow
    ):
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    return 0


if __name__ == "__main__":
    from toolkit.cli import run_script

    sys.exit(run_script("python -m benchmark.ray_responsiveness", main))
