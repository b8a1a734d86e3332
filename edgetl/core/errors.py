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
    """The run folder is missing a stage's outputs, is in use, or would be overwritten."""


class ParityError(RunError):
    """Builds were written, but some fell below their parity threshold or the int8 budget;
    carries the export manifest that records them."""

    def __init__(self, message: str, manifest: dict):
        super().__init__(message)
        self.manifest = manifest


class RuntimeUnavailable(RunError):
    """The runtime a build needs is not installed where it would run."""


class DeviceError(RunError):
    """A device could not be reached, or its runner failed or hung."""
