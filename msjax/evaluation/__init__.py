"""Evaluation protocols: probes, fine-tuning, metrics, embeddings, diagnostics.

Pure functions over embeddings, labels and a method's variables; nothing here
reads checkpoints or configs' run sections (``msjax.train.evaluation`` runs
these protocols on a workdir's latest checkpoint).

* :mod:`~msjax.evaluation.probes`: linear probe (L-BFGS softmax regression)
  and cosine kNN on frozen embeddings;
* :mod:`~msjax.evaluation.softmax_regression`: the probe's head and trainer;
* :mod:`~msjax.evaluation.fine_tune`: encoder and linear head trained end to
  end;
* :mod:`~msjax.evaluation.classification_metrics`: accuracy, macro-F1, mAP;
* :mod:`~msjax.evaluation.embedding`: a method's ``embed`` over a source;
* :mod:`~msjax.evaluation.diagnostics`: prototype usage and FC/RS geometry.
"""

from msjax.evaluation.classification_metrics import (
  accuracy,
  macro_f1,
  mean_average_precision,
)
from msjax.evaluation.embedding import embed_source, make_embed_fn
from msjax.evaluation.fine_tune import fine_tune_all, fine_tune_one
from msjax.evaluation.probes import knn_classify, linear_probe

__all__ = [
  "accuracy",
  "embed_source",
  "fine_tune_all",
  "fine_tune_one",
  "knn_classify",
  "linear_probe",
  "macro_f1",
  "make_embed_fn",
  "mean_average_precision",
]
