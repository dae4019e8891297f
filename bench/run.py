"""Hydra entry point: ``python -m bench.run experiment=table1 profile=quick`` (add -m to sweep)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def main(cfg: DictConfig) -> None:
    from bench.figures import grid_for_run
    from bench.loggers import NullLogger
    from bench.runner import Runner

    logger = instantiate(cfg.logger)
    runner = Runner(cfg, logger=logger)
    logger.start(runner.cfg, runner.run_id, runner.attack.name, config_hash=runner.chash)
    failed = True
    try:
        path = runner.run()
        fig = grid_for_run(path, Path(runner.cfg.paths.results) / "figures") if path.exists() else None
        if fig is not None:
            logger.log_figure("reconstruction_grid", fig)
            print(f"[spear-bench] grid: {fig}", file=sys.stderr)
        if path.exists() and not isinstance(logger, NullLogger):
            logger.log_table("summary", _run_summary(path, runner.cfg.name))
        print(f"[spear-bench] rows: {path}", file=sys.stderr)
        failed = False
    finally:
        logger.finish(failed=failed)


def _run_summary(path: Path, table: str):
    """This run's rows summarised like the paper tables (bench.tables), for the logger."""
    import pandas as pd

    from bench.rows import read_rows
    from bench.tables import summarise

    return summarise(pd.DataFrame(list(read_rows([path]))), table)


if __name__ == "__main__":
    main()
