"""One run: config -> data -> model -> client gradient -> attack -> matching -> metrics -> rows.

The runner is the only place where ground truth and the attack meet; the attack only ever gets
an :class:`attacks.base.Observation`.
"""
from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from attacks.base import AttackNotApplicable, Observation, Reconstruction, check_requirements
from bench.client import LOSSES, client_update, fedsgd_gradient, fedsgd_gradient_factored
from bench.client.batches import select_update_batch
from bench.run.config_check import validate_config
from bench.run.console import width_warning
from bench.scoring.metrics import MetricConfig, grad_residual, image_quality, label_accuracy
from bench.run.models import build_model, weights_state
from bench.run.provenance import provenance, resolve_device
from bench.record.artifacts import save_thumbnails
from bench.record.rows import RowWriter, config_hash, make_row
from bench.run.identity import (SEMANTIC_KEYS, RUNTIME_KEYS, batch_fingerprint, check_profile,  # noqa: F401
                                data_identity, run_paths, semantic_config)
from bench.run.memory import peak_mem_mb, reset_peak_mem
from bench.run.observe import server_view, weights_fingerprint
from bench.scoring.features import feature_cosine
from datasets import load_source


class Runner:
    """Executes one hydra job: all batches of one (dataset, model, attack, threat) setting."""

    def __init__(self, cfg: DictConfig, logger=None):
        self.cfg = cfg  # exactly what hydra composed, recorded in .hydra/config.yaml and by --cfg job
        check_profile(cfg)
        validate_config(cfg, losses=LOSSES)
        self.device = resolve_device(cfg.device)
        self.dtype = getattr(torch, cfg.dtype)
        self.source = load_source(
            cfg.dataset.name, root=cfg.paths.data_root, allow_standin=cfg.dataset.allow_standin,
            prefer=cfg.dataset.prefer, standin=OmegaConf.to_container(cfg.dataset.standin, resolve=True),
        )
        self.spec = self.source.info.spec()
        self.attack = instantiate(cfg.attack)
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        model_cfg.pop("name", None)  # a label for rows and tables, not a constructor argument
        self.model_factory = instantiate(model_cfg, _partial_=True)
        # read and checked once, here: a missing, corrupt or foreign file is exit 2 naming it
        self.model_state = weights_state(cfg.model.get("weights"), self.model_factory,
                                         input_shape=self.spec.shape, num_classes=self.spec.num_classes)
        # The file (run_id) is named by the semantic config; the resume key (config_hash) also
        # covers the data's identity and the weights' content, so a change of either recomputes the
        # rows into the same file (the newest row of a batch wins in tables). setting_hash: the same
        # without the seed, what tables group by.
        sem = semantic_config(cfg)
        ident = {"data": data_identity(self.source), "model_state": self.model_state}
        self.chash = config_hash({**sem, **ident})
        self.setting_hash = config_hash({**{k: v for k, v in sem.items() if k != "seed"}, **ident})
        self.run_id, self.path = run_paths(cfg, self.attack.name, config_hash(sem))
        self.writer = RowWriter(self.path)
        self.metric_cfg = MetricConfig(**OmegaConf.to_container(cfg.metrics, resolve=True))
        self.loss_fn = LOSSES[cfg.threat.loss]
        self.logger = logger
        self._prep_time: float | None = None
        self._setting_cache: dict | None = None
        self._width_checked = False

    # ------------------------------------------------------------------ one batch
    def _model(self, batch_index: int):
        seed = int(self.cfg.seed) * 1_000_003 + batch_index
        # eval mode (dropout off, BatchNorm on running statistics) for the client and the attack,
        # as Geiping's reference implementation sets it
        return build_model(self.model_factory, input_shape=self.spec.shape,
                           num_classes=self.spec.num_classes, seed=seed, dtype=self.dtype,
                           device=self.device).eval()

    def _setting(self) -> dict:
        """Row fields fixed for the whole run (computed once: model_state hashes a weights file)."""
        if self._setting_cache is not None:
            return self._setting_cache
        cfg = self.cfg
        self._setting_cache = {
            "run_id": self.run_id, "experiment": cfg.name, "profile": cfg.profile, "seed": int(cfg.seed),
            "config_hash": self.chash, "setting_hash": self.setting_hash, "dtype": cfg.dtype, "dataset": cfg.dataset.name,
            "data_source": self.source.data_source, "image_shape": list(self.spec.shape),
            "model": cfg.model.get("name", "fcnn"), "width": cfg.model.get("width"),
            "depth": cfg.model.get("depth"), "activation": cfg.model.get("activation"),
            "model_state": self.model_state,
            "batch_size": int(cfg.batch_size), "labels_known": bool(cfg.threat.labels_known),
            "batch_size_known": bool(cfg.threat.batch_size_known), "defense": cfg.defense.name,
            "attack": self.attack.name,
        }
        return self._setting_cache

    def batch_indices(self, batch_index: int) -> list[int]:
        """The samples behind batch ``batch_index``'s update (K·B under secure aggregation, one
        class for label-homogeneous batches): the same selection for the run and the resume check."""
        cfg = self.cfg
        return select_update_batch(self.source.labels, cfg.defense, int(cfg.batch_size), seed=int(cfg.seed),
                                   batch_index=batch_index, balanced=bool(cfg.dataset.balanced),
                                   homogeneous=bool(cfg.dataset.get("label_homogeneous")))

    def run_batch(self, batch_index: int) -> dict:
        cfg = self.cfg
        homogeneous = cfg.dataset.get("label_homogeneous")
        idx = self.batch_indices(batch_index)
        B = len(idx)  # K·B under secure aggregation
        ids = [self.source.ids[int(i)] for i in idx]
        row = dict(self._setting(), batch_index=batch_index, sample_ids=ids,
                   true_labels=[int(self.source.labels[int(i)]) for i in idx], **provenance(self.device))
        if homogeneous is not None:
            row["label_homogeneous"] = bool(homogeneous)
        reset_peak_mem(self.device)
        try:
            x01, y, ids = self.source.batch(idx)  # a bad file is this batch's error row, not the run's end
            row["data_fingerprint"] = batch_fingerprint(x01, y)
            model = self._model(batch_index)
            if not self._width_checked:  # once per job: SPEAR needs the layer wider than the batch
                self._width_checked = True
                warning = width_warning(self.attack, model, B)
                if warning:
                    print(f"[spear-bench] {warning}", file=sys.stderr)
            x = self.spec.normalize(x01.to(self.dtype)).to(self.device)
            # the client's update under its defense (bench/client): FedSGD, DP-SGD, FedAvg, ...
            upd = client_update(cfg.defense, model, x, y.to(self.device), self.loss_fn,
                                seed=int(cfg.seed) * 104_729 + batch_index, gradient_fn=fedsgd_gradient)
            grads = upd.gradients
            row.update(upd.row)
            obs = Observation(
                model=server_view(model), gradients=grads, loss_fn=self.loss_fn, data_spec=self.spec,
                batch_size=B if cfg.threat.batch_size_known else None,
                labels=y.to(self.device) if cfg.threat.labels_known else None,
                client_steps=upd.client_steps, update_meta=upd.update_meta,
            )
            check_requirements(self.attack, obs)
            if self._prep_time is None:
                t0 = time.perf_counter()
                self.attack.prepare(obs.model, self.spec)
                self._prep_time = time.perf_counter() - t0
            row["time_prep_s"] = self._prep_time
            gen = torch.Generator().manual_seed(int(cfg.seed) * 7919 + batch_index)
            budget = cfg.get("time_budget_s")
            deadline = time.monotonic() + float(budget) if budget else None
            fingerprint = weights_fingerprint(model)
            t0 = time.perf_counter()
            rec = self.attack.reconstruct(obs, generator=gen, deadline=deadline)
            row["time_attack_s"] = time.perf_counter() - t0
            del obs
            if weights_fingerprint(model) != fingerprint:
                raise RuntimeError(f"attack {self.attack.name!r} wrote into the model's weights in "
                                   "place; attacks must treat Observation.model as read-only "
                                   "(copy a tensor before changing it)")
            row.update(self._score(rec, model, x01, x, y, grads, batch_index, ids))
        except AttackNotApplicable as exc:
            row.update(status="not_applicable", error_type=type(exc).__name__, error_msg=str(exc))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a crashed batch is a row, never a lost run
            row.update(status="error", error_type=type(exc).__name__,
                       error_msg=f"{exc}\n{traceback.format_exc(limit=3)}"[-2000:])
        row["peak_mem_mb"] = peak_mem_mb(self.device)
        return make_row(**row)

    def _score(self, rec: Reconstruction, model, x01, x, y, grads, batch_index, ids) -> dict:
        """Metrics of one reconstruction; ``x01`` is the true batch in [0,1], ``x`` as fed to the model."""
        out: dict = {"status": rec.status}
        out.update({f"diag_{k}": v for k, v in rec.diagnostics.items()})
        inputs = rec.inputs.detach().to("cpu", torch.float64)
        if self.spec.kind == "tabular":  # records: discrete_acc / continuous_mae (bench/scoring/tabular.py)
            from bench.scoring.tabular import tabular_quality

            rec01 = None
            q = tabular_quality(inputs, x.detach().to("cpu", torch.float64), self.spec)
        else:
            rec01 = self.spec.denormalize(inputs) if inputs.shape[0] else inputs
            q = image_quality(rec01, x01.double(), self.metric_cfg)
        rec_for_true = q.pop("rec_for_true")
        out.update(q)
        if rec01 is not None and self.metric_cfg.lpips:
            from bench.scoring.lpips_metric import lpips_fields

            out.update(lpips_fields(rec01, x01, rec_for_true, kind=self.spec.kind, device=self.device))
        out["label_acc"] = label_accuracy(None if rec.labels is None else rec.labels.cpu(), y)
        out.update(self._pipeline_scores(rec, model, x01, x))
        if rec.status == "failed":
            out["error_msg"] = str(rec.diagnostics.get("reason", ""))[:500] or None
        n_save = int(self.cfg.get("save_images", 0) or 0)
        if batch_index < n_save and rec01 is not None:
            art = self.path.with_suffix("") / f"batch_{batch_index:04d}.npz"
            save_thumbnails(art, x01, rec01, rec_for_true, ids)
            out["artifact"] = art.relative_to(self.path.parent).as_posix()  # relative to the rows file
        del rec01  # image copies go before the residual's second full gradient (peak memory)
        if inputs.shape[0] == x01.shape[0] and all(i >= 0 for i in rec_for_true):
            # The certificate: does the reconstruction explain what the server saw? Labels are the
            # attack's own when it recovered them, else the true labels of the matched samples.
            order = torch.as_tensor(rec_for_true)
            labels = rec.labels.cpu()[order] if rec.labels is not None else y
            xin = inputs[order].to(self.device, self.dtype)
            # big linear layers' gradients stay factored (dL/dZ, input): no second full gradient
            g_rec, _ = fedsgd_gradient_factored(model, xin, labels.to(self.device), self.loss_fn)
            out["grad_residual"] = grad_residual(grads, g_rec)
        return out

    def _pipeline_scores(self, rec: Reconstruction, model, x01, x) -> dict:
        """feature_cosine of recovered layer inputs and stage_<name>_psnr/_lpips of pipeline stages."""
        out: dict = {}
        if rec.layer_inputs is not None and rec.diagnostics.get("attacked_layer") is not None:
            layer = str(rec.diagnostics["attacked_layer"])
            true_feats: list = []
            hook = dict(model.named_modules())[layer].register_forward_pre_hook(
                lambda _m, inp: true_feats.append(inp[0].detach()))
            try:
                with torch.no_grad():
                    model(x)
            finally:
                hook.remove()
            out["feature_cosine"] = feature_cosine(rec.layer_inputs, true_feats[0])
        for stage, xs in (rec.stages or {}).items():
            s01 = self.spec.denormalize(xs.detach().to("cpu", torch.float64))
            q = image_quality(s01, x01.double(), self.metric_cfg)
            out[f"stage_{stage}_psnr"] = q["psnr_mean"]
            if self.metric_cfg.lpips:
                from bench.scoring.lpips_metric import lpips_fields

                lp = lpips_fields(s01.clamp(0, 1), x01, q["rec_for_true"], kind=self.spec.kind,
                                  device=self.device)
                out[f"stage_{stage}_lpips"] = lp["lpips_mean"] if lp["lpips_ok"] else None
        return out

    # ------------------------------------------------------------------ the run
    def _fingerprint(self, batch_index: int) -> str | None:
        try:
            x01, y, _ = self.source.batch(self.batch_indices(batch_index))
        except Exception:
            return None
        return batch_fingerprint(x01, y)

    def _todo(self) -> list[int]:
        """Batches without a current row. The newest row of a batch in the file is current when it
        has this run's config_hash, is not an error (unless ``retry_errors=false``) and its batch's
        pixels did not change since it was written (tables keep that same newest row)."""
        keep_errors = not self.cfg.get("retry_errors", True)
        newest = {r["batch_index"]: r for r in self.writer.rows()}
        todo = []
        for b in range(int(self.cfg.n_batches)):
            row = newest.get(b)
            if row is not None and (row["config_hash"] != self.chash
                                    or (row.get("status") == "error" and not keep_errors)):
                row = None
            if row is not None and row.get("data_fingerprint") not in (None, self._fingerprint(b)):
                print(f"[spear-bench] batch {b}: its data changed since the row was written; recomputing",
                      file=sys.stderr)
                row = None
            if row is None:
                todo.append(b)
        return todo

    def run(self) -> Path:
        """All batches not yet done, under an exclusive lock on the rows file."""
        def waiting(lock_path):
            print(f"[spear-bench] another run of this setting holds {lock_path}; waiting for it to "
                  f"finish, then computing only the batches it did not write", file=sys.stderr)

        lock = self.writer.lock(on_wait=waiting)
        try:
            return self._run()
        finally:
            lock.release()

    def current_rows(self) -> list[dict]:
        """This run's current rows (the newest row per batch, with this run's config hash)."""
        newest = {r["batch_index"]: r for r in self.writer.rows()}
        return [newest[b] for b in range(int(self.cfg.n_batches))
                if b in newest and newest[b]["config_hash"] == self.chash]

    def statuses(self) -> list[str | None]:
        """Status of each batch of this run's current rows (the newest row per batch)."""
        return [r.get("status") for r in self.current_rows()]

    def _run(self) -> Path:
        cfg = self.cfg
        todo = self._todo()
        if len(todo) < int(cfg.n_batches):
            print(f"[spear-bench] resuming {self.run_id}: {int(cfg.n_batches) - len(todo)} batches "
                  f"already in {self.path}", file=sys.stderr)
        from tqdm import tqdm

        bar = tqdm(todo, desc=f"{cfg.dataset.name}/{self.attack.name}", unit="batch",
                   disable=not sys.stderr.isatty() or not cfg.get("progress", True))
        for b in bar:
            row = self.run_batch(b)
            self.writer.write(row)
            if self.logger is not None:
                self.logger.log_row(row)
            if row.get("psnr_mean") is not None:
                bar.set_postfix(psnr=f"{row['psnr_mean']:.1f}", status=row["status"])
        return self.path


__all__ = ["Runner", "semantic_config", "SEMANTIC_KEYS", "RUNTIME_KEYS", "feature_cosine"]
