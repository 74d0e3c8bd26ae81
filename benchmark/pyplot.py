"""matplotlib for the benchmark's pictures (a leaf: the modules that draw import it, it imports none of them)."""

from __future__ import annotations

from toolkit.optional import require


def pyplot():
    """matplotlib's pyplot, drawing to files (the Agg backend)."""
    matplotlib = require("matplotlib", "--plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
