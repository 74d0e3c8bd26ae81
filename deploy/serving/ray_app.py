"""The Serve application builder of configs written by earlier releases (their `import_path` names this path)."""

from ..ray_serve.replica import build  # noqa: F401
