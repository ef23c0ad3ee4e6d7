"""Errors a user can cause. The CLI prints their message (no traceback) and exits with code 2; any other
exception is an internal error (exit code 5, traceback behind --debug).
"""
from contextlib import contextmanager


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


EXIT_INTERNAL_ERROR = 5  # exit code of an unexpected exception: a bug or an environment the harness cannot name


@contextmanager
def doing(what: str):
    """Name the step in progress: an unexpected (non-BenchError) exception leaving the block carries `what`
    (the innermost step wins), so the CLI can say what was being done when it happened."""
    try:
        yield
    except BenchError:
        raise
    except Exception as exc:
        if getattr(exc, "bench_doing", None) is None:
            try:
                exc.bench_doing = what
            except AttributeError:  # exceptions with __slots__: the CLI falls back to the command
                pass
        raise
