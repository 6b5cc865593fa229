"""The engine's exception family: messages are written for the user (one line, naming the
file or parameter and what is wrong). Anything else escaping is a bug."""


class EngineError(Exception):
    """Base of all user-facing engine errors."""


class SceneFormatError(EngineError):
    """A .ply (or other scene file) is missing, malformed, truncated or not a 3DGS scene."""


class CameraError(EngineError):
    """Cameras or images are missing, inconsistent or malformed."""


class MaskError(EngineError):
    """A mask source (SAM checkpoint, mask folder) is missing or unusable."""


class TrainingError(EngineError):
    """Training cannot start or continue (bad settings, cancelled, stale features file)."""


class Cancelled(EngineError):
    """Long work was cancelled by the user."""
