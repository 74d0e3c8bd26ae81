"""Names a package offers but imports only when first asked for (PEP 562), so that importing the
package stays cheap: `__getattr__, __dir__ = lazy_names(__name__, {"name": "submodule", ...},
__all__)` in its `__init__`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable


def lazy_names(package: str, names: dict[str, str], public: Iterable[str]) -> tuple[Callable, Callable]:
    """A module `__getattr__` that imports `names[name]` (a submodule of `package`) on first use
    and keeps the value in the package, and a `__dir__` listing `public`."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{names[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    listed = sorted(public)

    def __dir__() -> list[str]:
        return listed

    return __getattr__, __dir__
