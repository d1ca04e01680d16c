"""``evaluate(workdir)``: the evaluation protocol the config names.

Embeddings of the train and test splits (every key of the method's ``embed``
output: ``"fused"`` and one per modality) are scored with a linear probe or
kNN on frozen embeddings, or by fine-tuning the encoder with a linear head;
accuracy, macro-F1 and mAP are reported per embedding, for the trained model
and (``eval.random_baseline``) for a randomly initialised one. Two reference
rows come with every table: ``raw_input``, the same probe on the model's
input arrays (the standardised raw windows, or the spectrograms an encoder
reads), so a learned encoder that loses to its own input is visible; and,
for methods with a classifier of their own (an optional ``predict(variables,
batch, config) -> {"fused": logits [B, C], <modality>: logits}``), ``own``,
the scores of that classifier on the test split. A pair-ratio data section
(``data.source = "paired"``) is evaluated on its base source: pairing is a
training-time choice, the probe uses every labelled window. Results go to
``workdir/eval.json``.
"""

import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from msjax.evaluation import diagnostics, fine_tune, probes
from msjax.evaluation.classification_metrics import classification_metrics
from msjax.evaluation.embedding import (
  embed_columns,
  embed_source,
  make_embed_fn,
)
from msjax.evaluation.retrieval import retrieval_table
from msjax.methods.interface import Method
from msjax.train import config_lib, runtime
from msjax.train.checkpoint import Checkpointer
from msjax.train.errors import ConfigError, DataError

__all__ = [
  "EVAL_FILE",
  "PROTOCOLS",
  "eval_data_config",
  "evaluate",
  "evaluate_variables",
  "format_results",
  "own_classifier_scores",
  "raw_features",
  "raw_input_scores",
  "restore_variables",
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


def eval_data_config(
  data: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """The data section evaluation reads: a pair-ratio section's base source.

  Pair ratios limit which windows train the cross-modal terms; the probe,
  the raw-input row and the random encoder all read every labelled window
  of the base source, so label scarcity is not mixed into pair scarcity.
  """
  return data.base if data.source == "paired" else data


def raw_features(
  source: Any, config: ml_collections.ConfigDict
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """The source's input arrays flattened per row: ``{m: [N, D_m]}``, fused.

  ``"fused"`` concatenates the modalities in ``data.modalities`` order.
  """
  count = source.num_examples
  limit = config.eval.max_examples
  indices = np.arange(min(count, limit) if limit else count)
  size = config.eval.batch_size
  parts: dict[str, list[np.ndarray]] = {}
  labels = []
  for start in range(0, len(indices), size):
    batch = source.get(indices[start : start + size])
    for m in config.data.modalities:
      x = np.asarray(batch["signals"][m], np.float32)
      parts.setdefault(m, []).append(x.reshape(x.shape[0], -1))
    labels.append(np.asarray(batch["label"]))
  out = {m: np.concatenate(v) for m, v in parts.items()}
  out["fused"] = np.concatenate([out[m] for m in config.data.modalities], 1)
  return out, np.concatenate(labels)


def raw_input_scores(
  config: ml_collections.ConfigDict, sources: tuple[Any, Any]
) -> dict[str, dict[str, float]]:
  """The evaluation protocol's probe on the raw input arrays.

  Args:
    config: the experiment config (``eval`` section, ``data.modalities``).
    sources: ``(train_source, test_source)``.

  Returns:
    ``{"fused" | <modality>: {"accuracy", "macro_f1", "map"}}`` (the
    linear probe, or kNN when that is the protocol; the fine-tune protocol
    reports the linear probe here).
  """
  protocol = "knn" if config.eval.protocol == "knn" else "linear_probe"
  train_x, train_y = raw_features(sources[0], config)
  test_x, test_y = raw_features(sources[1], config)
  keep_train, keep_test = train_y >= 0, test_y >= 0
  return {
    name: _score(
      protocol,
      (train_x[name][keep_train], train_y[keep_train]),
      (test_x[name][keep_test], test_y[keep_test]),
      sources[0].num_classes,
      config,
    )
    for name in train_x
  }


def own_classifier_scores(
  method: Method,
  variables: dict,
  config: ml_collections.ConfigDict,
  test_source: Any,
) -> dict[str, dict[str, float]] | None:
  """Test scores of the method's own classifier, or None if it has none.

  Args:
    method: the method (its optional ``predict`` gives logits).
    variables: the model variables.
    config: the experiment config.
    test_source: the test split.

  Returns:
    ``{key: {"accuracy", "macro_f1", "map"}}`` for every key of the
    method's ``predict`` (``"fused"``, usually each modality, and any other
    prediction it offers), or None.
  """
  predict = method.predict
  if predict is None:
    return None
  predict_fn = jax.jit(lambda v, b: predict(v, b, config))
  logits, labels = embed_source(predict_fn, variables, test_source, config)
  keep = labels >= 0
  return {
    name: classification_metrics(labels[keep], scores[keep])
    for name, scores in logits.items()
  }


def make_align_fn(
  method: Method, config: ml_collections.ConfigDict
) -> Callable[[dict, dict], dict] | None:
  """``jit(align)`` for one config (None: the method aligns nothing)."""
  align = method.align
  if align is None:
    return None
  return jax.jit(lambda variables, batch: align(variables, batch, config))


def retrieval_scores(
  align_fn: Callable[[dict, dict], dict] | None,
  variables: dict,
  config: ml_collections.ConfigDict,
  test_source: Any,
) -> dict[str, dict[str, float]] | None:
  """Cross-modal retrieval on the test split, or None if nothing is aligned.

  Args:
    align_fn: from :func:`make_align_fn` (reused across models).
    variables: the model variables.
    config: the experiment config.
    test_source: the test split (labelled windows; ``session`` ids when
      the source has them).

  Returns:
    :func:`msjax.evaluation.retrieval.retrieval_table` of the labelled
    test windows, or None (no ``align_fn``, or fewer than two aligned
    modalities in this config).
  """
  if align_fn is None:
    return None
  aligned, columns = embed_columns(
    align_fn, variables, test_source, config, ("label", "session")
  )
  if len(aligned) < 2:
    return None
  keep = columns["label"] >= 0
  groups = columns.get("session")
  return retrieval_table(
    {m: x[keep] for m, x in aligned.items()},
    columns["label"][keep],
    None if groups is None else groups[keep],
  )


def evaluate_variables(
  method: Method,
  variables: dict,
  config: ml_collections.ConfigDict,
  sources: tuple[Any, Any],
  key: jax.Array,
  embed_fn: Callable[[dict, dict], dict],
) -> tuple[dict[str, dict[str, float]], tuple[dict, np.ndarray] | None]:
  """Scores one model on every selected embedding.

  Args:
    method: the method.
    variables: the model variables.
    config: the experiment config.
    sources: ``(train_source, test_source)``.
    key: PRNG key (fine-tune head initialisation).
    embed_fn: from :func:`msjax.evaluation.embedding.make_embed_fn`.

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


def restore_variables(
  workdir: str, config: ml_collections.ConfigDict
) -> tuple[int, dict]:
  """``(step, variables)`` of the latest checkpoint in ``workdir``."""
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
  method: Method | None = None,
  make_source: runtime.SourceFactory | None = None,
) -> dict[str, Any]:
  """Runs ``config.eval.protocol`` on the latest checkpoint of ``workdir``.

  Args:
    workdir: the run directory (its ``config.json`` is used by default).
    config: the experiment config (default: the saved one).
    method: the method (default ``METHODS[config.method]``).
    make_source: the data factory (default ``msjax.data.make_source``).

  Returns:
    ``{"protocol", "step", "trained", "random" (or None), "raw_input",
    "own" (the method's own classifier, or None), "retrieval" and
    "retrieval_random" (cross-modal retrieval of the aligned space and of
    the random encoder, or None), "diagnostics"}``, also written to
    ``workdir/eval.json``.
  """
  config = config_lib.restore_config(workdir) if config is None else config
  if config.eval.protocol not in PROTOCOLS:
    raise ConfigError(
      f"eval.protocol {config.eval.protocol!r} is not one of {PROTOCOLS}"
    )
  method = runtime.get_method(config.method) if method is None else method
  data = eval_data_config(config.data)
  sources = (
    runtime.open_source(data, config.eval.train_split, make_source),
    runtime.open_source(data, config.eval.test_split, make_source),
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
  step, variables = restore_variables(workdir, config)
  key = jax.random.fold_in(jax.random.key(config.seed), 2**31 - 2)
  embed_fn = make_embed_fn(method, config)
  align_fn = make_align_fn(method, config)
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
    "raw_input": raw_input_scores(config, sources),
    "own": own_classifier_scores(method, variables, config, sources[1]),
    "retrieval": retrieval_scores(align_fn, variables, config, sources[1]),
    "retrieval_random": None,
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
    if results["retrieval"] is not None:
      results["retrieval_random"] = retrieval_scores(
        align_fn, random_variables, config, sources[1]
      )
  if jax.process_index() == 0:
    path = pathlib.Path(workdir) / EVAL_FILE
    path.write_text(json.dumps(results, indent=2))
  return results


def format_results(results: dict[str, Any]) -> str:
  """A plain-text table of trained vs random-encoder scores per embedding.

  Below it: the raw-input probe per embedding key it has, and the model's
  own classifier when it has one.
  """
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
  for title, rows in (
    ("raw input: the same probe on the input arrays", results.get("raw_input")),
    ("own classifier of the model", results.get("own")),
  ):
    if not rows:
      continue
    lines.append(f"  {title}:")
    for name, metrics in rows.items():
      lines.append(
        f"  {name:<12}{metrics['accuracy']:9.3f}"
        f"{metrics['macro_f1']:10.3f}{metrics['map']:8.3f}"
      )
  lines += _retrieval_lines(results)
  return "\n".join(lines)


_RETRIEVAL_COLUMNS = (
  ("instance_r1", "inst R@1"),
  ("instance_r5", "inst R@5"),
  ("recording_p1", "rec P@1"),
  ("class_p1", "class P@1"),
  ("class_map", "class mAP"),
)


def _retrieval_lines(results: dict[str, Any]) -> list[str]:
  """The cross-modal retrieval rows of :func:`format_results`."""
  table = results.get("retrieval")
  if not table:
    return []
  random = results.get("retrieval_random") or {}
  rows = [(pair, m) for pair, m in table.items() if pair != "chance"]
  rows += [
    (f"{pair} random", m) for pair, m in random.items() if pair != "chance"
  ]
  rows.append(("chance", table["chance"]))
  columns = [(k, t) for k, t in _RETRIEVAL_COLUMNS if k in table["chance"]]
  lines = [
    "  cross-modal retrieval on the test split (aligned space, both"
    " directions):",
    f"  {'pair':<20}" + "".join(f"{t:>11}" for _, t in columns),
  ]
  for name, metrics in rows:
    lines.append(
      f"  {name:<20}" + "".join(f"{metrics[k]:11.3f}" for k, _ in columns)
    )
  return lines
