"""Run stage: the hydra entry (``python -m bench.run``), the runner and its steps, config checks, models, provenance."""
from bench.run.entry import main

__all__ = ["main"]
