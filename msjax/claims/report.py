"""The claims table (markdown) and bar charts (PNG) of a suite directory.

Aggregation: per paper, setting and row label, every score's mean and
sample standard deviation (``ddof=1``; 0 for one seed) over the seeds.
Each paper's table lists the headline accuracy and macro-F1 with the
scores that explain it, then two reference rows -- ``random encoder`` (the
first run's method, freshly initialised) and ``raw input`` (the same probe
on the input arrays) -- and the verdict of every claim.
"""

import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["aggregate", "write", "write_lr_grid"]

_EXTRA_PREFIXES = (
  "probe/",
  "usage/",
  "own/",
  "probe_mod/",
  "sel_rate/",
  "retrieval/",
)


def aggregate(
  per_seed: list[dict[str, float]], seeds: Sequence[int] | None = None
) -> dict[str, dict[str, Any]]:
  """``{metric: {"mean", "std", "n"}}`` over a list of score dicts.

  With ``seeds`` (one per score dict), each metric also keeps ``"by_seed":
  {seed: value}``, so two rows can be compared seed by seed.
  """
  keys = sorted(set().union(*per_seed))
  out = {}
  for key in keys:
    values = np.array([s[key] for s in per_seed if key in s], np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    out[key] = {"mean": float(values.mean()), "std": std, "n": len(values)}
    if seeds is not None:
      out[key]["by_seed"] = {
        int(seed): float(s[key])
        for seed, s in zip(seeds, per_seed, strict=True)
        if key in s
      }
  return out


def _cell(stat: dict[str, float] | None) -> str:
  if stat is None:
    return "—"
  return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _extra_columns(table: dict) -> list[str]:
  keys = sorted(
    {
      k
      for row in table.values()
      for k in row
      if k.startswith(_EXTRA_PREFIXES) and k != "probe/mean"
    }
  )
  return keys


def _chance_lines(table: dict) -> list[str]:
  """The chance level of the ``retrieval/`` columns, when there are any."""
  chance = {
    k.removeprefix("retrieval_chance/"): v["mean"]
    for row in table.values()
    for k, v in row.items()
    if k.startswith("retrieval_chance/")
  }
  if not chance:
    return []
  text = ", ".join(f"{k} {v:.3f}" for k, v in sorted(chance.items()))
  return [
    "",
    "`retrieval/*`: cross-modal retrieval on the test split (aligned"
    f" space; mean of both directions); unrelated embeddings score {text}.",
  ]


def _setting_section(
  paper: str, setting: str, entry: dict
) -> tuple[list[str], dict]:
  suite = entry["suite"]
  seeds = sorted(entry["seeds"])
  table = {}
  walls = []
  for label in suite.order:
    present = [s for s in seeds if label in entry["seeds"][s]]
    runs = [entry["seeds"][s][label] for s in present]
    table[label] = aggregate([r["scores"] for r in runs], present)
    walls += [r["wall_s"] for r in runs]
  randoms = [
    entry["seeds"][s][suite.order[0]].get("random")
    for s in seeds
    if suite.order[0] in entry["seeds"][s]
  ]
  randoms = [r for r in randoms if r]
  extra = _extra_columns(table)
  headline = (
    "own classifier, fused"
    if suite.headline == "own"
    else "linear probe, fused"
    + (
      " (mean over " + ", ".join(suite.tasks) + ")"
      if len(suite.tasks) > 1
      else ""
    )
  )
  minutes = sum(walls) / 60
  lines = [
    f"### {paper} — setting `{setting}` ({len(seeds)} seeds;"
    f" {minutes:.1f} min of runs)",
    "",
    f"Headline: {headline}; mean ± std over seeds.",
    "",
    "| method | accuracy | macro-F1 | " + " | ".join(extra) + " |",
    "|---|---|---|" + "---|" * len(extra),
  ]

  def row(label: str, stats: dict) -> str:
    cells = [stats.get("headline"), stats.get("headline_f1")]
    cells += [stats.get(k) for k in extra]
    return f"| {label} | " + " | ".join(_cell(c) for c in cells) + " |"

  lines += [row(label, stats) for label, stats in table.items()]
  if randoms:
    table["random encoder"] = aggregate(randoms)
    lines.append(
      row(f"random encoder ({suite.order[0]})", table["random encoder"])
    )
  raw = entry.get("raw_input")
  if raw:
    table["raw input"] = {
      k: {"mean": v, "std": 0.0, "n": 1} for k, v in raw.items()
    }
    lines.append(row("raw input", table["raw input"]))
  lines += _chance_lines(table)
  lines += ["", "Claims:", ""]
  verdicts = {}
  for claim in suite.claims:
    try:
      holds, evidence = claim.check(table)
    except KeyError as missing:
      holds, evidence = False, f"not measured ({missing})"
    verdicts[claim.text] = holds
    lines.append(
      f"- {'HOLDS' if holds else 'FAILS'}: {claim.text} — {evidence}"
    )
  lines.append("")
  return lines, {"table": table, "verdicts": verdicts}


def _chart(path: pathlib.Path, paper: str, sections: dict) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(
    1, len(sections), figsize=(6.5 * len(sections), 4.2), squeeze=False
  )
  for ax, (setting, data) in zip(axes[0], sections.items(), strict=True):
    table = data["table"]
    labels = list(table)
    means = [table[k]["headline"]["mean"] for k in labels]
    stds = [table[k]["headline"]["std"] for k in labels]
    colors = [
      "0.6" if k in ("random encoder", "raw input") else "C0" for k in labels
    ]
    ax.bar(range(len(labels)), means, yerr=stds, color=colors, capsize=3)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    low = max(0.0, min(means) - 0.1)
    ax.set_ylim(
      low, min(1.0, max(m + s for m, s in zip(means, stds, strict=True)) + 0.05)
    )
    ax.set_ylabel("headline accuracy")
    ax.set_title(f"{paper}: {setting}")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(
  root: pathlib.Path, results: dict, *, budget: str, seeds: int
) -> pathlib.Path:
  """Writes ``root/claims.md`` and ``root/claims_<paper>.png``.

  Args:
    root: the suite directory.
    results: ``{paper: {setting: {"suite", "seeds": {seed: {label:
      payload}}, "raw_input"}}}`` from the runner.
    budget: the budget name (for the header).
    seeds: seed count (for the header).

  Returns:
    The path of ``claims.md``.
  """
  lines = [
    "# msjax claims suite",
    "",
    f"Budget `{budget}`, {seeds} seeds, generator settings as in"
    " docs/claims.md. Each cell: mean ± sample std over seeds.",
    "",
  ]
  for paper, per_setting in results.items():
    lines += [f"## {paper}", ""]
    sections = {}
    for setting, entry in per_setting.items():
      section, data = _setting_section(paper, setting, entry)
      lines += section
      sections[setting] = data
    chart = root / f"claims_{paper}.png"
    _chart(chart, paper, sections)
    lines += [f"![{paper}]({chart.name})", ""]
  path = root / "claims.md"
  path.write_text("\n".join(lines))
  return path


def write_lr_grid(
  root: pathlib.Path, grid: dict, *, budget: str
) -> pathlib.Path:
  """Writes ``root/lr_grid.md``: each run's headline per learning rate.

  Args:
    root: the suite directory.
    grid: ``{paper: {"seeds": [seed, ...], "rows": [{"name", "label",
      "scores": {rate: {seed: score}}, "headline": {rate: mean}, "best",
      "used"}, ...]}}`` (rates as ``%g`` strings, seeds as strings), rows in
      the suite's order.
    budget: the budget's name (for the title).

  Returns:
    The path written.
  """
  lines = [
    "# msjax claims suite: learning-rate grid",
    "",
    f"Budget `{budget}`, setting `default`; each cell is the run's headline"
    " (the suite's scoring), mean ± sample std over the grid's seeds."
    " **Bold**: the best mean; `used` is the rate the suite trains the run"
    " at.",
  ]
  for paper, entry in grid.items():
    rows = entry["rows"]
    rates = sorted({r for row in rows for r in row["headline"]}, key=float)
    seeds = ", ".join(str(s) for s in entry["seeds"])
    lines += [
      "",
      f"## {paper}",
      "",
      f"Seeds {seeds}.",
      "",
      "| run | " + " | ".join(f"lr {r}" for r in rates) + " | best | used |",
      "|---|" + "---|" * (len(rates) + 2),
    ]
    for row in rows:
      cells = []
      for r in rates:
        values = list(row["scores"].get(r, {}).values())
        if not values:
          cells.append("—")
          continue
        text = f"{row['headline'][r]:.3f}"  # the runner's mean over seeds
        if len(values) > 1:
          text += f" ± {np.std(values, ddof=1):.3f}"
        cells.append(f"**{text}**" if float(r) == row["best"] else text)
      flag = "" if row["used"] == row["best"] else " (not the best)"
      lines.append(
        f"| {row['label']} | "
        + " | ".join(cells)
        + f" | {row['best']:g} | {row['used']:g}{flag} |"
      )
  path = root / "lr_grid.md"
  path.write_text("\n".join(lines) + "\n")
  return path
