"""Late fusion: vote / accuracy- / class-weighted rules and a vectorised simplex weight search,
cross-validated over the validation clips (``late``, ``search``, ``run``)."""

from avfer.fusion.late import (
    METHODS,
    FusionRule,
    cross_validate,
    fit_rule,
    load_scores,
    nested_cross_validate,
)
from avfer.fusion.run import run_late_fusion
from avfer.fusion.search import search_class_weights, search_weights, simplex_grid
from avfer.fusion.summary import summarize_cv, summarize_models

__all__ = [
    "METHODS",
    "FusionRule",
    "cross_validate",
    "fit_rule",
    "load_scores",
    "nested_cross_validate",
    "run_late_fusion",
    "search_class_weights",
    "search_weights",
    "simplex_grid",
    "summarize_cv",
    "summarize_models",
]
