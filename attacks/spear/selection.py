"""Choosing B directions among the candidates, scaling them by the bias gradient, and the
second greedy stage (Dimitrov et al. 2024 §4: greedy selection, scales from ``dL/db = L Q' c``).

Departure from the paper: our selection re-runs whenever new candidates arrive and stops at the
first choice that passes the sign check (:mod:`attacks.spear.check`), instead of one selection
after all sampling; the paper's second stage is our :func:`repair`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attacks.spear.check import sign_violations
from attacks.spear.filtering import Candidates


def greedy_select(cands: Candidates, B: int, min_singular: float, exclude=()) -> list[int] | None:
    """Pick B candidates, sparsest first, each keeping the chosen set well conditioned."""
    order = sorted(range(len(cands)), key=lambda i: (-cands.zeros[i], -cands.hits[i]))
    chosen: list[int] = []
    for i in order:
        if i in exclude:
            continue
        trial = cands.dirs[chosen + [i]]
        if torch.linalg.svdvals(trial)[-1] >= min_singular:
            chosen.append(i)
            if len(chosen) == B:
                return chosen
    return None


@dataclass
class Trial:
    """One choice of B directions, scaled and checked (cheaply, without forming X)."""

    sel: list[int]
    Q: Tensor  # B×B, columns are the scaled directions
    violations: Tensor  # (B,) per-sample sign-check violations, both kinds
    hard: Tensor  # (B,) of them, gradient through a clearly inactive neuron (check.sign_violations)

    @property
    def total(self) -> int:
        return int(self.violations.sum())

    @property
    def hard_total(self) -> int:
        return int(self.hard.sum())


def scale_and_check(sel, dirs, L, db, WR, b, zero_tol) -> Trial | None:
    """Scale chosen unit directions by the bias gradient (dL/db = L Q' c) and sign-check them."""
    Qp = dirs[sel].T
    c = torch.linalg.lstsq(L @ Qp, db[:, None]).solution[:, 0]
    if not torch.isfinite(c).all() or bool((c.abs() < 1e-300).any()):
        return None
    Q = Qp * c[None, :]
    try:
        hard, soft = sign_violations(WR, b, L, Q, zero_tol)
    except RuntimeError:  # singular Q
        return None
    return Trial(list(sel), Q, hard + soft, hard)


def repair(trial: Trial, cands: Candidates, L, db, WR, b, zero_tol, min_singular,
           max_alternatives: int = 32, max_evaluations: int = 512) -> tuple[Trial, int]:
    """Second greedy stage: swap the direction of the worst sample for an unused candidate while
    that lowers the total number of sign-check violations. Returns the trial and swaps made."""
    order = sorted(range(len(cands)), key=lambda i: (-cands.zeros[i], -cands.hits[i]))
    swaps = evaluations = 0
    while trial.total > 0 and evaluations < max_evaluations:
        improved = None
        for j in torch.argsort(trial.violations, descending=True).tolist():
            if trial.violations[j] == 0:
                break
            tried = 0
            for i in order:
                if i in trial.sel:
                    continue
                tried += 1
                if tried > max_alternatives or evaluations >= max_evaluations:
                    break
                sel = trial.sel.copy()
                sel[j] = i
                if torch.linalg.svdvals(cands.dirs[sel])[-1] < min_singular:
                    continue
                evaluations += 1
                t = scale_and_check(sel, cands.dirs, L, db, WR, b, zero_tol)
                if t is not None and t.total < trial.total:
                    improved = t
                    break
            if improved is not None:
                break
        if improved is None:
            break
        trial, swaps = improved, swaps + 1
    return trial, swaps
