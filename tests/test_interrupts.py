"""Interruptions held over the steps that must not be cut (starting and waiting for I/O threads), and the I/O
thread pools that use them."""

from __future__ import annotations

import signal
import threading

import pytest

from decloud.core.interrupts import interruptions_held, received_interruption, signals_as_interrupts
from decloud.core.io_threads import IOThreads


def test_a_ctrl_c_inside_the_block_is_raised_when_it_ends(ctrl_c_raises) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt), interruptions_held():
        signal.raise_signal(signal.SIGINT)
        steps.append("after the Ctrl-C")  # the block goes on
        sum(range(1000))  # Python code that would have run the handler
        steps.append("end of the block")
    assert steps == ["after the Ctrl-C", "end of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_inside_the_block_reaches_its_handler_when_it_ends() -> None:
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with interruptions_held():
            signal.raise_signal(signal.SIGTERM)
            sum(range(1000))
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_ctrl_c_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interruptions_held():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_leaving_the_pool_on_an_error_drops_the_work_not_started_and_waits_for_the_work_running() -> None:
    release, started, done = threading.Event(), threading.Event(), []

    def task(number: int) -> None:
        started.set()
        release.wait(5)
        done.append(number)

    with pytest.raises(RuntimeError, match="the caller failed"), IOThreads("decloud-test-pool") as pool:
        futures = [pool.submit(task, number) for number in range(4)]
        started.wait(5)
        threading.Timer(0.2, release.set).start()
        raise RuntimeError("the caller failed")
    assert done == [0]  # the running task ended before the block was left; the three queued ones never ran
    assert [future.cancelled() for future in futures] == [False, True, True, True]
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("decloud-test-pool")]


@pytest.fixture
def sigterm_before():
    return signal.getsignal(signal.SIGTERM)


def test_after_a_first_interruption_the_next_ones_are_ignored_until_the_block_ends(
    ctrl_c_raises, sigterm_before
) -> None:
    cleaned = []
    with signals_as_interrupts():
        try:
            signal.raise_signal(signal.SIGINT)
            sum(range(1000))
        except KeyboardInterrupt:
            signal.raise_signal(signal.SIGINT)  # a second Ctrl-C, then SIGTERM, during the clean-up
            signal.raise_signal(signal.SIGTERM)
            sum(range(1000))
            cleaned.append("clean-up done")
        assert received_interruption() is KeyboardInterrupt
    assert cleaned == ["clean-up done"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is sigterm_before
