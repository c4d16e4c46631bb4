"""Paths the tests share: the project, the shipped model, the read-only shared data and test documents."""

from __future__ import annotations

from job.tools.deps import PROJECT_ROOT
from job.tools.specs import SHIPPED_MODEL

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
# A WML published-model document as the original service returned it (GET …/published_models/{id}).
WML_DOCUMENT = PROJECT_ROOT / "tests" / "data" / "wml-published-model.json"

__all__ = ["PROJECT_ROOT", "SHARED_DATA", "SHIPPED_MODEL", "WML_DOCUMENT"]
