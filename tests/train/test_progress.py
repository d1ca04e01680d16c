"""Progress display and the training clock."""

import io

from msjax.train.progress import Chrono, Progress


class _Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_chrono_counts_only_running_time(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr("msjax.train.progress.time.perf_counter", clock)
  chrono = Chrono(elapsed=5.0)
  clock.now += 30.0  # compilation: clock not running
  chrono.resume()
  clock.now += 2.0
  chrono.tick(4)
  chrono.pause()
  clock.now += 50.0  # evaluation pause
  chrono.resume()
  clock.now += 2.0
  chrono.tick(4)
  assert chrono.steps_per_second() == 2.0
  chrono.pause()
  assert chrono.elapsed == 9.0


def test_log_lines_when_not_a_terminal(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr("msjax.train.progress.time.perf_counter", clock)
  stream = io.StringIO()
  progress = Progress(total_steps=100, start_step=0, stream=stream)
  assert progress.mode == "log"
  chrono = Chrono()
  chrono.resume()
  clock.now += 4.0
  chrono.tick(20)
  progress.update(20, {"loss": 1.25}, chrono)
  assert stream.getvalue() == (
    "step 20/100  loss 1.2500  5.00 steps/s  ETA 16s\n"
  )
  silent = io.StringIO()
  Progress(total_steps=1, start_step=0, enabled=False, stream=silent).update(
    1, {"loss": 0.0}, chrono
  )
  assert silent.getvalue() == ""


def test_no_rate_before_any_step_was_measured(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr("msjax.train.progress.time.perf_counter", clock)
  stream = io.StringIO()
  progress = Progress(total_steps=4, start_step=0, stream=stream)
  chrono = Chrono()
  clock.now += 30.0  # compiling the first step: the clock is not running
  progress.update(1, {"loss": 2.0}, chrono)
  chrono.resume()
  clock.now += 0.5
  chrono.tick()
  progress.update(2, {"loss": 1.5}, chrono)
  assert stream.getvalue().splitlines() == [
    "step 1/4  loss 2.0000",
    "step 2/4  loss 1.5000  2.00 steps/s  ETA 1s",
  ]
