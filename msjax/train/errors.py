"""One-line user-facing errors of the training system.

Every problem a user can fix (a bad config key, data that does not match the
config, NaN/inf in a batch, a missing dataset, a diverged run) is raised as a
subclass of :class:`MsjaxError`. The command line prints ``str(error)`` on one
line and exits with status 2 instead of showing a traceback.
"""

__all__ = ["ConfigError", "DataError", "MsjaxError", "TrainingError"]


class MsjaxError(Exception):
  """Base class of errors whose message alone tells the user what to fix."""


class ConfigError(MsjaxError):
  """An unknown, mistyped or inconsistent configuration key."""


class DataError(MsjaxError):
  """Data that is missing, non-finite or does not match the config."""


class TrainingError(MsjaxError):
  """A run that cannot go on (e.g. a non-finite loss)."""
