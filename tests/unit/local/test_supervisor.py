import logging
import signal
import subprocess
import sys
import time

import pytest

from llmops.local.supervisor import NEED_GONE_GRACE_S, Child, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Records the order in which processes were told to stop.
RECORDER = (
    "import signal, sys, time\n"
    "def bye(*_):\n"
    "    open(sys.argv[1], 'a').write(sys.argv[2] + '\\n'); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "time.sleep(60)\n"
)


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv)


def test_a_dead_child_is_restarted_with_backoff() -> None:
    sup = Supervisor()
    child = sup.add(Child("s", lambda: _spawn(SLEEPER)))
    assert child.proc is not None
    child.proc.send_signal(signal.SIGKILL)
    child.proc.wait()
    events = sup.check()
    assert events == ["s exited with code -9"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("restarted" in e for e in events):
        events = sup.check()
        time.sleep(0.05)
    assert any("restarted" in e for e in events)
    assert child.restarts == 1 and child.proc.poll() is None
    sup.stop(grace_s=5)
    assert child.proc.poll() is not None


def test_a_child_without_restart_stays_down() -> None:
    sup = Supervisor()
    child = sup.add(Child("once", lambda: _spawn([sys.executable, "-c", "pass"]), restart=False))
    assert child.proc is not None
    child.proc.wait()
    assert sup.check() == ["once exited with code 0"]
    time.sleep(0.6)
    assert sup.check() == []
    assert sup.status() == [("once", "stopped", 0)]


def test_stop_goes_tier_by_tier_highest_first(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "order.txt"
    sup = Supervisor()
    for name, tier in (("broker", -1), ("store", 0), ("router", 2), ("traces", 1)):
        sup.add(
            Child(
                name,
                lambda n=name: _spawn([sys.executable, "-c", RECORDER, str(log), n]),
                tier=tier,
            )
        )
    time.sleep(0.5)  # let them install their handlers
    sup.stop(grace_s=10)
    assert log.read_text().split() == ["router", "traces", "store", "broker"]
    assert all(state == "stopped" for _, state, _ in sup.status())


def test_a_child_ignoring_sigterm_is_killed_after_the_grace() -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
    ]
    sup = Supervisor()
    child = sup.add(Child("stubborn", lambda: _spawn(stubborn)))
    time.sleep(0.3)
    sup.stop(grace_s=0.5)
    assert child.proc is not None and child.proc.returncode == -9  # killed, not terminated


def _check_until(sup: Supervisor, wanted: str, timeout: float = 10) -> list[str]:
    """Supervise until an event containing `wanted` shows; every event seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(wanted in e for e in seen):
        seen.extend(sup.check())
        time.sleep(0.05)
    return seen


def test_dependents_of_a_child_that_loses_state_are_restarted_after_it() -> None:
    sup = Supervisor()
    broker = sup.add(Child("broker", lambda: _spawn(SLEEPER), tier=-1, loses="every topic"))
    router = sup.add(Child("router", lambda: _spawn(SLEEPER), needs="broker"))
    store = sup.add(Child("store", lambda: _spawn(SLEEPER), tier=0))
    assert broker.proc and router.proc and store.proc
    old_router, old_store = router.proc, store.proc
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait()
    first = sup.check()
    assert first == [
        "broker exited with code -9",
        "broker lost every topic; router stopped until it is back",
    ]
    assert old_router.poll() is not None  # stopped at once, not left on stale positions
    events = first + _check_until(sup, "router restarted")
    restarted = [e.split(" (")[0] for e in events if "restarted" in e]
    assert restarted == ["broker restarted", "router restarted"]  # the broker first
    assert router.proc is not old_router and router.proc.poll() is None
    assert store.proc is old_store and old_store.poll() is None  # it does not need the broker
    assert not any("router exited" in e for e in events)  # our stop is no crash
    sup.stop(grace_s=5)


def test_a_child_waits_while_what_it_needs_cannot_restart() -> None:
    starts: list[str] = []

    def flaky_broker() -> subprocess.Popen[bytes]:
        starts.append("broker")
        if starts.count("broker") == 2:  # the first restart fails (its port taken meanwhile)
            raise RuntimeError("port 19092 is already taken")
        return _spawn(SLEEPER)

    def service() -> subprocess.Popen[bytes]:
        starts.append("service")
        return _spawn(SLEEPER)

    sup = Supervisor()
    broker = sup.add(Child("broker", flaky_broker, tier=-1))
    child = sup.add(Child("service", service, needs="broker"))
    assert broker.proc and child.proc
    for proc in (broker.proc, child.proc):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    events = _check_until(sup, "service restarted")
    assert "broker could not restart: port 19092 is already taken" in events
    # Never started while the broker was down: only after its second restart worked.
    assert starts == ["broker", "service", "broker", "broker", "service"]
    assert child.proc.poll() is None and sup.running("broker")
    sup.stop(grace_s=5)


def test_stop_does_not_wait_the_full_grace_for_children_whose_need_is_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
    ]
    sup = Supervisor()
    broker = sup.add(Child("broker", lambda: _spawn(SLEEPER), restart=False, tier=-1))
    child = sup.add(Child("service", lambda: _spawn(stubborn), needs="broker"))
    assert broker.proc and child.proc
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait()
    time.sleep(0.3)
    with caplog.at_level(logging.WARNING, logger="llmops.local.supervisor"):
        sup.stop(grace_s=20)
    assert child.proc.returncode == -9
    grace = f"{NEED_GONE_GRACE_S:.0f}s"
    assert f"pid {child.proc.pid} did not stop in {grace}; killing it" in caplog.text
