"""Where rows go besides the JSONL file (which is always written and is the source of truth)."""
from __future__ import annotations


class NullLogger:
    """logger=none: rows stay in the JSONL files only."""

    def start(self, cfg, run_id: str, attack: str) -> None:
        pass

    def log_row(self, row: dict) -> None:
        pass

    def log_figure(self, name: str, path) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass
