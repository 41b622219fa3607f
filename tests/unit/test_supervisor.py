import signal
import subprocess
import sys
import time

from llmops.supervisor import Child, Supervisor

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
