"""Named errors: every user-facing failure says which file, key or field is wrong."""


class HyperzslError(Exception):
    """Base class for errors caused by user input (files, recipes, arguments)."""


class DataError(HyperzslError, ValueError):
    """A data file is missing, malformed or inconsistent."""


class RecipeError(HyperzslError, ValueError):
    """A recipe key is unknown or a value has the wrong type or range."""


class NotFittedError(HyperzslError, RuntimeError):
    """A detector or classifier was used before ``fit``."""


class MetricInputError(HyperzslError, ValueError):
    """Scores or labels that no OOD metric is defined for (NaN/inf, one class, bad shape)."""


class GridError(HyperzslError, ValueError):
    """A grid file, its expansion, an executor or a compared metric is wrong."""
