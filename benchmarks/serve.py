"""Requests/s and latency of `deepcat serve` (the pretrained cat / dog / neither model) on loopback,
with 1 client (baseline: no batching possible) and with 32 concurrent clients, in one run.

    python benchmarks/serve.py --requests 320     # ~2 min on 2 cores
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


async def load(url: str, body: bytes, *, clients: int, requests: int) -> dict:
    latencies: list[float] = []
    labels: set[str] = set()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        for _ in range(n):
            started = time.perf_counter()
            r = await http.post(f"{url}/v1/predict", content=body, headers={"content-type": "image/jpeg"})
            r.raise_for_status()
            latencies.append(time.perf_counter() - started)
            labels.add(r.json()["label"])

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(requests // clients, http) for _ in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "requests_per_s": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "labels": ",".join(sorted(labels))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve.json"))
    args = parser.parse_args()
    from deepcat.export.api import serving_model

    model = serving_model(None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "deepcat", "serve", str(model), "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                raise SystemExit("server did not become ready")
            time.sleep(0.2)
        body = photo()
        asyncio.run(load(url, body, clients=1, requests=5))  # warm-up
        rows = [asyncio.run(load(url, body, clients=1, requests=max(20, args.requests // 8))),
                asyncio.run(load(url, body, clients=32, requests=args.requests))]
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        server.terminate()
        server.wait(10)
    rows[0]["note"], rows[1]["note"] = "baseline: one client", "micro-batched"
    count = next(float(row.split()[-1]) for row in metrics.splitlines() if row.startswith("deepcat_batch_size_count"))
    total = next(float(row.split()[-1]) for row in metrics.splitlines() if row.startswith("deepcat_batch_size_sum"))
    report("serve", rows, args.out, model=str(model.name), mean_batch_size=total / count,
           speedup_32_clients=rows[1]["requests_per_s"] / rows[0]["requests_per_s"])
    print(f"mean micro-batch size {total / count:.1f}; 32 clients / 1 client: "
          f"{rows[1]['requests_per_s'] / rows[0]['requests_per_s']:.2f}x requests/s")


if __name__ == "__main__":
    main()
