"""bench: a benchmark harness for text-to-audio and text-to-music generation.

The Python API (bench/api.py), imported on first use so that `bench` on the command line starts fast:
`from bench import score, run, load_records, read_record, leaderboard`.
"""
__all__ = ["score", "run", "load_records", "read_record", "leaderboard"]


def __getattr__(name: str):
    if name == "read_record":
        from bench.core.records import read_record

        return read_record
    if name in __all__:
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
