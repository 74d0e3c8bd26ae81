"""Plumbing every package of the toolkit shares: errors, optional packages, files, provenance,
precisions and command-line helpers.

It is the bottom layer: it imports nothing of `resnet`, `deploy`, `export` or `benchmark`, and
nothing heavier than NumPy and click, so every package (and every `--help`) may import it.
"""

__version__ = "0.1.0"  # the toolkit's version (setup.cfg reads it from here)
NAME = "resnet-deploy-toolkit"
