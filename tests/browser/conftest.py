"""The browser tests use the seeded stack of the notebook tests."""

from __future__ import annotations

from ..notebooks.conftest import seeded

__all__ = ["seeded"]
