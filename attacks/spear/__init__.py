"""SPEAR (Dimitrov et al., NeurIPS 2024): exact gradient inversion of a batch from one linear
layer followed by ReLU. The engine's steps are this package's modules:

``factorisation`` (low-rank factors of dL/dW) -> ``finders`` (candidate directions: submatrix
sampling as in the paper, or a subspace l1 search) -> ``filtering`` (sparsity filter, mixture
screen, refit, de-duplication) -> ``selection`` (greedy choice, bias-gradient scales, second
stage) -> ``check`` (ReLU sign check and gradient residual). ``engine.spear_core`` runs them;
``attack.SpearAttack`` puts them behind the attack interface.
"""
from attacks.spear.attack import SpearAttack
from attacks.spear.check import sign_check
from attacks.spear.config import SpearConfig
from attacks.spear.engine import SpearResult, spear_core
from attacks.spear.factorisation import Factors, low_rank_factors
from attacks.spear.selection import greedy_select

__all__ = ["SpearAttack", "SpearConfig", "SpearResult", "spear_core", "low_rank_factors", "Factors",
           "greedy_select", "sign_check"]
