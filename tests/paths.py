"""Paths the tests share: the project, the shipped model and the read-only shared data."""

from __future__ import annotations

from job.tools.deps import PROJECT_ROOT
from job.tools.specs import SHIPPED_MODEL

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

__all__ = ["PROJECT_ROOT", "SHARED_DATA", "SHIPPED_MODEL"]
