"""``SpearSlurmLauncher`` (conf/hydra/launcher/slurm.yaml): hydra-submitit's SlurmLauncher -- one
job array per sweep -- except that it waits for *every* array task before reporting, and names the
tasks that did not finish (cancelled, failed, timed out) with their overrides, state and log. The
stock launcher raises at the first unfinished task while later tasks still run, and a resubmission
then races them on the same JSONL files.

Resubmitting the same sweep is safe once it has returned: each job resumes its JSONL (the runner
skips (config_hash, batch_index) already written), so finished jobs do nothing and a cancelled one
completes its missing batches.
"""
from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Sequence

from hydra.core.utils import filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class SweepIncomplete(RuntimeError):
    """Some array tasks of a SLURM sweep did not finish; the message says which and how to rerun."""


def _failure_report(failed: list[tuple[int, list[str], str, str, str]], total: int,
                    hydra_args: Sequence[str] = ()) -> str:
    """failed: (job number, the job's overrides, SLURM state, error, log file); hydra_args: the
    sweep's hydra overrides (launcher choice and settings) for the resubmission commands."""
    lines = [f"{len(failed)} of {total} SLURM array tasks did not finish:"]
    for idx, overrides, state, why, logfile in failed:
        lines.append(f"  #{idx} [{state}] {' '.join(filter_overrides(overrides))}\n"
                     f"      {why}\n      log: {logfile}")
    lines.append("Rows already written are kept. Resubmit the same command: every job resumes its "
                 "JSONL (finished jobs find nothing left to do, these complete their missing "
                 "batches). Or resubmit only these jobs:")
    for _, overrides, *_ in failed:
        lines.append("  python -m bench.run -m "
                     + " ".join(shlex.quote(o) for o in [*hydra_args, *overrides]))
    return "\n".join(lines)


def _last_line(path) -> str:
    """The last line of a task's stderr (e.g. "srun: error: node1: task 0: Killed")."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


SACCT_POLL_S = 30  # how often the states of unfinished tasks are read from sacct while waiting


def _wait_all(jobs) -> None:
    """Return once every task has finished. A task that finishes well leaves a result file (seen
    within a second); one that is cancelled, killed or fails outside Python leaves none, and only
    sacct tells. submitit's own polling slows down to every min(10 min, half the sweep's age), so
    ask sacct for all tasks at once every SACCT_POLL_S seconds instead."""
    import time

    pending, last = list(jobs), float("-inf")
    while pending:
        if time.time() - last >= SACCT_POLL_S:
            pending[0].watcher.update()  # one sacct call covers every task of the array
            last = time.time()
        pending = [j for j in pending if not j.done()]
        if pending:
            time.sleep(1)


class SpearSlurmLauncher(SlurmLauncher):
    """SlurmLauncher that waits for all array tasks and reports every unfinished one."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        # Same executor set-up as BaseSubmititLauncher.launch (hydra-submitit-launcher 1.2);
        # only the collection of results differs.
        import submitit
        from hydra.core.singleton import Singleton
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        assert self.config is not None and len(job_overrides) > 0
        init_params = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init_params[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{
            k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in self.params.items()
            if k not in {"max_num_timeout", "submitit_folder"}})

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))

        jobs = executor.map_array(self, *zip(*job_params))
        first = jobs[0].job_id.split("_")[0] if jobs else "?"
        print(f"[spear-bench] submitted SLURM array job {first} ({len(jobs)} tasks); "
              f"logs: {Path(str(self.params['submitit_folder']).replace('%j', first + '_*'))}",
              flush=True)

        _wait_all(jobs)
        results, failed = [], []
        for i, job in enumerate(jobs):
            try:
                results.append(job.results()[0])
            except Exception as e:  # noqa: BLE001 -- cancelled, failed, timed out, lost
                try:
                    state = job.get_info(mode="force").get("State", "UNKNOWN")
                except Exception:  # noqa: BLE001
                    state = "UNKNOWN"
                why = _last_line(job.paths.stderr) or f"{type(e).__name__}: no output"
                failed.append((initial_job_idx + i, list(job_overrides[i]), state, why, str(job.paths.stderr)))
        if failed:
            hydra_args = [o for o in self.config.hydra.overrides.hydra
                          if not o.startswith(("hydra.sweep.dir=", "hydra.run.dir=", "hydra.mode="))]
            raise SweepIncomplete(_failure_report(failed, len(jobs), hydra_args))
        return results


__all__ = ["SpearSlurmLauncher", "SweepIncomplete"]
