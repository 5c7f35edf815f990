"""Micro-batching: concurrent requests wait up to `max_wait` seconds to share one inference call.

Each batch runs in a worker thread (the event loop stays free), and up to `workers` batches run at once: one
decodes its inputs while another is inside ONNX Runtime. Decoding happens in the batch's own thread, so a
request costs one thread hop. While the server holds at most `few` inputs (one per core) its batches run
`infer_alone`, the session on every core; under more load they run `infer`, on one core each (`layout.py` says
why).

A batch does not wait for requests that do not exist: once it holds every input the server has admitted
(`admitted()`) but those already in a running batch, it runs at once, so a lone request pays no wait.

Nor does one batch take every input waiting: it takes at most its share (`_share`) of the inputs the server holds,
split into one batch per worker and one more waiting, so that with a few clients per core every worker has a batch
and answers leave a few at a time rather than all together. With many clients the share is `max_batch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from deepcat.serving.admission import DEADLINE_HEADER, RETRY_AFTER_S
from deepcat.serving.errors import RequestError

__all__ = ["Item", "MicroBatcher", "Prepare", "Row", "Waiting"]

Prepare = Callable[[], np.ndarray]  # decodes one input into the model's input; raises for a bad one
Row = tuple[Any, ...]  # one input's row of each of the model's outputs
Waiting = asyncio.Future[Row]
Item = tuple[Prepare, Waiting, float]  # an input, its answer to come, and its deadline (the loop's clock)


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
        infer_alone: Callable[[np.ndarray], tuple[Any, ...]] | None = None,
        few: int = 1,
    ):
        self.infer, self.max_batch, self.max_wait, self.workers = infer, max_batch, max_wait, workers
        self.infer_alone, self.few = infer_alone or infer, few
        self.on_batch, self.admitted = on_batch, admitted
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.free = asyncio.Semaphore(workers)  # a batch holds one while it runs
        self.running: dict[asyncio.Task[None], int] = {}  # each running batch and its size
        self.alone_threads: list[ThreadPoolExecutor] = []  # one thread each (`_alone_thread`)...
        self.alone_busy: list[bool] = []  # ...and whether an input runs alone on it now (light load)

    def in_batches(self) -> int:
        """Inputs inside running batches."""
        return sum(self.running.values()) + sum(self.alone_busy)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in [self.task, *self.running]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for thread in self.alone_threads:
            thread.shutdown(wait=False)

    async def submit(self, prepare: Prepare, within_s: float | None = None) -> Row:
        """One input, as the function that decodes it -> its row of each of `infer`'s outputs. With `within_s`, the
        input is dropped (503) if its batch has not started by then."""
        loop = asyncio.get_running_loop()
        if self._light() and not self.free.locked():
            return await self._alone(prepare)
        future: Waiting = loop.create_future()
        await self.queue.put((prepare, future, math.inf if within_s is None else loop.time() + within_s))
        return await future

    async def _alone(self, prepare: Prepare) -> Row:
        """Run one input at once on `infer_alone`, in the request's own task: no batch task, no future, two thread
        hops fewer than a batch (a lone request's latency is mostly these hops and the model)."""
        await self.free.acquire()  # does not wait: the caller saw a free worker, and nothing ran since
        slot = self._alone_thread()
        self.alone_busy[slot] = True
        try:
            loop = asyncio.get_running_loop()
            thread = self.alone_threads[slot]
            [row] = await loop.run_in_executor(thread, self._decode_and_infer, [prepare], self.infer_alone)
        finally:
            self.alone_busy[slot] = False
            self.free.release()
        if isinstance(row, Exception):
            raise row
        if self.on_batch:
            self.on_batch(1)
        return row

    def _alone_thread(self) -> int:
        """The first idle one of the threads inputs run alone on (a new one when every one is busy), so that a lone
        client's requests all run on one thread: taken in turn from a shared pool of the threads an overload had
        started, its p99 after an overload nearly doubled (docs/design-notes.md, "The thread an input runs alone
        on")."""
        if all(self.alone_busy):
            self.alone_threads.append(ThreadPoolExecutor(1, thread_name_prefix="deepcat-alone"))
            self.alone_busy.append(False)
        return self.alone_busy.index(False)

    def _light(self) -> bool:
        """Whether the server holds at most `few` inputs (running, queued, or their bodies being read)."""
        admitted = self.in_batches() + self.queue.qsize() + 1 if self.admitted is None else self.admitted()
        return admitted <= self.few

    def _share(self) -> int:
        """The most inputs the next batch takes: the admitted inputs split into `workers` + 1 batches, at most
        `max_batch`: with a few clients per core, larger batches left cores idle while their answers went out and
        came back together, and capping them by the share answered about 3% more requests/s at 8 clients and the
        same at 32 and 128 (docs/design-notes.md, "A batch takes at most its share")."""
        if self.admitted is None:
            return self.max_batch
        return max(1, min(self.max_batch, math.ceil(self.admitted() / (self.workers + 1))))

    def _start(self, live: list[Item], infer: Callable[[np.ndarray], Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._batch(live, infer))
        self.running[task] = len(live)
        task.add_done_callback(self.running.pop)

    async def _collect(self) -> list[Item]:
        items = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        most = self._share()
        while len(items) < most:
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
        while True:
            await self.free.acquire()
            live = self._live(await self._collect())
            if not live:
                self.free.release()
                continue
            self._start(live, self.infer_alone if self._light() else self.infer)

    @staticmethod
    def _live(items: list[Item]) -> list[Item]:
        """The items still wanted: not those whose client hung up, nor those past their deadline (refused)."""
        now, live = asyncio.get_running_loop().time(), []
        for item in items:
            future, deadline = item[1], item[2]
            if future.cancelled():
                continue
            if now > deadline:
                future.set_exception(
                    RequestError(
                        503,
                        "deadline_exceeded",
                        f"the server could not start on this input within its {DEADLINE_HEADER}; retry "
                        f"after {RETRY_AFTER_S} s",
                        headers={"Retry-After": str(RETRY_AFTER_S)},
                    )
                )
                continue
            live.append(item)
        return live

    async def _batch(self, live: list[Item], infer: Callable[[np.ndarray], Any]) -> None:
        """Decode and infer one batch in a worker thread; each request gets its row, or its own decoding error."""
        futures = [future for _, future, _ in live]
        try:
            rows = await asyncio.to_thread(self._decode_and_infer, [prepare for prepare, _, _ in live], infer)
        except Exception as e:  # noqa: BLE001 - every waiting request gets the failure
            rows = [e] * len(live)
        finally:
            self.free.release()
        answered = sum(not isinstance(row, Exception) for row in rows)
        if self.on_batch and answered:
            self.on_batch(answered)
        for future, row in zip(futures, rows):
            if future.done():
                continue
            if isinstance(row, Exception):
                future.set_exception(row)
            else:
                future.set_result(row)

    @staticmethod
    def _decode_and_infer(prepares: list[Prepare], infer: Callable[[np.ndarray], Any]) -> list[Row | Exception]:
        """Each input's row of the model's outputs, or the exception its decoding raised."""
        inputs: list[np.ndarray] = []
        answers: list[Row | Exception | None] = []  # None: decoded, its row to come
        for prepare in prepares:
            try:
                inputs.append(prepare())
                answers.append(None)
            except Exception as e:  # noqa: BLE001 - a bad input fails its own request only
                answers.append(e.with_traceback(None))  # its frames (and their buffers) are not kept
        if not inputs:
            return [answer for answer in answers if answer is not None]
        outputs = infer(inputs[0][None] if len(inputs) == 1 else np.stack(inputs))  # one input: a view, no copy
        rows = iter(zip(*(o if o is not None else [None] * len(inputs) for o in outputs)))
        return [next(rows) if answer is None else answer for answer in answers]
