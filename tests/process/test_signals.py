"""process/signals.py: signals only set flags and wake the main loop.

SIGTERM and SIGINT ask to stop (and say which), SIGHUP asks to reload, several SIGHUPs
close together count as one reload, and the main loop sleeping in wait() wakes for any
of them, or for wake(), or at its timeout.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from k2hr3_osnl.process.signals import Requests

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@pytest.fixture
def requests() -> Iterator[Requests]:
    """Requests installed in this (main) thread, the test runner's handlers put back."""
    saved = {signum: signal.getsignal(signum) for signum in SIGNALS}
    requests = Requests()
    requests.install()
    yield requests
    signal.set_wakeup_fd(-1)
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_ask_to_stop_and_name_themselves(
    requests: Requests, signum: signal.Signals
) -> None:
    os.kill(os.getpid(), signum)
    requests.wait(10)
    assert requests.stop.is_set()
    assert requests.stop_signal == signum.name
    assert not requests.take_reload()


def test_sighup_asks_to_reload_once_however_many_arrive(requests: Requests) -> None:
    for _ in range(3):
        os.kill(os.getpid(), signal.SIGHUP)
    requests.wait(10)
    assert requests.take_reload()
    assert not requests.take_reload()
    assert not requests.stop.is_set()


def test_a_signal_wakes_a_main_loop_that_sleeps_without_end(requests: Requests) -> None:
    """wait(None) returns only because of the signal: the test would hang otherwise."""
    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGHUP)).start()
    requests.wait(None)
    assert requests.take_reload()


def test_wake_lets_the_main_loop_look_now_without_asking_anything() -> None:
    requests = Requests()
    threading.Timer(0.05, requests.wake).start()
    requests.wait(None)
    assert not requests.stop.is_set()
    assert not requests.take_reload()


def test_a_stop_asked_from_code_wakes_the_main_loop_too() -> None:
    requests = Requests()
    threading.Timer(0.05, requests.request_stop).start()
    requests.wait(None)
    assert requests.stop.is_set()
    assert requests.stop_signal is None


def test_wait_returns_at_its_timeout_with_nothing_asked() -> None:
    requests = Requests()
    requests.wait(0.01)
    assert not requests.stop.is_set()
    assert not requests.take_reload()
