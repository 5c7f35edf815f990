"""Requests/s and p50/p99 latency on loopback at 1, 8, 32 and 128 concurrent clients, for `deepcat serve`
(the pretrained cat / dog / neither model, ONNX Runtime, micro-batching) and, in the same run, the baseline
most tutorials deploy: a Flask app running the same PyTorch model once per request
(`benchmarks/flask_baseline.py`). Each level is bounded in requests and in seconds. The load generator
shares the machine's 2 cores with the server.

    pip install flask   # the baseline's only extra
    python benchmarks/serve.py              # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import io
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


async def load(url: str, body: bytes, *, clients: int, requests: int, seconds: float = 60) -> dict:
    latencies: list[float] = []
    labels: set[str] = set()
    deadline = time.perf_counter() + seconds

    async def client(n: int, http: httpx.AsyncClient) -> None:
        for _ in range(n):
            if time.perf_counter() > deadline:
                return
            started = time.perf_counter()
            r = await http.post(f"{url}/v1/predict", content=body, headers={"content-type": "image/jpeg"})
            r.raise_for_status()
            latencies.append(time.perf_counter() - started)
            labels.add(r.json()["label"])

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(max(1, requests // clients), http) for _ in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "requests_per_s": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "labels": ",".join(sorted(labels))}


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=256, help="requests per level (1 client: a quarter)")
    parser.add_argument("--seconds", type=float, default=45, help="time bound per level")
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve.json"))
    args = parser.parse_args()
    from deepcat.exporting.export import serving_model

    model = serving_model(None)
    body = photo()
    servers = {"deepcat serve (ONNX Runtime, micro-batching)":
               [sys.executable, "-m", "deepcat", "serve", str(model), "--port", "{port}"],
               "Flask + PyTorch per request (baseline)":
               [sys.executable, str(Path(__file__).parent / "flask_baseline.py"), "{port}"]}
    rows, batch_sizes = [], {}
    for name, template in servers.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start([part.format(port=port) for part in template], url)
        try:
            asyncio.run(load(url, body, clients=1, requests=5))  # warm-up
            for clients in (int(c) for c in args.clients.split(",")):
                n = args.requests // 4 if clients == 1 else max(args.requests, clients)
                rows.append({"server": name, **asyncio.run(load(url, body, clients=clients, requests=n,
                                                                 seconds=args.seconds))})
            if name.startswith("deepcat"):
                metrics = httpx.get(f"{url}/metrics").text
                count = next(float(r.split()[-1]) for r in metrics.splitlines()
                             if r.startswith("deepcat_batch_size_count"))
                total = next(float(r.split()[-1]) for r in metrics.splitlines()
                             if r.startswith("deepcat_batch_size_sum"))
                batch_sizes[name] = total / count
        finally:
            server.terminate()
            server.wait(10)
    by = {(r["server"].split()[0], r["clients"]): r for r in rows}
    ratios = {f"{c}_clients": by[("deepcat", c)]["requests_per_s"] / by[("Flask", c)]["requests_per_s"]
              for c in (int(c) for c in args.clients.split(","))}
    report("serve", rows, args.out, model=str(model.name), mean_batch_size=batch_sizes,
           deepcat_over_flask_requests_per_s=ratios)
    print("deepcat / Flask requests/s: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
