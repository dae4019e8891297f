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
    from bench.runner import Runner

    logger = instantiate(cfg.logger)
    runner = Runner(cfg, logger=logger)
    logger.start(runner.cfg, runner.run_id, runner.attack.name)
    failed = True
    try:
        path = runner.run()
        fig = grid_for_run(path, Path(runner.cfg.paths.results) / "figures")
        if fig is not None:
            logger.log_figure("reconstruction_grid", fig)
            print(f"[spear-bench] grid: {fig}", file=sys.stderr)
        print(f"[spear-bench] rows: {path}", file=sys.stderr)
        failed = False
    finally:
        logger.finish(failed=failed)


if __name__ == "__main__":
    main()
