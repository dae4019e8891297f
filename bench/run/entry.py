"""Hydra entry point: ``python -m bench.run experiment=table1 profile=quick`` (add -m to sweep)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

CONF = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def main(cfg: DictConfig) -> None:
    from bench.run.config_check import ConfigError
    from datasets import DatasetUnavailable

    try:
        _main(cfg)
    except (ConfigError, DatasetUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\n[spear-bench] interrupted; rerun the same command to resume (finished batches are kept)",
              file=sys.stderr)
        sys.exit(130)


def _main(cfg: DictConfig) -> None:
    from bench.run.console import job_line, summary_line, table_command
    from bench.record.loggers import NullLogger
    from bench.report.figures.grids import grid_for_run
    from bench.run.runner import Runner

    t_start = time.perf_counter()
    job = job_line()
    if job:
        print(f"[spear-bench] {job}", file=sys.stderr)
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
        rows = runner.current_rows()
        print(f"[spear-bench] {summary_line(rows, run_id=runner.run_id, wall_s=time.perf_counter() - t_start)}",
              file=sys.stderr)
        print(f"[spear-bench] table: {table_command(runner.cfg.name, runner.cfg.get('profile'))}",
              file=sys.stderr)
        statuses = [r.get("status") for r in rows]
        failed = bool(statuses) and all(s == "error" for s in statuses)
    finally:
        logger.finish(failed=failed)
    if failed:
        msg = (f"every batch of {runner.run_id} is an error row; see error_msg in {path} "
               f"(rerun to retry them)")
        if _multirun():  # let the sweep's other jobs run; hydra fails the sweep at its end
            raise RuntimeError(msg)
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(1)


def _multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def _run_summary(path: Path, table: str):
    """This run's rows summarised like the paper tables (bench/report/tables/summary.py), for the logger."""
    import pandas as pd

    from bench.record.rows import read_rows
    from bench.report.tables.summary import summarise

    return summarise(pd.DataFrame(list(read_rows([path]))), table)


def cli() -> None:
    """``python -m bench.run``: a mistyped config-group option (``attack=Spear``) is named, with
    the closest option, before hydra composes anything; then the hydra app runs."""
    from bench.run.console import unknown_option

    problem = unknown_option(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
