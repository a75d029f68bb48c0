"""The default thread count follows what is running now, not the 1-minute load average."""
import os
import subprocess
import sys

import pytest

from privcodec import threads


def test_privcodec_threads_overrides_the_default(monkeypatch):
    monkeypatch.setenv("PRIVCODEC_THREADS", "3")
    assert threads.threads() == 3


@pytest.mark.parametrize("value", ["0", "-2", "many", ""])
def test_a_bad_privcodec_threads_falls_back_to_the_idle_cores(monkeypatch, value):
    monkeypatch.setenv("PRIVCODEC_THREADS", value)
    monkeypatch.setattr(threads, "default_threads", lambda: 5)
    assert threads.threads() == 5


def test_a_high_load_average_left_by_finished_work_does_not_cost_threads(monkeypatch):
    # a command that just ended leaves the 1-minute average high on an idle machine
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    monkeypatch.setattr(threads, "_runnable_others", lambda: 0)
    monkeypatch.setattr(threads, "_cores", lambda: 4)
    assert threads.default_threads() == 4


def test_cores_busy_now_are_left_alone(monkeypatch):
    monkeypatch.setattr(threads, "_cores", lambda: 4)
    monkeypatch.setattr(threads, "_runnable_others", lambda: 3)
    assert threads.default_threads() == 1
    monkeypatch.setattr(threads, "_runnable_others", lambda: 9)
    assert threads.default_threads() == 1          # never fewer than one
    monkeypatch.setattr(threads, "_cores", lambda: 64)
    monkeypatch.setattr(threads, "_runnable_others", lambda: 0)
    assert threads.default_threads() == threads.MAX_THREADS


def test_without_proc_the_load_average_is_the_measure(monkeypatch):
    monkeypatch.setattr(threads, "_runnable_others", lambda: None)
    monkeypatch.setattr(threads, "_cores", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.2, 1.0, 1.0))
    assert threads.default_threads() == 2


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="needs /proc")
def test_a_spinning_neighbour_is_counted():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time
        time.sleep(0.3)
        assert threads._runnable_others() >= 1
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs /proc")
def test_our_own_busy_threads_are_not_a_neighbour():
    import hashlib
    import threading
    import time

    stop = threading.Event()
    data = bytes(1 << 22)

    def hash_without_the_gil():
        while not stop.is_set():
            hashlib.sha256(data).digest()

    worker = threading.Thread(target=hash_without_the_gil)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while threads._own_runnable() < 2:      # this thread and the worker, both running
            assert time.monotonic() < deadline
    finally:
        stop.set()
        worker.join()
