"""Progress reporting: a bar on a terminal, plain log lines otherwise.

Steps per second and the ETA leave out compilation and pauses (evaluation,
checkpoint waits): the clock runs only between :meth:`Chrono.resume` and
:meth:`Chrono.pause`, and the loop pauses it only once the steps it counted
have finished on the device. Before any step was measured (a log right after
the compiling first step) no rate or ETA is shown.
"""

import sys
import time
from typing import Any, TextIO

import tqdm

__all__ = ["Chrono", "Progress"]


class Chrono:
  """Measures training time only, for steps/s and ETA.

  Attributes:
    elapsed: seconds of training counted so far (restored on resume).
    steps: steps counted while the clock ran.
  """

  def __init__(self, elapsed: float = 0.0) -> None:
    """Starts paused with ``elapsed`` seconds already counted."""
    self.elapsed = elapsed
    self.steps = 0
    self._measured = 0.0
    self._since: float | None = None

  def resume(self) -> None:
    """Starts (or restarts) the clock."""
    if self._since is None:
      self._since = time.perf_counter()

  def pause(self) -> None:
    """Stops the clock, adding the time since :meth:`resume`."""
    if self._since is not None:
      delta = time.perf_counter() - self._since
      self.elapsed += delta
      self._measured += delta
      self._since = None

  def tick(self, steps: int = 1) -> None:
    """Counts ``steps`` finished while the clock ran."""
    self.steps += steps

  def steps_per_second(self) -> float:
    """Steady-state rate (0 before anything was measured)."""
    running = self._measured
    if self._since is not None:
      running += time.perf_counter() - self._since
    return self.steps / running if running > 0 and self.steps else 0.0


class Progress:
  """Shows step, loss, steps/s and ETA.

  ``mode``: "bar" (tqdm), "log" (a line every ``log_every`` steps), "off",
  or "auto" (bar when ``stream`` is a terminal, else log).
  """

  def __init__(
    self,
    *,
    total_steps: int,
    start_step: int,
    mode: str = "auto",
    enabled: bool = True,
    stream: TextIO | None = None,
  ) -> None:
    """Creates the display (nothing when ``enabled`` is False)."""
    self.stream = sys.stderr if stream is None else stream
    if mode == "auto":
      mode = "bar" if self.stream.isatty() else "log"
    self.mode = mode if enabled else "off"
    self.total = total_steps
    self._bar = None
    if self.mode == "bar":
      self._bar = tqdm.tqdm(
        total=total_steps,
        initial=start_step,
        file=self.stream,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} {postfix}",
      )

  def message(self, text: str) -> None:
    """Prints a line (above the bar if there is one)."""
    if self.mode == "off":
      return
    if self._bar is not None:
      self._bar.write(text, file=self.stream)
    else:
      print(text, file=self.stream, flush=True)

  def update(self, step: int, metrics: dict[str, Any], chrono: Chrono) -> None:
    """Reports reaching ``step`` with the latest metrics."""
    rate = chrono.steps_per_second()
    loss = float(metrics.get("loss", float("nan")))
    # Nothing measured yet (only the compiling first step ran): no rate.
    speed = []
    if rate > 0:
      speed = [f"{rate:.2f} steps/s", f"ETA {(self.total - step) / rate:.0f}s"]
    if self.mode == "bar":
      self._bar.n = step
      self._bar.set_postfix_str(
        ", ".join([f"loss {loss:.4f}", *speed]), refresh=False
      )
      self._bar.refresh()
    elif self.mode == "log":
      parts = [f"step {step}/{self.total}", f"loss {loss:.4f}", *speed]
      self.message("  ".join(parts))

  def close(self) -> None:
    """Closes the bar."""
    if self._bar is not None:
      self._bar.close()
