import time

from attacks.progress import LoopMonitor


def test_deadline_stops_the_loop_and_is_remembered():
    m = LoopMonitor(100, "x", deadline=None)
    assert m.tick() is False and not m.timed_out
    m = LoopMonitor(100, "x", deadline=time.monotonic() - 1)
    assert m.tick(5, loss="1.0") is True and m.timed_out
    m.close()


def test_no_bar_without_a_terminal(capsys):
    m = LoopMonitor(10, "quiet", enabled=True)  # pytest captures stderr: not a TTY
    assert m.bar is None
    m.tick(3)
    m.close()
    assert "quiet" not in capsys.readouterr().err
