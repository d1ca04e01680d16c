"""Errors of the data layer (one-line messages naming the fix)."""

__all__ = ["MissingDataError"]


class MissingDataError(FileNotFoundError):
  """A dataset's raw or prepared files are not where the config says."""
