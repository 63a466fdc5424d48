"""Late fusion: vote / accuracy- / class-weighted rules and a vectorised simplex weight search,
cross-validated over the validation clips (``late``, ``search``, ``run``)."""

from avfer.fusion.late import METHODS, FusionRule, cross_validate, fit_rule, load_scores
from avfer.fusion.run import run_late_fusion, summarize_models
from avfer.fusion.search import search_class_weights, search_weights, simplex_grid

__all__ = [
    "METHODS",
    "FusionRule",
    "cross_validate",
    "fit_rule",
    "load_scores",
    "run_late_fusion",
    "search_class_weights",
    "search_weights",
    "simplex_grid",
    "summarize_models",
]
