"""Bundles for boards, the deployment target: `write_bundle` (`writer`). Reading a bundle is the
foundation's (`deploy.artifacts.bundle`: a bundle is an artifact; `deploy.runtimes.open_bundle`
chooses its runtime)."""

from ..artifacts.bundle import Bundle, is_bundle
from .writer import write_bundle

__all__ = ["Bundle", "is_bundle", "write_bundle"]
