"""Admission on a clock of its own: the finishing rate, the queue depth and the budget decide what is held and what
is shed (the server end to end is in test_serving.py)."""

import contextlib

import pytest

from deepcat.serving.admission import BURST_WINDOW_S, ERROR_WINDOW, Admission
from deepcat.serving.errors import RequestError


def test_admission_admits_everything_until_it_knows_the_finishing_rate():
    """A cold server cannot estimate a wait, so it admits; once the rate is known, a wait over budget is refused."""
    gate = Admission(budget_s=1e-9)
    with gate.admit(1), gate.admit(100):  # nothing finished yet: no rate, no refusal
        assert gate.rate() is None
    assert gate.rate() is not None and gate.inside == 0
    with gate.admit(1):  # idle: admitted whatever the rate
        with pytest.raises(RequestError) as refused:
            with gate.admit(1):
                pass
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}


def test_the_finishing_rate_counts_busy_time_only():
    """Ten inputs finished in 0.1 s of work, then the server sat idle for 1.5 s: its rate is ~100/s, not ~6/s."""
    now = [10.0]
    gate = Admission(budget_s=0.25, clock=lambda: now[0])
    for _ in range(10):  # one input after another, 10 ms of work each
        with gate.admit(1):
            now[0] += 0.01
    now[0] += 1.5
    assert 90 < gate.rate() < 120
    now[0] += 30  # long after: nothing finished lately, the last rate measured stands
    assert 90 < gate.rate() < 120
    with gate.admit(1):  # busy again: the idle 31.5 s are not in the rate
        now[0] += 0.01
    assert 90 < gate.rate() < 120


def test_past_the_queue_depth_inputs_over_the_budget_are_shed():
    """A server finishing 100 inputs a second with a 10 ms budget and a depth of 100: a burst's first 100 are
    held (a wait of up to 1 s), the 101st is refused; once the server is idle again, an input is admitted."""
    now = [0.0]
    gate = Admission(budget_s=0.01, depth=100, clock=lambda: now[0])
    for _ in range(20):  # 100 inputs a second
        with gate.admit(1):
            now[0] += 0.01
    with contextlib.ExitStack() as held:
        for _ in range(100):
            held.enter_context(gate.admit(1))
        with pytest.raises(RequestError, match="10 ms budget") as refused:
            held.enter_context(gate.admit(1))
        assert refused.value.status == 503 and gate.inside == 100
    assert gate.inside == 0
    with gate.admit(1):  # idle again: admitted
        assert gate.inside == 1


def test_a_queue_that_stands_past_the_burst_window_is_held_to_the_budget():
    """The depth admits a burst on a rested server, not a standing queue: a server finishing 100 inputs a second
    with a 250 ms budget holds 50 inputs (a 0.5 s wait) that came at once; while they stand, an input that comes
    once the burst window has passed is refused although the server holds fewer than `depth`. After a calm spell
    (a wait under half the budget for a whole window) the allowance is back."""
    now = [0.0]
    gate = Admission(budget_s=0.25, depth=100, clock=lambda: now[0])
    for _ in range(20):  # 100 inputs a second
        with gate.admit(1):
            now[0] += 0.01
    with contextlib.ExitStack() as held:
        queue = [held.enter_context(contextlib.ExitStack()) for _ in range(50)]
        for stack in queue:  # a burst of 50 on a rested server: admitted whatever its wait
            stack.enter_context(gate.admit(1))
        for _ in range(int(BURST_WINDOW_S / 0.01) + 40):  # sustained: each finish is followed by a new arrival
            now[0] += 0.01
            queue.pop(0).close()
            stack = held.enter_context(contextlib.ExitStack())
            try:
                stack.enter_context(gate.admit(1))
                queue.append(stack)
            except RequestError as refused:
                assert refused.status == 503 and "250 ms budget" in refused.detail
        assert gate.inside <= 25  # held to the budget: 25 inputs are 250 ms of work at 100 a second
        while gate.inside > 10:  # the queue drains to a wait under half the budget...
            now[0] += 0.01
            queue.pop(0).close()
        for _ in range(int(BURST_WINDOW_S / 0.01) + 1):  # ...and stays there for a window: calm
            now[0] += 0.01
            queue.pop(0).close()
            stack = held.enter_context(contextlib.ExitStack())
            stack.enter_context(gate.admit(1))
            queue.append(stack)
        for _ in range(60):  # a burst on the calm server: admitted up to the depth
            held.enter_context(gate.admit(1))
        assert gate.inside == 70


def test_the_estimate_grows_by_how_much_recent_estimates_fell_short():
    """Inputs that waited 50 ms longer than Little's law said make the server add 50 ms to its estimate: at about
    100 inputs a second and a 250 ms budget it holds 5 inputs fewer (50 ms of work) than it did before."""

    def held(shortfall_s: float) -> int:
        now = [0.0]
        gate = Admission(budget_s=0.25, clock=lambda: now[0])
        for _ in range(20):  # about 100 inputs a second, each answered as soon as estimated
            with gate.admit(1):
                now[0] += 0.01
        for _ in range(ERROR_WINDOW):
            gate.note_shortfall(shortfall_s)
        assert gate.margin == pytest.approx(shortfall_s)
        with contextlib.ExitStack() as stack:
            with pytest.raises(RequestError, match="250 ms budget"):
                while True:
                    stack.enter_context(gate.admit(1))
            return gate.inside

    assert held(0.0) - held(0.05) == 5
