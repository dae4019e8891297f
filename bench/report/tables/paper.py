"""The published numbers our tables stand beside: results/paper.yaml."""
from __future__ import annotations

from pathlib import Path

import yaml

PAPER_YAML = Path(__file__).resolve().parents[3] / "results" / "paper.yaml"


def paper_numbers(table: str) -> dict:
    """The entry of one table in results/paper.yaml (empty when it has none)."""
    with open(PAPER_YAML, encoding="utf-8") as fh:
        return (yaml.safe_load(fh) or {}).get(table, {}) or {}


__all__ = ["PAPER_YAML", "paper_numbers"]
