"""SPEAR's search, step by step: find directions (a finder's proposals), filter them into
candidates, select ``B`` of them and check the choice, until a choice passes or a stop rule fires.

:class:`DirectionSearch` holds what the steps share (the live rows of ``L``, the candidates, the
best checked choice so far); :mod:`attacks.spear.engine` builds it after the factorisation and
turns its best choice into inputs (``engine._finish``).
"""
from __future__ import annotations

import math
import sys
import time

import torch
from torch import Tensor

from attacks.base import AttackNotApplicable
from attacks.spear.config import SpearConfig
from attacks.spear.filtering import Candidates, refine, screen, zero_mask
from attacks.spear.finders import SearchState, make_finder
from attacks.spear.precision import DTYPE
from attacks.spear.selection import Trial, greedy_select, repair, scale_and_check


def proposals_per_step(cfg: SpearConfig, device: torch.device, m: int, B: int) -> int:
    """Proposals evaluated together: the configured number, or sized to the device's memory
    (the step's largest temporaries are K × m × B for the screen and K × (B−1) × B for the
    null vectors; a quarter of the free memory is used, capped at 65 536)."""
    if cfg.proposals_per_step:
        return max(1, int(cfg.proposals_per_step))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per = 8 * (m * B + B * B + 2 * m) * 4
        return int(max(1024, min(65536, free // 4 // per)))
    return 4096


def float64_rows(t: Tensor, device: torch.device) -> Tensor:
    """``t`` on ``device`` in float64 without a copy when it already is."""
    return t.detach().to(device=device, dtype=DTYPE)


class DirectionSearch:
    """The search over candidate directions for one factorised weight gradient.

    ``L`` (m × B) and ``R`` (B × n) are the factors of ``dL/dW``, ``live`` the rows of ``L`` that
    are not zero; ``W``, ``b``, ``db`` the layer's weights, bias and bias gradient on the search
    device ``dev``. Diagnostics go to ``diag``.
    """

    def __init__(self, W: Tensor, b: Tensor, db: Tensor, L: Tensor, R: Tensor, row_norm: Tensor,
                 live: Tensor, B: int, zero_tol: float, cfg: SpearConfig, generator: torch.Generator,
                 prior: Tensor | None, dev: torch.device, diag: dict):
        m, n = W.shape
        self.cfg, self.B, self.zero_tol, self.diag = cfg, B, zero_tol, diag
        # mixture screen: leverage above which a proposal hinges on one row (from the final zero_tol)
        self.fragile = None if not cfg.reject_mixtures else (
            cfg.fragile_leverage if cfg.fragile_leverage is not None else 1.0 - max(1e-6, zero_tol))
        live_idx = live.nonzero().squeeze(1)
        m_live = int(live.sum())
        diag["live_neurons"] = m_live
        self.threshold = threshold = max(math.ceil(cfg.tau * m_live), B - 1 + cfg.min_extra_zeros)
        diag["filter_threshold"] = threshold
        diag.update(filter_tau=cfg.tau, filter_min_extra_zeros=cfg.min_extra_zeros)  # for the failure bound
        if B > 1 and m_live < threshold + 1:
            raise AttackNotApplicable(
                f"only {m_live} of {m} neurons are live (active for some sample) for batch size {B}: a "
                f"true direction needs at least {threshold} zero rows among them to pass the sparsity "
                "filter, and the kernel of B−1 rows needs more rows than that; SPEAR needs a layer "
                "markedly wider than the batch (attack a wider layer or a smaller batch)"
            )
        self.m_live = m_live
        self.Ll = L[live_idx]
        self.Ll_norm = row_norm[live_idx]

        # Z = (W Rᵀ) Q⁻ᵀ + b for any candidate disaggregation Q; W Rᵀ over column chunks
        WR = torch.zeros(m, B, dtype=DTYPE, device=dev)
        step = 1 << 16
        for j in range(0, n, step):
            WR += float64_rows(W[:, j:j + step], dev) @ R[:, j:j + step].T

        # one direction up to the final zero tolerance: refits of one direction from different zero
        # sets differ by an angle of about zero_tol, which matters on noisy updates (measured, CIFAR-10
        # B=10 DP σ=1e-4: 1−|cos| up to 2.4e-6 between copies, distinct samples' |cos| <= 0.48; at the
        # float dedup_cos each copy counted as a new candidate -- 1 817 of them -- and the selection
        # chose several copies of one sample). Without noise: float64 clients keep dedup_cos; float32
        # ones merge directions within 1.2e-4 rad (1−|cos| ≤ 7.2e-9), far below distinct samples'.
        dedup = min(cfg.dedup_cos, 1.0 - 0.5 * (10 * zero_tol) ** 2)
        diag["dedup_cos"] = dedup
        self.cands = Candidates(B, dedup)
        if generator.device != dev:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            gen = torch.Generator(device=dev).manual_seed(seed)
        else:
            gen = generator
        K = proposals_per_step(cfg, dev, m_live, B)
        diag["proposals_per_step"] = K
        if prior is not None:
            prior = prior.to(dev, DTYPE)[live_idx]
        self.state = SearchState(self.Ll, self.Ll_norm, B, zero_tol, threshold, self.cands, gen, K,
                                 WR[live_idx], b[live_idx], live_idx, prior, db=db[live_idx])
        self.finder = make_finder(cfg)
        self.proposals = 0
        self.degenerate = 0
        self.bar = None
        if cfg.progress and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=B, desc=f"SPEAR b={B}", unit="dir", leave=False)
            except ImportError:  # pragma: no cover
                self.bar = None

        # selection works on the CPU (B×B problems); L, WR, db, b there too
        self.Lc, self.WRc, self.dbc, self.bc = (t.to("cpu") for t in (L, WR, db, b))
        self.best: Trial | None = None
        self.t_best = 0.0  # when `best` last lowered its violations (the stall rule's clock)
        self.stage2_swaps = 0

    # ------------------------------------------------------------------ find directions
    def find_directions(self) -> None:
        """One step of the finder: its proposals, filtered into candidates."""
        B = self.B
        if B == 1:
            ones = torch.ones(1, dtype=DTYPE)
            self.cands.add(ones, torch.ones(self.m_live, dtype=torch.bool), 0)
            return
        q, cost = self.finder.propose(self.state)
        # the last `certified` proposals carry an input-side certificate (finders/completion.py):
        # exempt from the mixture screen, whose one-row test their kernels may fail
        first_cert = len(q) - min(len(q), int(getattr(self.finder, "certified", 0) or 0))
        if len(q):
            self.filter(q, first_cert)
        self.proposals += cost

    # ------------------------------------------------------------------ filter
    def filter(self, q: Tensor, first_cert: int) -> None:
        """Sparsity filter, mixture screen, exact refit and de-duplication of proposals ``q``
        (rows from ``first_cert`` on are certified: no mixture screen)."""
        Ll, Ll_norm, zero_tol, fragile, threshold = self.Ll, self.Ll_norm, self.zero_tol, self.fragile, self.threshold
        zmask = zero_mask(Ll, Ll_norm, q, zero_tol)
        passed = (zmask.sum(0) >= threshold).nonzero().squeeze(1)
        # most proposals that pass re-find a known direction: count them, skip the refit
        passed = passed[~self.cands.count_known(q[passed])]
        if len(passed):
            keep = screen(Ll, zmask[:, passed], zero_tol, fragile)
            cert = passed >= first_cert
            if bool(cert.any()):
                keep[cert] = screen(Ll, zmask[:, passed[cert]], zero_tol, None)
            self.degenerate += int((~keep).sum())
            passed = passed[keep]
        for k in passed.tolist():
            qr = refine(Ll, zmask[:, k], zero_tol, None if k >= first_cert else fragile)
            if qr is None:
                self.degenerate += 1
                continue
            zr = zero_mask(Ll, Ll_norm, qr[None], zero_tol)[:, 0]
            if int(zr.sum()) >= threshold and self.cands.add(qr, zr.cpu(), self.proposals + k):
                if self.bar is not None:
                    self.bar.update(min(1, self.B - self.bar.n))

    # ------------------------------------------------------------------ select, check
    def select(self) -> list[int] | None:
        """The greedy choice of ``B`` well-conditioned candidates, sparsest first."""
        return greedy_select(self.cands, self.B, self.cfg.min_singular)

    def check(self, sel: list[int]) -> Trial | None:
        """Scales from the bias gradient and the sign check of a choice; the second stage swaps
        directions while that lowers the violations."""
        args = (self.Lc, self.dbc, self.WRc, self.bc, self.zero_tol)
        trial = scale_and_check(sel, self.cands.dirs, *args)
        if trial is not None and trial.total > 0 and self.cfg.second_stage:
            trial, swaps = repair(trial, self.cands, *args, self.cfg.min_singular)
            self.stage2_swaps += swaps
        return trial

    def attempt(self) -> bool:
        """Select and check; keep the best choice so far. True when it passes the check."""
        sel = self.select()
        if sel is None:
            return False
        trial = self.check(sel)
        if trial is None:
            return False
        best = self.best
        if best is None or trial.total <= best.total:
            if best is None or trial.total < best.total:
                self.t_best = time.perf_counter()
            self.best = trial
            # the samples this choice got right: the completion finder builds on them when
            # spurious candidates (mixtures) outnumber the missing samples
            self.state.confirmed = [i for i, v in zip(trial.sel, trial.violations.tolist()) if v == 0]
        return trial.total == 0

    # ------------------------------------------------------------------ the loop
    def run(self, deadline: float | None) -> Trial | None:
        """Find, filter, select and check until a choice passes the check or a stop rule fires
        (proposal cap, deadline, stall rule); returns the best checked choice (None: none)."""
        cfg, B, cands, diag = self.cfg, self.B, self.cands, self.diag
        last_tried = -1
        timed_out = stalled = False
        attempt_time = 0.0
        t_search = time.perf_counter()
        while True:
            self.find_directions()
            # Selection is retried when new candidates arrived, but never allowed to cost more time
            # than the search itself (with correlated inputs, mixtures of directions keep arriving).
            search_time = time.perf_counter() - t_search - attempt_time
            if len(cands) >= B and len(cands) != last_tried and (attempt_time <= search_time or B == 1):
                last_tried = len(cands)
                ta = time.perf_counter()
                ok = self.attempt()
                attempt_time += time.perf_counter() - ta
                if ok:
                    diag["proposals_to_success"] = self.proposals
                    break
            if cfg.max_proposals is not None and self.proposals >= cfg.max_proposals:
                break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
            # stall rule: the only doubts left are sub-tolerance gradients through active neurons
            # (a true float32 answer can look like that; check.py) and nothing better came for stall_s
            if (cfg.stall_s is not None and self.best is not None and self.best.hard_total == 0
                    and time.perf_counter() - self.t_best >= cfg.stall_s):
                stalled = True
                break
            if B == 1:
                break
        if self.bar is not None:
            self.bar.close()
        if "proposals_to_success" not in diag and len(cands) >= B and len(cands) != last_tried:
            if self.attempt():  # the last candidates found before the cap/deadline get their chance
                diag["proposals_to_success"] = self.proposals
        diag.update(
            proposals=self.proposals,
            candidates=len(cands),
            degenerate_proposals=self.degenerate,
            stage2_swaps=self.stage2_swaps,
            timed_out=int(timed_out),
            stalled=int(stalled),
            time_search_s=time.perf_counter() - t_search,
        )
        return self.best


__all__ = ["DirectionSearch", "proposals_per_step", "float64_rows"]
