"""``report(workdir)``: PNG plots and a short markdown summary of a run.

Plots (those whose data exist): loss curves per term (``loss`` and every
``loss/...`` metric), learning rates, probe accuracy per embedding against
the random-encoder baseline, the prototype-utilisation histogram (ProtoMM),
modality selection rates (``sel_rate/...``) and FC/RS (ProMoBal), and
discriminator metrics (names containing ``disc`` other than learning rates,
InfoMAE: the summed loss, each discriminator's BCE and their accuracy) as
small multiples, one axis per series.

A directory that is not a training workdir (missing, or without metrics,
evaluation or config) is refused with a one-line :class:`ConfigError`.
"""

import json
import math
import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from msjax.train.errors import ConfigError  # noqa: E402
from msjax.train.evaluation import EVAL_FILE  # noqa: E402
from msjax.train.metrics import METRICS_FILE, read_metrics  # noqa: E402

__all__ = ["report", "summary_markdown"]

REPORT_DIR = "report"


def _series(
  records: list[dict[str, Any]], predicate: Any
) -> dict[str, tuple[list[int], list[float]]]:
  names = sorted(
    {k for r in records for k in r if k != "step" and predicate(k)}
  )
  out = {}
  for name in names:
    pairs = [
      (r["step"], float(r[name]))
      for r in records
      if name in r and math.isfinite(float(r[name]))
    ]
    if pairs:
      out[name] = ([p[0] for p in pairs], [p[1] for p in pairs])
  return out


def _line_plot(
  series: dict[str, tuple[list[int], list[float]]],
  path: pathlib.Path,
  title: str,
  ylabel: str,
) -> bool:
  if not series:
    return False
  figure, axes = plt.subplots(figsize=(7, 4))
  for name, (steps, values) in series.items():
    axes.plot(steps, values, label=name)
  axes.set(title=title, xlabel="step", ylabel=ylabel)
  axes.legend(fontsize="small")
  axes.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return True


def _small_multiples(
  series: dict[str, tuple[list[int], list[float]]],
  path: pathlib.Path,
  title: str,
  columns: int = 4,
) -> bool:
  """One small axis per series, in a grid (for many series of one kind)."""
  if not series:
    return False
  columns = min(columns, len(series))
  rows = math.ceil(len(series) / columns)
  figure, grid = plt.subplots(
    rows,
    columns,
    figsize=(3.2 * columns, 2.4 * rows),
    squeeze=False,
    sharex=True,
  )
  for axes, (name, (steps, values)) in zip(
    grid.flat, series.items(), strict=False
  ):
    axes.plot(steps, values)
    axes.set_title(name, fontsize="small")
    axes.tick_params(labelsize="x-small")
    axes.grid(alpha=0.3)
  for axes in list(grid.flat)[len(series) :]:
    axes.set_visible(False)
  for axes in grid[-1]:
    axes.set_xlabel("step", fontsize="small")
  figure.suptitle(title)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return True


def _bar_plot(
  groups: dict[str, dict[str, float]], path: pathlib.Path, title: str
) -> bool:
  """Grouped bars: ``groups[series][category] = value``."""
  if not groups:
    return False
  categories = sorted({c for g in groups.values() for c in g})
  width = 0.8 / len(groups)
  figure, axes = plt.subplots(figsize=(7, 4))
  for index, (name, values) in enumerate(groups.items()):
    axes.bar(
      [i + index * width for i in range(len(categories))],
      [values.get(c, 0.0) for c in categories],
      width,
      label=name,
    )
  axes.set_xticks([i + 0.4 - width / 2 for i in range(len(categories))])
  axes.set_xticklabels(categories)
  axes.set(title=title)
  axes.legend(fontsize="small")
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return True


def _usage_plot(usage: dict[str, list[int]], path: pathlib.Path) -> bool:
  if not usage:
    return False
  figure, axes = plt.subplots(figsize=(7, 4))
  for name, counts in usage.items():
    axes.bar(range(len(counts)), counts, alpha=0.5, label=name)
  axes.set(
    title="prototype utilisation (test set)",
    xlabel="prototype",
    ylabel="assigned windows",
  )
  axes.legend(fontsize="small")
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return True


def summary_markdown(
  records: list[dict[str, Any]], results: dict[str, Any] | None
) -> str:
  """A short markdown summary: last step, final losses, evaluation table."""
  lines = ["# msjax run summary", ""]
  if records:
    last = records[-1]
    lines.append(f"Last logged step: {last['step']}")
    lines.append("")
    for name in sorted(k for k in last if k.startswith("loss")):
      lines.append(f"- final {name}: {float(last[name]):.4f}")
    lines.append("")
  if results:
    lines += [
      f"## Evaluation ({results['protocol']}, step {results['step']})",
      "",
      "| embedding | model | accuracy | macro-F1 | mAP |",
      "|---|---|---|---|---|",
    ]
    for model in ("trained", "random"):
      for name, metrics in (results.get(model) or {}).items():
        lines.append(
          f"| {name} | {model} | {metrics['accuracy']:.3f} |"
          f" {metrics['macro_f1']:.3f} | {metrics['map']:.3f} |"
        )
    lines.append("")
  return "\n".join(lines)


def report(workdir: str) -> list[pathlib.Path]:
  """Writes ``workdir/report/*.png`` and ``workdir/report/summary.md``.

  Args:
    workdir: a training workdir.

  Returns:
    The files written.
  """
  root = pathlib.Path(workdir)
  if not root.is_dir():
    raise ConfigError(f"{workdir} is not a directory: nothing to report")
  if not any(
    (root / name).exists() for name in (METRICS_FILE, EVAL_FILE, "config.json")
  ):
    raise ConfigError(
      f"{workdir} is not a training workdir (no {METRICS_FILE}, {EVAL_FILE}"
      " or config.json): nothing to report"
    )
  out = root / REPORT_DIR
  out.mkdir(parents=True, exist_ok=True)
  records = read_metrics(workdir)
  eval_path = pathlib.Path(workdir) / EVAL_FILE
  results = json.loads(eval_path.read_text()) if eval_path.exists() else None
  written = []

  def keep(done: bool, name: str) -> None:
    if done:
      written.append(out / name)

  losses = _series(
    records,
    lambda k: (k == "loss" or k.startswith("loss/")) and "disc" not in k,
  )
  keep(_line_plot(losses, out / "loss.png", "loss terms", "loss"), "loss.png")
  rates = _series(records, lambda k: k.startswith("lr"))
  keep(
    _line_plot(rates, out / "learning_rate.png", "learning rate", "lr"),
    "learning_rate.png",
  )
  selection = _series(records, lambda k: k.startswith("sel_rate"))
  keep(
    _line_plot(
      selection, out / "selection_rate.png", "modality selection rate", "rate"
    ),
    "selection_rate.png",
  )
  discriminators = _series(
    records, lambda k: "disc" in k and not k.startswith("lr")
  )
  keep(
    _small_multiples(
      discriminators, out / "discriminators.png", "discriminators"
    ),
    "discriminators.png",
  )
  if results:
    accuracy = {
      model: {k: v["accuracy"] for k, v in results[model].items()}
      for model in ("trained", "random")
      if results.get(model)
    }
    keep(
      _bar_plot(
        accuracy, out / "probe_accuracy.png", f"{results['protocol']} accuracy"
      ),
      "probe_accuracy.png",
    )
    diagnostics = results.get("diagnostics") or {}
    keep(
      _usage_plot(
        diagnostics.get("prototype_usage", {}), out / "prototype_usage.png"
      ),
      "prototype_usage.png",
    )
    geometry = diagnostics.get("geometry", {})
    fc_rs = {
      measure: {k: v[measure] for k, v in geometry.items()}
      for measure in ("fc", "rs")
    }
    keep(
      bool(geometry)
      and _bar_plot(
        fc_rs, out / "fc_rs.png", "feature compactness / separability"
      ),
      "fc_rs.png",
    )
  summary = out / "summary.md"
  summary.write_text(summary_markdown(records, results))
  written.append(summary)
  return written
