"""The Python-backend models of repositories written by earlier releases (their model.py imports this path)."""

from ..triton.python_model import ImagesModel, LogitsModel  # noqa: F401
