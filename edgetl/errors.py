"""One base error; every message names the file or value at fault and says the fix."""


class EdgetlError(Exception):
    """Base of every error edgetl reports as one line instead of a traceback."""


class DataError(EdgetlError):
    """The image folder, a split, a class folder or an image file is unusable."""


class ModelError(EdgetlError):
    """Unknown model, unavailable weights, or a checkpoint that does not fit."""


class ConfigError(EdgetlError):
    """A config file, option or target profile is invalid."""


class RunError(EdgetlError):
    """The run folder is missing a stage's outputs or would be overwritten."""
