"""Micro-batching: concurrent requests wait up to `max_wait` seconds to share one inference call.

Each batch runs in a worker thread (the event loop stays free), and up to `workers` batches run at once: one
decodes its inputs while another is inside ONNX Runtime. Decoding happens in the batch's own thread, so a
request costs one thread hop. Measured on 2 CPU cores (`benchmarks/serve.py`, EfficientNet-Lite0 int8): three
workers with one ONNX Runtime thread each and batches of up to 4 answered 1.3-1.5x the requests/s of one
worker with two threads and batches of 32, at 8, 32 and 128 clients; a lone request took 1.4x longer.
On a CPU a bigger batch does not make an image cheaper; running several at once fills the cores.

A batch does not wait for requests that do not exist: once it holds every input the server has admitted
(`admitted()`) but those already in a running batch, it runs at once, so a lone request pays no wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["MicroBatcher", "Prepare", "Row", "Waiting"]

Prepare = Callable[[], np.ndarray]  # decodes one input into the model's input; raises for a bad one
Row = tuple[Any, ...]  # one input's row of each of the model's outputs
Waiting = asyncio.Future[Row]


class MicroBatcher:
    def __init__(
        self,
        infer: Callable[[np.ndarray], tuple[Any, ...]],
        *,
        max_batch: int = 32,
        max_wait: float = 0.005,
        workers: int = 1,
        on_batch: Callable[[int], None] | None = None,
        admitted: Callable[[], int] | None = None,
    ):
        self.infer, self.max_batch, self.max_wait, self.workers = infer, max_batch, max_wait, workers
        self.on_batch, self.admitted = on_batch, admitted
        self.queue: asyncio.Queue[tuple[Prepare, Waiting]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.running: dict[asyncio.Task[None], int] = {}  # each running batch and its size

    def in_batches(self) -> int:
        """Inputs inside running batches."""
        return sum(self.running.values())

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in [self.task, *self.running]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def submit(self, prepare: Prepare) -> Row:
        """One input, as the function that decodes it -> its row of each of `infer`'s outputs."""
        future: Waiting = asyncio.get_running_loop().create_future()
        await self.queue.put((prepare, future))
        return await future

    async def _collect(self) -> list[tuple[Prepare, Waiting]]:
        items = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(items) < self.max_batch:
            if self.admitted is not None and len(items) >= self.admitted() - self.in_batches():
                break  # every admitted input is in this batch or a running one: nobody else to wait for
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
        free = asyncio.Semaphore(self.workers)
        while True:
            await free.acquire()
            live = [(p, f) for p, f in await self._collect() if not f.cancelled()]  # clients that hung up
            if not live:
                free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._batch(live, free))
            self.running[task] = len(live)
            task.add_done_callback(self.running.pop)

    async def _batch(self, live: list[tuple[Prepare, Waiting]], free: asyncio.Semaphore) -> None:
        """Decode and infer one batch in a worker thread; each request gets its row, or its own decoding error."""
        try:
            ready, failed, outputs = await asyncio.to_thread(self._decode_and_infer, live)
        except Exception as e:  # noqa: BLE001 - every waiting request gets the failure
            ready, failed, outputs = [], [(f, e) for _, f in live], None
        finally:
            free.release()
        for future, error in failed:
            if not future.done():
                future.set_exception(error)
        if self.on_batch and ready:
            self.on_batch(len(ready))
        rows = zip(*(o if o is not None else [None] * len(ready) for o in outputs or ()))
        for future, row in zip(ready, rows):
            if not future.done():
                future.set_result(row)

    def _decode_and_infer(
        self, live: list[tuple[Prepare, Waiting]]
    ) -> tuple[list[Waiting], list[tuple[Waiting, Exception]], tuple[Any, ...] | None]:
        inputs, ready, failed = [], [], []
        for prepare, future in live:
            try:
                inputs.append(prepare())
                ready.append(future)
            except Exception as e:  # noqa: BLE001 - a bad input fails its own request only
                failed.append((future, e))
        return ready, failed, self.infer(np.stack(inputs)) if inputs else None
