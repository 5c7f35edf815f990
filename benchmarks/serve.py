"""Answered requests/s, p50/p99 latency of the answered requests and refusals (503) on loopback at 1, 8, 32
and 128 concurrent clients, for five servers of the same pretrained cat / dog / neither model, in one run:
- `deepcat serve MODEL.int8.onnx`: ONNX Runtime int8, micro-batching, load shedding past its wait budget. The
  int8 file is deepcat's own quantisation (`quantize_int8`), checked as `deepcat export` checks a run's:
  top-1 agreement with fp32 at least 99% on 500 crops of scikit-image's sample photos (cats and other
  objects: there is no dog photo offline), calibrated and chosen on other crops;
- the same int8 file on one worker with batches of up to 32 (two ONNX Runtime threads): what 3 workers of
  small batches on one thread each add;
- `deepcat serve` in fp32, what a plain `deepcat serve` runs for this model;
- FastAPI + the same int8 ONNX file once per request (`benchmarks/fastapi_onnx_baseline.py`): what ONNX
  Runtime alone gives, so the table separates it from what micro-batching and shedding add;
- Flask + the PyTorch model once per request (`benchmarks/flask_baseline.py`): what most tutorials deploy.
Each level runs for a fixed time with closed-loop clients; a client refused with 503 waits its `Retry-After`
as a well-behaved client does. The load generator shares the machine's 2 cores with the server. Each server's
resident memory when ready and its peak under load are read from /proc.

    pip install flask   # the baseline's only extra
    python benchmarks/serve.py              # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def photo() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


async def post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 keep-alive request on an open connection -> status, headers, body. A few lines of asyncio
    streams: the load generator shares the 2 cores with the server, so it must cost little (httpx with 128
    connections took a large share of them and starved every server alike)."""
    writer.write(request)
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return int(status_line.split()[1]), headers, body


async def load(url: str, body: bytes, *, clients: int, seconds: float) -> dict:
    """`clients` closed-loop clients for `seconds`, one keep-alive connection each: each sends the next request
    when its last one is answered."""
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/predict HTTP/1.1\r\nhost: {host}\r\ncontent-type: image/jpeg\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    refused, labels = 0, set()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal refused
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status, headers, answer = await post(reader, writer, request)
                if headers.get("connection") == "close":  # Flask's development server: one request per connection
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                if status == 503:
                    refused += 1
                    await asyncio.sleep(float(headers.get("retry-after", 1)))
                    continue
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {answer[:200]!r}")
                latencies.append(time.perf_counter() - started)
                labels.add(json.loads(answer)["label"])
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "answered": len(latencies),
        "refused_503": refused,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "labels": ",".join(sorted(labels)),
    }


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak (VmHWM) or current (VmRSS) resident memory, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field))) / 1024


def start(command: list[str], url: str) -> subprocess.Popen:
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.time() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit(f"server did not become ready: {' '.join(command)}")
        time.sleep(0.3)


def checked_int8(fp32: Path) -> tuple[Path, dict]:
    """The model's int8 file beside it, quantised by deepcat and checked against fp32 as `deepcat export` checks
    a run: calibration, held-out and check crops are disjoint draws of the sample photos."""
    import numpy as np
    import onnx
    from infer import photo_crops

    from deepcat.exporting.check import compare
    from deepcat.exporting.onnx_formats import quantize_int8
    from deepcat.inference.onnx_model import load_onnx

    meta = json.loads(next(p.value for p in onnx.load(str(fp32)).metadata_props if p.key == "deepcat"))
    int8 = fp32.with_suffix(".int8.onnx")
    precision = quantize_int8(
        fp32, int8, photo_crops(64, seed=0, meta=meta), meta, held_out=photo_crops(200, seed=3, meta=meta)
    )
    checks = photo_crops(500, seed=5, meta=meta)
    labels = np.array([meta["classes"].index("cat" if i % 5 in (2, 4) else "neither") for i in range(len(checks))])
    # the answers are summed ImageNet probabilities: compared as log-probabilities, as logits would be
    answers = [np.log(np.maximum(load_onnx(path).probabilities(checks), 1e-30)) for path in (fp32, int8)]
    report = compare(*answers, labels, kind="int8")  # raises when int8 misses the bound
    return int8, {
        **report.to_dict(),
        "precision": precision,
        "check_images": "500 crops of astronaut, coffee, chelsea, rocket, cat (scikit-image): cat or neither",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="how long each level runs")
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve.json"))
    args = parser.parse_args()
    from deepcat.serving.model_file import serving_model

    model = serving_model(None)
    int8, check = checked_int8(model)
    body = photo()
    here = Path(__file__).parent
    servers = {
        "deepcat": (
            "deepcat serve int8 (ONNX Runtime, micro-batching, shedding)",
            [sys.executable, "-m", "deepcat", "serve", str(int8), "--port", "{port}"],
        ),
        "deepcat-1-worker": (
            "deepcat serve int8, one worker, batches of 32 (the round-1 layout)",
            [
                sys.executable,
                "-m",
                "deepcat",
                "serve",
                str(int8),
                "--port",
                "{port}",
                "--workers",
                "1",
                "--max-batch",
                "32",
            ],
        ),
        "deepcat-fp32": (
            "deepcat serve fp32 (the same, in fp32)",
            [sys.executable, "-m", "deepcat", "serve", "--port", "{port}"],
        ),
        "FastAPI": (
            "FastAPI + the same int8 ONNX per request",
            [sys.executable, str(here / "fastapi_onnx_baseline.py"), str(int8), "{port}"],
        ),
        "Flask": (
            "Flask + PyTorch per request (baseline)",
            [sys.executable, str(here / "flask_baseline.py"), "{port}"],
        ),
    }
    rows, batch_sizes, memory, ready_memory = [], {}, {}, {}
    for key, (name, template) in servers.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start([part.format(port=port) for part in template], url)
        try:
            ready_memory[name] = memory_mb(server.pid, "VmRSS")
            asyncio.run(load(url, body, clients=1, seconds=2))  # warm-up
            for clients in (int(c) for c in args.clients.split(",")):
                rows.append(
                    {"server": name, "key": key, **asyncio.run(load(url, body, clients=clients, seconds=args.seconds))}
                )
            memory[name] = memory_mb(server.pid)
            if key.startswith("deepcat"):
                metrics = httpx.get(f"{url}/metrics").text
                count = next(
                    float(r.split()[-1]) for r in metrics.splitlines() if r.startswith("deepcat_batch_size_count")
                )
                total = next(
                    float(r.split()[-1]) for r in metrics.splitlines() if r.startswith("deepcat_batch_size_sum")
                )
                batch_sizes[name] = total / count
        finally:
            server.terminate()
            server.wait(10)
    by = {(r["key"], r["clients"]): r for r in rows}
    levels = [int(c) for c in args.clients.split(",")]
    ratios = {
        baseline: {
            f"{c}_clients": by[("deepcat", c)]["requests_per_s"] / by[(baseline, c)]["requests_per_s"] for c in levels
        }
        for baseline in ("deepcat-1-worker", "deepcat-fp32", "FastAPI", "Flask")
    }
    ours = [by[("deepcat", c)] for c in levels]
    capacity = max(ours, key=lambda r: r["requests_per_s"])
    overload = {
        "capacity_clients": capacity["clients"],
        "capacity_requests_per_s": capacity["requests_per_s"],
        "capacity_p99_ms": capacity["p99_ms"],
        "most_clients_share_of_capacity": ours[-1]["requests_per_s"] / capacity["requests_per_s"],
        "most_clients_p99_over_capacity_p99": ours[-1]["p99_ms"] / capacity["p99_ms"],
    }
    report(
        "serve",
        rows,
        args.out,
        model=str(model.name),
        int8_check=check,
        mean_batch_size=batch_sizes,
        memory_when_ready_mb=ready_memory,
        peak_memory_mb=memory,
        deepcat_over=ratios,
        past_capacity=overload,
    )
    for baseline, by_level in ratios.items():
        print(f"deepcat / {baseline} requests/s: " + ", ".join(f"{k} {v:.1f}x" for k, v in by_level.items()))
    print(
        "at {} clients: {:.0%} of the best requests/s, p99 {:.1f}x the p99 at capacity ({} clients)".format(
            levels[-1],
            overload["most_clients_share_of_capacity"],
            overload["most_clients_p99_over_capacity_p99"],
            capacity["clients"],
        )
    )
    print(
        "memory when ready / peak under load: "
        + ", ".join(f"{name.split(' (')[0]} {ready_memory[name]:.0f} / {mb:.0f} MB" for name, mb in memory.items())
    )


if __name__ == "__main__":
    main()
