"""ProMoBal's trained models scored by other fused prediction rules.

    msjax claims --paper promobal --workdir DIR --seeds 10
    python experiments/sweeps/promobal_inference.py --workdir DIR \
        [--settings default,skewed] [--seeds 10]

Reads the ProMoBal runs of a claims workdir (``DIR/promobal/<setting>/
seed<k>/promobal``: their config and last checkpoint) and scores each model
on the test split with the same weights under several fused prediction
rules, to tell whether a gap to the baselines lies in the representation or
in SaMoBal's inference (SPEC §3.3):

* ``spec``: SPEC §3.3 (per-class candidates by per-dimension hard
  selection; ``z_fus @ P.T``): the suite's headline;
* ``classifiers``: the sum of the unimodal classifiers' logits
  ``sum_m z[m] @ W[m].T + b[m]`` (the models' CE heads; ``predict``'s
  ``"classifiers"``);
* ``prototypes``: ``n(sum_m z[m]) @ P.T`` (the mean embedding against the
  class prototypes);
* ``probe_concat``: the suite's linear probe on ``concat_m z[m]``.

Beside each: the same seed's ``supervised_concat``, ``ogm_ge`` and
``mmpareto`` headlines from the same workdir. Writes
``DIR/promobal_inference.json`` (per setting and seed) and prints mean ±
sample std over seeds and the paired differences.
"""

import argparse
import json
import pathlib
import statistics

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from msjax.claims import scoring
from msjax.evaluation import probes
from msjax.evaluation.embedding import embed_source
from msjax.methods import promobal
from msjax.methods.forward import apply_eval
from msjax.train.evaluation import restore_variables

RULES = ("spec", "classifiers", "prototypes", "probe_concat")
BASELINES = ("supervised_concat", "ogm_ge", "mmpareto")


def _outputs(config: ml_collections.ConfigDict):
  """A jitted ``(variables, batch) -> {rule: logits | features}``."""
  model = promobal._model(config)

  @jax.jit
  def outputs(variables, batch):
    own = promobal.predict(variables, batch, config)
    _, out = apply_eval(model, variables, batch, config, min_modalities=2)
    z, protos = out["z"], out["prototypes"]  # [M, B, D], [C, D]
    mean = jnp.sum(z, axis=0)
    mean = mean / jnp.linalg.norm(mean, axis=-1, keepdims=True)
    return {
      "spec": own["fused"],
      "classifiers": own["classifiers"],
      "prototypes": mean @ protos.T,
      "concat": jnp.concatenate(list(z), axis=-1),
    }

  return outputs


def score_run(run_dir: pathlib.Path) -> dict[str, float]:
  """Test accuracy of every rule for one trained ProMoBal run."""
  config = ml_collections.ConfigDict(
    json.loads((run_dir / "config.json").read_text())
  )
  _, variables = restore_variables(str(run_dir), config)
  train_src, test_src = scoring._sources(config)
  outputs = _outputs(config)
  (train_x, train_y), (test_x, test_y) = (
    embed_source(outputs, variables, source, config)
    for source in (train_src, test_src)
  )
  row = {
    rule: float(np.mean(np.argmax(test_x[rule], axis=-1) == test_y))
    for rule in ("spec", "classifiers", "prototypes")
  }
  probe = probes.linear_probe(
    train_x["concat"],
    train_y,
    test_x["concat"],
    test_y,
    num_classes=int(config.model.num_classes),
    l2=config.eval.probe_l2,
    num_steps=config.eval.probe_steps,
  )
  row["probe_concat"] = float(probe.metrics["accuracy"])
  return row


def _mean_std(values: list[float]) -> str:
  return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--settings", default="default,skewed")
  parser.add_argument("--seeds", type=int, default=10)
  args = parser.parse_args()
  root = pathlib.Path(args.workdir)
  table: dict[str, dict[str, dict[str, float]]] = {}
  for setting in args.settings.split(","):
    for seed in range(args.seeds):
      seed_dir = root / "promobal" / setting / f"seed{seed}"
      row = score_run(seed_dir / "promobal")
      for name in BASELINES:
        score = json.loads((seed_dir / name / "score.json").read_text())
        row[name] = score["scores"]["headline"]
      table.setdefault(setting, {})[str(seed)] = row
      print(setting, seed, {k: round(v, 3) for k, v in row.items()}, flush=True)
  (root / "promobal_inference.json").write_text(json.dumps(table, indent=1))
  for setting, rows in table.items():
    seeds = list(rows.values())
    print(f"\n{setting} ({len(seeds)} seeds):")
    for key in RULES + BASELINES:
      print(f"  {key:<18}{_mean_std([r[key] for r in seeds])}")
    for rule in ("spec", "classifiers"):
      for name in BASELINES:
        diff = [r[rule] - r[name] for r in seeds]
        wins = sum(d > 0 for d in diff)
        print(
          f"  {rule} - {name}: {_mean_std(diff)}"
          f" (ahead on {wins} of {len(diff)})"
        )


if __name__ == "__main__":
  main()
