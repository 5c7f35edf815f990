"""The server's layout: chosen from the cores and the measured cost of a batch, and which session a batch runs on."""

import asyncio
import json
import os
import resource
import threading
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def test_the_layout_comes_from_the_cores_and_the_measured_cost_of_a_batch():
    """max_batch is the largest size at which an input costs at most NEAR more than the cheapest (batches of at most
    MAX_BATCH_S), workers one more than the cores; what the user sets is kept."""
    from deepcat.serving.layout import MAX_BATCH_S, choose_layout

    def infer_costing(per_input):  # seconds per input at each batch size
        def infer(batch):
            time.sleep(per_input[len(batch)] * len(batch))
            return (batch,)

        return infer

    cheapest_at_4 = {1: 0.004, 2: 0.0035, 4: 0.003, 8: 0.0034, 16: 0.0036}
    layout = choose_layout(infer_costing(cheapest_at_4), (3,), cores=2)
    assert (layout.max_batch, layout.workers, layout.cores) == (4, 3, 2)
    assert sorted(layout.seconds_per_input) == [1, 2, 4, 8, 16] and 16 * 0.0036 > MAX_BATCH_S  # 16: the last tried
    slow = {1: 0.03, 2: 0.022, 4: 0.02}  # 4 is cheapest, but a batch of 4 lasts 80 ms: the last tried
    slow_layout = choose_layout(infer_costing(slow), (3,), cores=8)
    assert (slow_layout.max_batch, slow_layout.workers, sorted(slow_layout.seconds_per_input)) == (2, 9, [1, 2, 4])
    near_at_8 = {1: 0.004, 2: 0.0036, 4: 0.0032, 8: 0.00325, 16: 0.00326}  # 16 is near too, but lasts 52 ms
    assert choose_layout(infer_costing(near_at_8), (3,), cores=2).max_batch == 8
    dearer_at_8 = {1: 0.0027, 2: 0.0024, 4: 0.0023, 8: 0.0025, 16: 0.0029}  # measured on an EPYC with AVX-VNNI
    assert choose_layout(infer_costing(dearer_at_8), (3,), cores=2).max_batch == 4
    kept = choose_layout(infer_costing(cheapest_at_4), (3,), cores=2, workers=5, max_batch=7)
    assert (kept.workers, kept.max_batch, kept.seconds_per_input) == (5, 7, {})


def test_on_a_gpu_batches_are_timed_up_to_64_and_each_core_decodes_one():
    from deepcat.serving.layout import LARGEST_GPU, choose_layout

    def infer(batch):  # a GPU: a batch costs about the same whatever its size, until it is large
        time.sleep(0.001 + 0.00002 * len(batch))
        return (batch,)

    layout = choose_layout(infer, (3,), cores=16, device="cuda")
    assert sorted(layout.seconds_per_input) == [1, 2, 4, 8, 16, 32, LARGEST_GPU] and layout.max_batch == LARGEST_GPU
    assert (layout.workers, layout.device) == (16, "cuda")


def test_a_lone_request_runs_on_every_core_and_a_crowd_on_one_core_each():
    from deepcat.serving.batcher import MicroBatcher

    ran = []

    def session(name):
        def infer(batch):
            ran.append((name, len(batch)))
            time.sleep(0.02)
            return (batch,)

        return infer

    async def serve():
        batcher = MicroBatcher(session("one thread"), infer_alone=session("every core"), max_batch=2, workers=3)
        batcher.start()
        try:
            await batcher.submit(lambda: np.zeros(1, np.float32))
            await asyncio.gather(*(batcher.submit(lambda: np.zeros(1, np.float32)) for _ in range(8)))
        finally:
            await batcher.stop()

    asyncio.run(serve())
    assert ran[0] == ("every core", 1)
    crowd = ran[1:]
    assert sum(size for _, size in crowd) == 8 and sum(name == "one thread" for name, _ in crowd) >= len(crowd) - 1


def test_a_lone_client_runs_on_one_thread_after_several_were_used():
    """An input run alone takes the first idle one of the batcher's own threads, not whichever thread a shared pool
    hands out: after two inputs ran alone at once, a lone client's requests all run on one thread (taken in turn
    from asyncio's executor, a lone client's p99 doubled after an overload: `MicroBatcher._alone_thread`)."""
    from deepcat.serving.batcher import MicroBatcher

    threads = []

    def infer(batch):
        threads.append(threading.get_ident())
        time.sleep(0.01)
        return (batch,)

    async def serve():
        batcher = MicroBatcher(infer, infer_alone=infer, max_batch=2, workers=3, few=2)
        batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(lambda: np.zeros(1, np.float32)) for _ in range(2)))
            assert len(set(threads)) == 2  # both ran alone, at once
            threads.clear()
            for _ in range(8):
                await batcher.submit(lambda: np.zeros(1, np.float32))
        finally:
            await batcher.stop()

    asyncio.run(serve())
    assert len(threads) == 8 and len(set(threads)) == 1


def test_a_batch_takes_at_most_its_share_of_the_inputs_in_the_server():
    """With 8 inputs in a server of 3 workers, batches hold at most 2 (8 split into 4 batches; without the share,
    the first batch took 4); with 32 inside, batches are filled to max_batch."""
    from deepcat.serving.batcher import MicroBatcher

    def sizes_with(count):
        sizes, inside = [], 0

        def infer(batch):
            sizes.append(len(batch))
            time.sleep(0.01)
            return (batch,)

        async def serve():
            batcher = MicroBatcher(infer, max_batch=4, workers=3, admitted=lambda: inside)

            async def one():
                nonlocal inside
                inside += 1
                try:
                    await batcher.submit(lambda: np.zeros(1, np.float32))
                finally:
                    inside -= 1

            batcher.start()
            try:
                await asyncio.gather(*(one() for _ in range(count)))
            finally:
                await batcher.stop()

        asyncio.run(serve())
        assert sum(sizes) == count
        return sizes

    assert max(sizes_with(8)) == 2
    assert max(sizes_with(32)) == 4


def test_a_slow_spell_while_the_batches_are_timed_does_not_change_the_layout():
    """The batch sizes take turns and each keeps its best run: four runs in a row twice as slow (a busy neighbour on
    a shared machine) leave max_batch as the clean costs choose it. Timing each size in turn, the spell held every run
    of batch 8 and chose 4."""
    from deepcat.serving.layout import choose_layout

    near_at_8 = {1: 0.004, 2: 0.0036, 4: 0.0032, 8: 0.00325, 16: 0.00326}
    calls = []

    def infer(batch):
        calls.append(len(batch))
        slowed = 2 if 13 <= len(calls) <= 16 else 1
        time.sleep(near_at_8[len(batch)] * len(batch) * slowed)
        return (batch,)

    assert choose_layout(infer, (3,), cores=2).max_batch == 8


def test_onnx_runtime_threads_sleep_soon_after_a_run(tmp_path):
    """ONNX Runtime's pool threads spin after a run, by default for about 40 ms (a core's worth, measured): deepcat's
    sessions stop after SPIN_US, leaving the cores to decoding and the network between requests."""
    from deepcat.inference.runtimes import SPIN_US, open_onnx

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("a pool thread needs a second core")
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal(s, dtype=np.float32), n)
        for n, s in [("w1", (32, 3, 3, 3)), ("w2", (32, 32, 3, 3))]
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["pixels", "w1"], ["a"], pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["a", "w2"], ["b"], pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["b"], ["probabilities"]),
        ],
        "convs",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, None)],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {"classes": ["a", "b"], "input_size": 224, "resize": 224, "interpolation": "bilinear", "mean": [0] * 3}
    model.metadata_props.add(key="deepcat", value=json.dumps({**meta, "std": [1] * 3}))
    path = tmp_path / "convs.onnx"
    onnx.save(model, path)

    session, _ = open_onnx(path, threads=2)
    assert session.get_session_options().get_session_config_entry("session.intra_op.spin_duration_us") == str(SPIN_US)

    def idle_cpu_seconds():  # the process's CPU time over 200 ms in which this test runs nothing
        before = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(0.2)
        after = resource.getrusage(resource.RUSAGE_SELF)
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    floor = idle_cpu_seconds()  # other threads of the test process, if any are busy
    session.run(None, {"pixels": np.zeros((1, 3, 224, 224), np.float32)})
    assert idle_cpu_seconds() - floor < 0.015  # ONNX Runtime's default spinning: 39 ms here
