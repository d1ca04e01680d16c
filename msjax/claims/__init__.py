"""The claims suite: each paper's headline comparison, at equal budget.

    msjax claims --paper {protomm,infomae,promobal,all}[,...] --workdir DIR \
        [--seeds 3] [--budget default|smoke] [--settings default,skewed]
    msjax claims --paper ... --workdir DIR --lr-grid [--grid-seeds 100,101,102]

:func:`run_claims` trains every run of :mod:`msjax.claims.suites` for each
seed and generator setting (:mod:`msjax.claims.settings`), resuming where a
killed suite stopped, scores it (:mod:`msjax.claims.scoring`) and writes
``DIR/claims.md`` and one PNG chart per paper (:mod:`msjax.claims.report`).
:func:`run_lr_grid` trains every run at every rate of the learning-rate
grid on seeds apart from the table's and writes ``DIR/lr_grid.md``.
"""

from msjax.claims.runner import run_claims, run_lr_grid
from msjax.claims.settings import SETTINGS
from msjax.claims.suites import BUDGETS, PAPERS

__all__ = ["BUDGETS", "PAPERS", "SETTINGS", "run_claims", "run_lr_grid"]
