"""The tables a reader looks at: ``summary.csv`` of one run (every model and the late fusion,
each number named by what it was fitted on), the clips that got a fallback, and the k-fold
``cv_summary.json`` (mean ± std over folds)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avfer.fusion.late import read_truth, truth_metrics
from avfer.io.atomic import atomic_path, write_json
from avfer.metrics import PROB_COLUMNS, fallback_clips, read_predictions
from avfer.models.specs import parse_model_name

SCORES = ("accuracy", "uar", "macro_f1")


def _scores(prefix: str, metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    return {f"{prefix}_{k}": (metrics or {}).get(k) for k in SCORES}


def _hidden_test(predictions: pd.DataFrame, hidden: Mapping[str, str]) -> dict[str, Any] | None:
    test = predictions[predictions["split"] == "test"]
    return truth_metrics(test["clip_id"].tolist(), test[PROB_COLUMNS].to_numpy().argmax(axis=1), hidden)


def summarize_models(
    metrics: Mapping[str, str],
    late_fusion: str | Path,
    out_csv: str | Path,
    *,
    predictions: Mapping[str, str],
    out_fallbacks: str | Path | None = None,
    truth: str | None = None,
) -> pd.DataFrame:
    """One row per model and one for the late fusion.

    Single models: ``val_*`` (held out when the protocol has a dev split: see ``selected_on``),
    ``test_*`` (labelled test clips of the sheet, else ``truth``'s hidden labels) and
    ``n_fallback`` (clips it could not see). The fusion row: ``val_fitted_*`` (in-sample),
    ``cv_*`` (nested cross-validation on val) and ``test_*``. ``out_fallbacks`` lists every clip
    that got a model's fallback (model, clip_id, split, label, status).
    """
    hidden = read_truth(truth) if truth else {}
    fusion = json.loads(Path(late_fusion).read_text())
    selected_on = fusion.get("protocol", {}).get("model_selection", "val")
    rows, fallbacks = [], []
    for name, path in metrics.items():
        m = json.loads(Path(path).read_text())
        df = read_predictions(predictions[name])
        test = m.get("test") or (_hidden_test(df, hidden) if hidden else None)
        parsed = parse_model_name(name)
        rows.append(
            {
                "model": name,
                "family": parsed.family,
                "modality": parsed.modality,
                "selected_on": selected_on,
                **_scores("val", m.get("val")),
                **_scores("val_fitted", None),
                **_scores("cv", None),
                **_scores("test", test),
                "n_fallback": int((df["status"] != "ok").sum()),
                "fusion_weight": fusion["weights"].get(name),
            }
        )
        fallbacks.append(fallback_clips(df).assign(model=name))
    rows.append(
        {
            "model": f"late_fusion ({fusion['method']})",
            "family": "late_fusion",
            "modality": "audio-visual",
            "selected_on": "val (nested cv)",
            **_scores("val", None),
            **_scores("val_fitted", fusion["val_fitted"]),
            **_scores("cv", fusion["cv"]),
            **_scores("test", fusion.get("test")),
            "n_fallback": None,
            "fusion_weight": None,
        }
    )
    table = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    if out_fallbacks is not None:
        cols = ["model", "clip_id", "split", "label", "status"]
        listed = pd.concat(fallbacks, ignore_index=True) if fallbacks else pd.DataFrame(columns=cols)
        with atomic_path(out_fallbacks) as tmp:
            listed.loc[:, cols].to_csv(tmp, index=False)
    return table


def _mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    vals = np.array([v for v in values if v is not None], dtype=float)
    if not len(vals):
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": float(vals.mean()),
        "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
        "n": len(vals),
    }


def cv_protocol(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """What each fold of a k-fold run used for what (``cv_summary.json``'s ``protocol``), from the
    ``dataset`` config section (:func:`avfer.datasets.splits.make_splits`)."""
    carved = dataset["fold_val"] == "carved"
    train = "the other folds" if carved else "the other folds but the next one"
    share = dataset["fold_val_fraction"]
    val = (
        f"whole groups of the training folds ({share} of their labelled clips)"
        if carved
        else "fold k+1 mod K"
    )
    dev = dataset["dev_fraction"]
    return {
        "folds": dataset["folds"],
        "val": dataset["fold_val"],
        "test": "fold k",
        "train": train,
        "val_from": val,
        "dev": f"carved from train ({dev} of its labelled clips)" if dev else "none (models select on val)",
    }


def summarize_cv(
    fusions: Sequence[str | Path],
    metrics: Mapping[str, Sequence[str | Path]],
    out_json: str | Path,
    protocol: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``cv_summary.json`` of a k-fold run: for the late fusion (``fusions``, one late_fusion.json
    per fold) and every model (``metrics``: model → one metrics.json per fold), the mean ± std
    (sample std) over the folds of the test accuracy, UAR and macro-F1, and the per-fold values;
    ``protocol``: which clips trained, selected and fused (:func:`cv_protocol`).
    Each fold's test clips were held out of everything that fold fitted or chose."""

    def entry(per_fold: list[dict[str, Any] | None]) -> dict[str, Any]:
        out: dict[str, Any] = {k: _mean_std([(f or {}).get(k) for f in per_fold]) for k in SCORES}
        out["per_fold"] = [{k: (f or {}).get(k) for k in ("n", *SCORES)} for f in per_fold]
        return out

    fold_results = [json.loads(Path(p).read_text()) for p in fusions]
    result = {
        "folds": len(fold_results),
        "split": "test (each fold's held-out clips)",
        "protocol": dict(protocol or {}),
        "late_fusion": {
            **entry([r.get("test") for r in fold_results]),
            "methods": [r["method"] for r in fold_results],
            "cv_on_val": entry([r.get("cv") for r in fold_results]),
        },
        "models": {
            name: entry([json.loads(Path(p).read_text()).get("test") for p in paths])
            for name, paths in metrics.items()
        },
    }
    write_json(out_json, result)
    return result
