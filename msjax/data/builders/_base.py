"""Shared machinery of the msjax TFDS builders (array_record, no TensorFlow).

Every builder is a ``tfds.core.GeneratorBasedBuilder`` written with
``file_format="array_record"`` and read back with ``as_data_source()``, neither
of which imports TensorFlow. Builders are not registered in TFDS's global
registry (``skip_registration=True``); msjax picks them from the explicit dict
in ``msjax.data.builders``.

Options (window length, rates, positions, ...) come from ``config.data``; a
builder config named by a hash of the options keeps differently-prepared copies
apart under ``data_dir/<name>/<options hash>/<version>``. Raw files are read
from ``manual_dir``; when they are missing, ``MissingDataError`` says in one
line which files are expected, where to obtain them and where to put them.

Example features (one record per window)::

  {"signals": {modality: float32 [C, T] or [C, F, N]},
   "label": ClassLabel, "session": int32, "time_index": int32,
   <extra int32 features, e.g. "subject", "domain">}
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from msjax.data.errors import MissingDataError
from msjax.data.prepare_lock import prepare_once
from msjax.data.records import RecordSource

__all__ = ["WindowBuilder", "options_name", "prepare", "read_split"]

Example = dict[str, Any]


def options_name(options: Mapping[str, Any]) -> str:
  """A short stable name for a set of preparation options."""
  text = json.dumps(_jsonable(options), sort_keys=True)
  return "opt_" + hashlib.sha1(text.encode()).hexdigest()[:10]


def _jsonable(value: Any) -> Any:
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


class WindowBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base builder: subclasses define the hooks below and ``name``."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First msjax release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "See the builder module docstring."
  #: One line: where the raw data can be obtained.
  OBTAIN: ClassVar[str] = ""
  #: The raw layout expected under manual_dir, for messages.
  EXPECTED: ClassVar[str] = ""
  #: Extra int32 per-window features.
  EXTRA_FEATURES: ClassVar[tuple[str, ...]] = ()
  #: How signals are stored: NONE (float lists, the released format) or
  #: BYTES (raw float32 bytes: several times faster to prepare).
  SIGNAL_ENCODING: ClassVar[tfds.features.Encoding] = (
    tfds.features.Encoding.NONE
  )

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This module's path (TFDS's default needs ``importlib_resources``)."""
    return epath.Path(inspect.getfile(cls))

  def __init__(
    self, *, options: Mapping[str, Any], data_dir: str, manual_dir: str
  ) -> None:
    """Creates the builder for one set of options.

    Args:
      options: preparation options (the builder's ``default_config()`` keys).
      data_dir: where prepared array_record files are written.
      manual_dir: where the raw download was extracted.
    """
    self.options = _jsonable(dict(options))
    self.manual_dir = os.path.expanduser(str(manual_dir))
    config = tfds.core.BuilderConfig(
      name=options_name(self.options),
      description=json.dumps(self.options, sort_keys=True),
    )
    self.root_dir = os.path.expanduser(str(data_dir))
    super().__init__(data_dir=self.root_dir, config=config)

  def __getstate__(self) -> dict[str, Any]:
    # Pickled as its arguments (grain workers rebuild it from them).
    return dict(
      options=self.options, data_dir=self.root_dir, manual_dir=self.manual_dir
    )

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__init__(**state)

  # Hooks ---------------------------------------------------------------
  def modality_shapes(self) -> dict[str, tuple[int, ...]]:
    """Per-modality float32 shape of one window."""
    raise NotImplementedError

  def class_names(self) -> list[str]:
    """Label names, index = label."""
    raise NotImplementedError

  def missing_files(self) -> list[str]:
    """Expected raw paths (relative to manual_dir) that are absent."""
    raise NotImplementedError

  def split_examples(self) -> dict[str, Iterable[Example]]:
    """Split name -> examples (features as in the module docstring)."""
    raise NotImplementedError

  # TFDS ----------------------------------------------------------------
  def _info(self) -> tfds.core.DatasetInfo:
    signals = {
      m: tfds.features.Tensor(
        shape=shape, dtype=np.float32, encoding=self.SIGNAL_ENCODING
      )
      for m, shape in self.modality_shapes().items()
    }
    features = {
      "signals": tfds.features.FeaturesDict(signals),
      "label": tfds.features.ClassLabel(names=self.class_names()),
      "session": np.int32,
      "time_index": np.int32,
    }
    features.update({k: np.int32 for k in self.EXTRA_FEATURES})
    return tfds.core.DatasetInfo(
      builder=self,
      description=(self.__doc__ or "").strip(),
      features=tfds.features.FeaturesDict(features),
    )

  def check_files(self) -> None:
    """Raises MissingDataError (one line) if raw files are missing."""
    if not os.path.isdir(self.manual_dir):
      missing = [self.EXPECTED]
    else:
      missing = self.missing_files()
    if missing:
      shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
      raise MissingDataError(
        f"{self.name}: raw files missing in manual_dir {self.manual_dir!r} "
        f"(expected {self.EXPECTED}; missing {shown}); obtain them from "
        f"{self.OBTAIN}, extract there or set config.data.manual_dir."
      )

  def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
    del dl_manager  # raw files are read from self.manual_dir directly
    self.check_files()
    return {
      split: self._generate_examples(examples)
      for split, examples in self.split_examples().items()
    }

  def _generate_examples(
    self, examples: Iterable[Example]
  ) -> Iterable[tuple[str, Example]]:
    for i, example in enumerate(examples):
      example = dict(example)
      example["signals"] = {
        m: np.asarray(v, np.float32) for m, v in example["signals"].items()
      }
      yield f"{i:09d}", example


def prepare(builder: WindowBuilder) -> WindowBuilder:
  """Builds the array_record files unless present (checks raw files first).

  One process prepares while every other process asking for the same
  dataset waits (``msjax.data.prepare_lock``, a lock file in the builder's
  data_dir), so a multi-host job may call this from every host.
  """
  if builder.is_prepared():
    return builder
  builder.check_files()

  def build() -> None:
    builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(
        manual_dir=builder.manual_dir
      ),
    )

  prepare_once(
    os.path.dirname(str(builder.data_path)), builder.is_prepared, build
  )
  return builder


def read_split(
  builder: WindowBuilder, split: str, modalities: tuple[str, ...]
) -> RecordSource:
  """One prepared split as a ``RecordSource`` (records decoded on demand).

  Args:
    builder: a prepared builder.
    split: "train", "val" or "test".
    modalities: modalities to keep (default order of ``config.data``).

  Returns:
    The split; ``session`` and ``time_index`` are the stored features.
  """
  return RecordSource(builder, split, tuple(modalities))
