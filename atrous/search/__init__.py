"""Dilation-rate search by gradient descent (RegSeg Sec 3.4, Fig. 7, Table 2).

Train ``regseg_search`` (fractional, trainable dilation rates; :mod:`atrous.models.regseg_search`),
log every rate each epoch (:class:`RateLog`), then round by the paper's rule
(:func:`round_dilations`) into a RegSeg config to retrain. ``atrous search RECIPE --out DIR`` runs
it all (:func:`run_search`).
"""
from .log import RateLog, plot_rates
from .rounding import (DilationBoundWarning, bound_violations, describe, round_block, round_dilations,
                       warn_bound)
from .run import SEARCH_DEFAULTS, SearchHooks, load_search_config, run_search

__all__ = ["SEARCH_DEFAULTS", "DilationBoundWarning", "RateLog", "SearchHooks", "bound_violations", "describe",
           "load_search_config", "plot_rates", "round_block", "round_dilations", "run_search", "warn_bound"]
