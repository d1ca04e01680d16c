"""The README is the truth: its example runs and CI runs its test command."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
  return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_kernel_tour_runs_and_its_assertions_hold(capsys):
  (tour,) = _blocks("python")
  exec(compile(tour, "README.md", "exec"), {})  # the tour asserts invariants
  printed = capsys.readouterr().out
  values = dict(re.findall(r"(\w+)=([-\d.]+)", printed))
  assert set(values) == {"mpp", "ucl", "fd", "nce", "ntxent", "temporal"}
  assert all(float(v) == float(v) for v in values.values())  # no NaN


def test_ci_runs_the_readme_test_command():
  setup_and_main, setup_and_test = _blocks("bash")
  ci = (ROOT / ".ci" / "run").read_text()
  assert setup_and_test.strip() in ci
  assert "pytest" in setup_and_test
  assert "msjax train --config experiments/protomm.py" in setup_and_main
