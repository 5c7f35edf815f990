"""Micro-batching: concurrent requests wait up to `max_wait` seconds to share one inference call.

While one batch runs (in a worker thread, so the event loop stays free), new requests
queue up and form the next batch: throughput rises with load, latency stays bounded.
A batch does not wait for requests that do not exist: once it holds every input the server has admitted
(`admitted()`), it runs at once, so a lone request pays no wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import numpy as np


class MicroBatcher:
    def __init__(self, infer: Callable[[np.ndarray], tuple], *, max_batch: int = 32, max_wait: float = 0.005,
                 on_batch: Callable[[int], None] | None = None, admitted: Callable[[], int] | None = None):
        self.infer, self.max_batch, self.max_wait, self.on_batch = infer, max_batch, max_wait, on_batch
        self.admitted = admitted
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def submit(self, pixels: np.ndarray) -> np.ndarray:
        """One image's (3, H, W) pixels -> its row of each of `infer`'s outputs."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((pixels, future))
        return await future

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        items = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(items) < self.max_batch:
            if self.admitted is not None and len(items) >= self.admitted():
                break  # every admitted input is in this batch: nobody else to wait for
            if not self.queue.empty():
                items.append(self.queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return items

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            live = [(p, f) for p, f in items if not f.cancelled()]  # clients that hung up
            if not live:
                continue
            if self.on_batch:
                self.on_batch(len(live))
            try:
                outputs = await asyncio.to_thread(self.infer, np.stack([p for p, _ in live]))
            except Exception as e:  # noqa: BLE001 - every waiting request gets the failure
                for _, future in live:
                    if not future.done():
                        future.set_exception(e)
                continue
            rows = zip(*(o if o is not None else [None] * len(live) for o in outputs))
            for (_, future), row in zip(live, rows):
                if not future.done():
                    future.set_result(row)
