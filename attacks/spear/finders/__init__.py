"""Direction finders: each proposes unit vectors ``q`` in R^B that may be columns of ``Q``.

A finder only proposes; the search (:mod:`attacks.spear.search`) filters proposals by sparsity,
screens out mixtures, refits, de-duplicates, selects and checks. Every finder therefore inherits
SPEAR's exactness: a wrong proposal costs time, never correctness.

Interface: ``finder.propose(state) -> (proposals K×B, cost)`` where ``cost`` is the number of
proposals the finder counts against ``max_proposals`` (sampled submatrices).

The finders are registered by name in :data:`FINDERS` (``attack.search``), each built from the
SPEAR config by its ``from_config``; :class:`~attacks.spear.config.SpearConfig` checks the name
against this table, so it is the one list of finders.
"""
from __future__ import annotations

from attacks.spear.finders.dictionary import DictionaryLearning
from attacks.spear.finders.guided import GuidedSampler
from attacks.spear.finders.l1 import L1Search
from attacks.spear.finders.sampling import SubmatrixSampler
from attacks.spear.finders.state import SearchState, draw_rows, rows_from_found, sample_rows

# attack.search -> finder class (each has ``from_config(cfg)``)
FINDERS = {
    "l1": L1Search,
    "sampling": SubmatrixSampler,
    "dictionary": DictionaryLearning,
    "guided": GuidedSampler,
}


def make_finder(cfg):
    """The finder named by ``cfg.search`` (a :class:`~attacks.spear.config.SpearConfig`, which
    checked the name), built from the config's knobs."""
    return FINDERS[cfg.search].from_config(cfg)


__all__ = ["FINDERS", "make_finder", "SearchState", "draw_rows", "sample_rows", "rows_from_found",
           "L1Search", "SubmatrixSampler", "DictionaryLearning", "GuidedSampler"]
