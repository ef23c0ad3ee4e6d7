"""Errors a user can cause. The CLI prints their message (no traceback) and exits with code 2."""


class BenchError(Exception):
    """A problem with the user's input, configuration or environment; the message says what to do."""


class AudioError(BenchError):
    """An audio file or waveform that cannot be scored as it is."""


class ManifestError(BenchError):
    """A manifest row or field that is missing, malformed or points nowhere."""


class CheckpointError(BenchError):
    """A checkpoint that is missing, corrupt, or does not fit the architecture."""


class ConfigError(BenchError):
    """A suite or command-line setting that is unknown or invalid."""
