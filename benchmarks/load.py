"""The serving benchmark's load generator: closed-loop clients and Poisson (open-loop) arrivals, each request a
few lines of asyncio streams on a keep-alive connection (the generator shares the cores with the servers, so it
must cost little: httpx with 128 connections took a large share of 2 cores and starved every server alike).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time


def request_bytes(url: str, body: bytes) -> bytes:
    host = url.removeprefix("http://")
    head = (
        f"POST /v1/predict HTTP/1.1\r\nhost: {host}\r\ncontent-type: image/jpeg\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


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


async def closed_loop(url: str, body: bytes, *, clients: int, seconds: float, warmup_s: float = 0.0) -> dict:
    """`clients` closed-loop clients for `seconds`, one keep-alive connection each. With `warmup_s`, they run that
    much longer first, and what was sent before it is left out (a standing queue's start is not its steady
    state)."""
    host, port = url.removeprefix("http://").split(":")
    request = request_bytes(url, body)
    latencies: list[float] = []
    finished: list[float] = []  # seconds after `measured_from` at which each answer came (the rate's count)
    refused, labels = 0, set()
    measured_from = time.perf_counter() + warmup_s
    deadline = measured_from + seconds

    async def client() -> None:
        nonlocal refused
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status, headers, answer = await post(reader, writer, request)
                if headers.get("connection") == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                counted = started >= measured_from
                if status == 503:
                    refused += counted
                    await asyncio.sleep(float(headers.get("retry-after", 1)))
                    continue
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {answer[:200]!r}")
                now = time.perf_counter()
                if counted:
                    latencies.append(now - started)
                if now >= measured_from:  # the rate counts every answer inside the span, sent before it or not
                    finished.append(now - measured_from)
                labels.add(json.loads(answer)["label"])
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - measured_from
    return {
        "latencies": latencies,
        "finished": finished,
        "refused": refused,
        "requests_per_s": len(finished) / wall,
        "labels": labels,
    }


async def open_loop(url: str, body: bytes, *, rate: float, seconds: float, seed: int) -> dict:
    """Requests at Poisson times, `rate` a second on average, for `seconds`; each on an idle keep-alive connection
    or a new one. A request not answered within 5 s, refused or failed counts as a failure."""
    host, port = url.removeprefix("http://").split(":")
    request = request_bytes(url, body)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        started = time.perf_counter()
        for attempt in range(2):  # a kept-alive connection the server closed meanwhile is retried on a new one
            reused = bool(idle) and attempt == 0
            try:
                reader, writer = idle.pop() if reused else await asyncio.open_connection(host, int(port))
                status, headers, _ = await asyncio.wait_for(post(reader, writer, request), 5)
                break
            except (OSError, asyncio.IncompleteReadError):
                if reused:
                    continue
                failures += 1
                return
            except asyncio.TimeoutError:
                failures += 1
                return
        if headers.get("connection") == "close":
            writer.close()
        else:
            idle.append((reader, writer))
        if status == 200:
            latencies.append(time.perf_counter() - started)
        else:
            failures += 1

    rng = random.Random(seed)
    tasks, start = [], time.perf_counter()
    arrival = rng.expovariate(rate)
    while arrival < seconds:
        await asyncio.sleep(max(0.0, start + arrival - time.perf_counter()))
        tasks.append(asyncio.ensure_future(one()))
        arrival += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return {"sent": len(tasks), "failed": failures, "latencies": latencies}


def open_loop_p99(trials: list[dict]) -> dict:
    """The p99 over every request of a rate's trials (each its own Poisson sequence), a failure counted as slower
    than any answer."""
    sent, failed = sum(t["sent"] for t in trials), sum(t["failed"] for t in trials)
    ordered = sorted(x for t in trials for x in t["latencies"]) + [math.inf] * failed
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else math.inf
    return {"sent": sent, "failed": failed, "p99_ms": 1000 * p99}
