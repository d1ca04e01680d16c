"""``evaluate(workdir)``: the evaluation protocol the config names.

Embeddings of the train and test splits (every key of the method's ``embed``
output: ``"fused"`` and one per modality) are scored with a linear probe or
kNN on frozen embeddings, or by fine-tuning the encoder with a linear head;
accuracy, macro-F1 and mAP are reported per embedding, for the trained model
and (``eval.random_baseline``) for a randomly initialised one. Results go to
``workdir/eval.json``.
"""

import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from msjax.train import config_lib, diagnostics, fine_tune, probes, runtime
from msjax.train.checkpoint import Checkpointer
from msjax.train.embedding import embed_source, make_embed_fn
from msjax.train.errors import ConfigError, DataError

__all__ = [
  "EVAL_FILE",
  "PROTOCOLS",
  "evaluate",
  "evaluate_variables",
  "format_results",
]

EVAL_FILE = "eval.json"
PROTOCOLS = ("linear_probe", "knn", "fine_tune")


def _score(
  protocol: str,
  train: tuple[np.ndarray, np.ndarray],
  test: tuple[np.ndarray, np.ndarray],
  num_classes: int,
  config: ml_collections.ConfigDict,
) -> dict[str, float]:
  if protocol == "knn":
    result = probes.knn_classify(
      *train,
      *test,
      num_classes=num_classes,
      k=min(config.eval.knn_k, len(train[1])),
      temperature=config.eval.knn_temperature,
    )
  else:
    result = probes.linear_probe(
      *train,
      *test,
      num_classes=num_classes,
      l2=config.eval.probe_l2,
      num_steps=config.eval.probe_steps,
    )
  return {k: float(v) for k, v in result.metrics.items()}


def evaluate_variables(
  method: Any,
  variables: dict,
  config: ml_collections.ConfigDict,
  sources: tuple[Any, Any],
  key: jax.Array,
  embed_fn: Callable[[dict, dict], dict],
) -> tuple[dict[str, dict[str, float]], tuple[dict, np.ndarray] | None]:
  """Scores one model on every selected embedding.

  Args:
    method: the method module.
    variables: the model variables.
    config: the experiment config.
    sources: ``(train_source, test_source)``.
    key: PRNG key (fine-tune head initialisation).
    embed_fn: from :func:`msjax.train.embedding.make_embed_fn`.

  Returns:
    ``({embedding key: {"accuracy", "macro_f1", "map"}}, (test embeddings,
    test labels))``; the second item is None for the fine-tune protocol.
  """
  protocol = config.eval.protocol
  if protocol == "fine_tune":
    scores = fine_tune.fine_tune_all(method, variables, config, sources, key)
    return scores, None
  train_x, train_y = embed_source(embed_fn, variables, sources[0], config)
  test_x, test_y = embed_source(embed_fn, variables, sources[1], config)
  keys = tuple(config.eval.embeddings) or tuple(train_x)
  unknown = [k for k in keys if k not in train_x]
  if unknown:
    raise ConfigError(
      f"eval.embeddings {unknown} not produced by {config.method}.embed"
      f" (has {sorted(train_x)})"
    )
  labelled_train = train_y >= 0
  labelled_test = test_y >= 0
  num_classes = sources[0].num_classes
  scores = {
    name: _score(
      protocol,
      (train_x[name][labelled_train], train_y[labelled_train]),
      (test_x[name][labelled_test], test_y[labelled_test]),
      num_classes,
      config,
    )
    for name in keys
  }
  return scores, (test_x, test_y)


def _restore_variables(
  workdir: str, config: ml_collections.ConfigDict
) -> tuple[int, dict]:
  checkpointer = Checkpointer(workdir, config.checkpoint, read_only=True)
  try:
    found = checkpointer.restore_raw_intact()  # skips damaged checkpoints
    if found is None:
      raise DataError(f"no checkpoint in {workdir}: train first")
    step, state = found
  finally:
    checkpointer.close()
  return step, {"params": state["params"], **state["model_state"]}


def evaluate(
  workdir: str,
  *,
  config: ml_collections.ConfigDict | None = None,
  method: Any = None,
  make_source: runtime.SourceFactory | None = None,
) -> dict[str, Any]:
  """Runs ``config.eval.protocol`` on the latest checkpoint of ``workdir``.

  Args:
    workdir: the run directory (its ``config.json`` is used by default).
    config: the experiment config (default: the saved one).
    method: the method module (default ``METHODS[config.method]``).
    make_source: the data factory (default ``msjax.data.make_source``).

  Returns:
    ``{"protocol", "step", "trained", "random" (or None), "diagnostics"}``,
    also written to ``workdir/eval.json``.
  """
  config = config_lib.restore_config(workdir) if config is None else config
  if config.eval.protocol not in PROTOCOLS:
    raise ConfigError(
      f"eval.protocol {config.eval.protocol!r} is not one of {PROTOCOLS}"
    )
  method = runtime.get_method(config.method) if method is None else method
  sources = (
    runtime.open_source(config.data, config.eval.train_split, make_source),
    runtime.open_source(config.data, config.eval.test_split, make_source),
  )
  for split, source in zip(
    (config.eval.train_split, config.eval.test_split), sources, strict=True
  ):
    if not runtime.has_labels(source):
      raise DataError(
        f"the {split} split of data source {config.data.source!r} has no"
        f" labels: {config.eval.protocol} needs labelled examples (set"
        " eval.protocol='none' for unlabelled data)"
      )
  step, variables = _restore_variables(workdir, config)
  key = jax.random.fold_in(jax.random.key(config.seed), 2**31 - 2)
  embed_fn = make_embed_fn(method, config)
  scores, test_embeddings = evaluate_variables(
    method, variables, config, sources, key, embed_fn
  )
  if test_embeddings is None:
    test_embeddings = embed_source(embed_fn, variables, sources[1], config)
  results: dict[str, Any] = {
    "protocol": config.eval.protocol,
    "step": step,
    "trained": scores,
    "random": None,
    "diagnostics": diagnostics.compute(variables["params"], *test_embeddings),
  }
  if config.eval.random_baseline:
    example = sources[0].get(np.arange(min(2, sources[0].num_examples)))
    random_key = jax.random.fold_in(jax.random.key(config.seed + 1), 0)
    random_variables = jax.jit(lambda k: method.init(k, config, example))(
      random_key
    )
    results["random"], _ = evaluate_variables(
      method, random_variables, config, sources, key, embed_fn
    )
  if jax.process_index() == 0:
    path = pathlib.Path(workdir) / EVAL_FILE
    path.write_text(json.dumps(results, indent=2))
  return results


def format_results(results: dict[str, Any]) -> str:
  """A plain-text table of trained vs random-encoder scores per embedding."""
  lines = [
    f"{results['protocol']} on the test split, checkpoint step"
    f" {results['step']}:",
    f"  {'embedding':<12}{'accuracy':>9}{'macro-F1':>10}{'mAP':>8}"
    f"{'random-encoder acc':>20}",
  ]
  random = results.get("random") or {}
  for name, metrics in results["trained"].items():
    baseline = random.get(name, {}).get("accuracy", float("nan"))
    lines.append(
      f"  {name:<12}{metrics['accuracy']:9.3f}{metrics['macro_f1']:10.3f}"
      f"{metrics['map']:8.3f}{baseline:20.3f}"
    )
  return "\n".join(lines)
