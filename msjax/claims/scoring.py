"""Scores of one trained run, as the claims table reads them.

Every run is scored on the test split of its base data (a pair-ratio
section is evaluated on its base source, as ``msjax eval`` does):

* ``probe/<task>``: linear-probe accuracy of the fused embedding for every
  label task of the suite (one embedding, several label sets);
  ``probe_f1/<task>`` its macro-F1; ``probe_mod/<m>``: the probe on
  modality ``m``'s own embedding (first task);
* ``own/<key>``, ``own_f1/<key>``: the method's own classifier, when it has
  one (``predict``);
* ``usage/<m>``: for ProtoMM, the entropy (nats) of the mean soft prototype
  assignment ``mean_b softmax(z_m[b] . c / tau)`` on the test split -- ``log
  K`` when every prototype is used, 0 when one takes everything;
* ``retrieval/<metric>``: for a method with an aligned space (``align``:
  ProtoMM, CLIP/CMC, SLIP, InfoMAE stage 2), cross-modal retrieval on the
  labelled test windows (:func:`msjax.train.evaluation.retrieval_scores`,
  with `data.task`'s labels), averaged over modality pairs:
  ``class_map`` (class-level mean average precision) and ``instance_r1``
  (the same window's other modality ranked first); ``retrieval_chance/
  <metric>`` is the same metric for unrelated embeddings;
* ``headline`` / ``headline_f1``: the suite's headline -- the mean over
  tasks of the fused probe, or the own classifier's fused accuracy.

``raw_input_scores`` gives the same probe on the input arrays (the
``raw input`` row of every table).
"""

from typing import Any

import jax
import ml_collections
import numpy as np

from msjax.data import make_source, synthetic
from msjax.evaluation import probes
from msjax.evaluation.embedding import embed_source, make_embed_fn
from msjax.methods import Method, protomm
from msjax.train import evaluation

__all__ = [
  "RETRIEVAL_METRICS",
  "random_variables",
  "raw_input_scores",
  "score_variables",
]


def _sources(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
  data = evaluation.eval_data_config(config.data)
  return make_source(data, "train"), make_source(data, "test")


def _probe(
  train: tuple[np.ndarray, np.ndarray],
  test: tuple[np.ndarray, np.ndarray],
  num_classes: int,
  config: ml_collections.ConfigDict,
) -> dict[str, float]:
  result = probes.linear_probe(
    *train,
    *test,
    num_classes=num_classes,
    l2=config.eval.probe_l2,
    num_steps=config.eval.probe_steps,
  )
  return {k: float(v) for k, v in result.metrics.items()}


def _task_scores(
  features: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
  sources: tuple[Any, Any],
  tasks: tuple[str, ...],
  config: ml_collections.ConfigDict,
) -> dict[str, float]:
  train_x, test_x = features
  out: dict[str, float] = {}
  for k, task in enumerate(tasks):
    labels = (sources[0].labels(task), sources[1].labels(task))
    num_classes = synthetic.TASKS[task]
    keys = ["fused"] + ([m for m in config.data.modalities] if k == 0 else [])
    for key in keys:
      if key not in train_x:
        continue
      scores = _probe(
        (train_x[key], labels[0]), (test_x[key], labels[1]), num_classes, config
      )
      if key == "fused":
        out[f"probe/{task}"] = scores["accuracy"]
        out[f"probe_f1/{task}"] = scores["macro_f1"]
      else:
        out[f"probe_mod/{key}"] = scores["accuracy"]
  out["probe/mean"] = float(np.mean([out[f"probe/{t}"] for t in tasks]))
  out["probe_f1/mean"] = float(np.mean([out[f"probe_f1/{t}"] for t in tasks]))
  return out


def _usage(
  variables: dict, config: ml_collections.ConfigDict, source: Any
) -> dict[str, float]:
  """ProtoMM's per-modality entropy of the mean soft assignment."""

  @jax.jit
  def assign(batch):
    return protomm.soft_assignments(variables, batch, config)

  sums: dict[str, np.ndarray] = {}
  count = 0
  size = config.eval.batch_size
  for start in range(0, source.num_examples, size):
    idx = np.arange(start, min(start + size, source.num_examples))
    out = jax.device_get(assign(source.get(idx)))
    for m, p in out.items():
      sums[m] = sums.get(m, 0.0) + np.asarray(p).sum(0)
    count += len(idx)
  result = {}
  for m, total in sums.items():
    mean = total / count
    result[f"usage/{m}"] = float(
      -np.sum(mean * np.log(np.maximum(mean, 1e-30)))
    )
  return result


RETRIEVAL_METRICS = ("class_map", "instance_r1")


def _retrieval(
  method: Method,
  variables: dict,
  config: ml_collections.ConfigDict,
  source: Any,
) -> dict[str, float]:
  """``retrieval/<metric>`` and ``retrieval_chance/<metric>`` (or nothing)."""
  align_fn = evaluation.make_align_fn(method, config)
  table = evaluation.retrieval_scores(align_fn, variables, config, source)
  if table is None:
    return {}
  chance = table.pop("chance")
  out = {}
  for metric in RETRIEVAL_METRICS:
    out[f"retrieval/{metric}"] = float(
      np.mean([pair[metric] for pair in table.values()])
    )
    out[f"retrieval_chance/{metric}"] = float(chance[metric])
  return out


def score_variables(
  method: Method,
  variables: dict,
  config: ml_collections.ConfigDict,
  tasks: tuple[str, ...],
  headline: str,
) -> dict[str, float]:
  """Every score of one model (see the module docstring).

  Args:
    method: the method.
    variables: the model variables.
    config: the run's config.
    tasks: label tasks of the suite.
    headline: ``"probe"`` or ``"own"``.

  Returns:
    A flat ``{name: float}``.
  """
  sources = _sources(config)
  embed_fn = make_embed_fn(method, config)
  features = tuple(
    embed_source(embed_fn, variables, src, config)[0] for src in sources
  )
  out = _task_scores(features, sources, tasks, config)
  own = evaluation.own_classifier_scores(method, variables, config, sources[1])
  for key, metrics in (own or {}).items():
    out[f"own/{key}"] = metrics["accuracy"]
    out[f"own_f1/{key}"] = metrics["macro_f1"]
  if method is protomm.METHOD:
    out.update(_usage(variables, config, sources[1]))
  out.update(_retrieval(method, variables, config, sources[1]))
  if headline == "own" and own:
    out["headline"], out["headline_f1"] = out["own/fused"], out["own_f1/fused"]
  else:
    out["headline"], out["headline_f1"] = (
      out["probe/mean"],
      out["probe_f1/mean"],
    )
  return out


def raw_input_scores(
  config: ml_collections.ConfigDict, tasks: tuple[str, ...]
) -> dict[str, float]:
  """The fused probe on the input arrays, scored like a run (``headline``)."""
  sources = _sources(config)
  features = tuple(evaluation.raw_features(src, config)[0] for src in sources)
  out = _task_scores(features, sources, tasks, config)
  out["headline"], out["headline_f1"] = out["probe/mean"], out["probe_f1/mean"]
  return out


def random_variables(
  method: Method, config: ml_collections.ConfigDict, key: jax.Array
) -> dict:
  """A randomly initialised model of the run's config."""
  source = _sources(config)[0]
  example = source.get(np.arange(min(2, source.num_examples)))
  return jax.jit(lambda k: method.init(k, config, example))(key)
