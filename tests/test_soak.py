"""Soak: 12,000 requests from 32 concurrent clients on loopback, one in five malformed, against `deepcat serve` in
its own process. Every good request is answered 200, every bad one a 4xx JSON error; no 5xx, no dropped connection;
resident memory, sampled every 1,500 requests, stays within 20% of its value after the first 1,500 and within 25%
of what good traffic alone took; /health still answers. Load shedding is off here (`--max-queue-ms 0`), so every
good request must get its answer; shedding is tested in test_serving.py."""

import asyncio
import io
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from conftest import bomb_png, digit_pngs, free_port

import deepcat

REQUESTS, CLIENTS, WARM_UP, SAMPLE_EVERY = 12_000, 32, 200, 1_500


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def large_png() -> bytes:
    """A 4000x4000 gradient: 48 MB of pixels in 57 KB, under the server's byte limit."""
    from PIL import Image

    buf = io.BytesIO()
    gradient = (np.add.outer(np.arange(4000), np.arange(4000)) % 256).astype(np.uint8)
    Image.fromarray(gradient).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def bad_requests(good: bytes) -> list[dict]:
    """The malformed kinds, each a request that must be refused with a 4xx. The last two cost memory if mishandled:
    a header claiming 36 megapixels on 70 bytes, and a large PNG cut in half (its pixels are allocated, then the
    decoder finds the end)."""
    rng = np.random.default_rng(0)
    large = large_png()
    return [
        {"content": b"", "headers": {"content-type": "image/png"}},  # empty
        {"content": b"just some text", "headers": {"content-type": "image/png"}},  # text
        {"content": good[: len(good) // 2], "headers": {"content-type": "image/png"}},  # truncated image
        {"content": rng.bytes(3000), "headers": {"content-type": "application/octet-stream"}},  # random bytes
        {"content": good, "headers": {"content-type": "text/csv"}},  # wrong type
        {"content": bomb_png(), "headers": {"content-type": "image/png"}},  # bomb header
        {"content": bomb_png(6000, 6000), "headers": {"content-type": "image/png"}},  # forged, under the pixel limit
        {"content": large[: len(large) // 2], "headers": {"content-type": "image/png"}},  # large, truncated
    ]


async def fire(url: str, good: list[bytes], count: int, bad: list[dict]) -> list[tuple[bool, int, bool]]:
    """(was it good, status, JSON error body) of `count` requests from CLIENTS clients, one in five from `bad` (when
    there are any); exceptions propagate."""
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    results = []

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            is_good = i % 5 != 0 or not bad
            kwargs = (
                {"files": {"file": (f"{i}.png", io.BytesIO(good[i % len(good)]), "image/png")}}
                if is_good
                else bad[(i // 5) % len(bad)]
            )
            response = await http.post(f"{url}/v1/predict", **kwargs)
            is_json_error = not is_good and "error" in response.json()
            results.append((is_good, response.status_code, is_json_error))

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
    return results


@pytest.mark.slow
def test_soak_12000_requests_32_clients_one_in_five_malformed_memory_flat(tmp_path):
    run = deepcat.train("digits", output=str(tmp_path), name="d", epochs=1, audit=False, progress=False)
    model = deepcat.export(run, format="onnx", progress=False).path
    port = free_port()
    log = tmp_path / "server.log"  # printed at the end: pytest shows it when the test fails
    with log.open("w") as stderr:  # the server holds its own copy of the file
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deepcat",
                "serve",
                model,
                "--port",
                str(port),
                "--max-bytes",
                "200000",
                "--max-queue-ms",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.2)
        good = digit_pngs(50)
        bad = bad_requests(good[0])
        asyncio.run(fire(url, good, WARM_UP, bad))
        asyncio.run(fire(url, good, 2 * SAMPLE_EVERY, []))
        good_traffic = rss_kib(server.pid)
        results, samples = [], []
        started = time.perf_counter()
        for _ in range(REQUESTS // SAMPLE_EVERY):
            results += asyncio.run(fire(url, good, SAMPLE_EVERY, bad))
            samples.append(rss_kib(server.pid))
        seconds = time.perf_counter() - started
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    finally:
        exit_code = server.poll()
        server.terminate()
        server.wait(10)
        print(f"server exit code while the clients ran: {exit_code}; its stderr:\n{log.read_text()[-4000:]}")
    print(f"soak: {REQUESTS} requests in {seconds:.1f} s, RSS {good_traffic} KiB (good traffic), then {samples}")
    assert len(results) == REQUESTS
    statuses = {s for _, s, _ in results}
    assert all(s == 200 for is_good, s, _ in results if is_good), statuses
    assert all(400 <= s < 500 and is_json for is_good, s, is_json in results if not is_good), statuses
    assert sum(not is_good for is_good, _, _ in results) == REQUESTS // 5
    first = samples[0]
    assert all(abs(kib - first) <= 0.20 * first for kib in samples), f"RSS after each 1,500: {samples} KiB"
    assert all(kib <= 1.25 * good_traffic for kib in samples), f"good traffic {good_traffic} KiB, then {samples}"
