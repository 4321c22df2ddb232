"""The contrib tests use the API tests' in-process app."""

from __future__ import annotations

from ..api.conftest import api

__all__ = ["api"]
