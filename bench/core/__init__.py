"""The ground floor: what generators, metrics, leaderboards and the orchestration stand on.

Modules here import only the standard library, numpy, torch and third-party packages, never the rest
of `bench`, `metrics`, `generators` or `leaderboards` (an import-linter contract in pyproject.toml).
"""
