"""Paths the tests share: the project, the shipped model and the read-only shared data."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
SHIPPED_MODEL = PROJECT_ROOT / "models" / "sentiment-prediction"
