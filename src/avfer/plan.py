"""The plan of a config: what the workflow trains, fuses and packages, the wildcard patterns of its
rules, what settings reach which rule, and the consistency checks the schema cannot express.

``rules/common.smk`` builds one :class:`Plan` when Snakemake parses the workflow (its model lists,
wildcard constraints and some rule ``params`` come from it) and ``avfer check-config`` builds the
same one, so a config one of them rejects the other rejects too, with the same one-line message.
No torch import (Snakemake parses the workflow in every job).

    >>> plan = Plan(validate_config({"cnn": {"backbones": ["resnet18"]}}))  # doctest: +SKIP
    >>> plan.trained_models()[:2], plan.runs  # doctest: +SKIP
    (['cnn_resnet18', 'gru_resnet18'], ['results'])
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from avfer.config import FEATURE_KEYS, ConfigError, feature_settings, result_settings
from avfer.errors import AvferError
from avfer.models.names import (
    AUDIO_PATTERN,
    HEAD_PATTERN,
    OPTION_PATTERN,
    SEED_PATTERN,
    parse_model_name,
)

# cnn keys that shape the pre-trained model (pretrain_cnn re-runs only when these change)
PRETRAIN_CNN_KEYS = (
    "input_size", "in_chans", "normalization", "augment", "pretrained_path", "amp", "pretrained_paths",
    "pretrained",
)  # fmt: skip
# the config section of each family of sequence models (a seeded one's settings and resources)
SEQUENCE_SECTION = {"temporal": "temporal", "audio": "audio_models", "early_fusion": "early_fusion"}


def _alternatives(names: list[str]) -> str:
    """A regex matching exactly one of ``names`` (one that matches nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


class Plan:
    """What a validated config (:func:`avfer.config.validate_config`) makes the workflow do.

    Raises :class:`~avfer.config.ConfigError` (``<source>: <problem>``, one line) when the config
    asks for something the workflow cannot do (:meth:`problems`).
    """

    def __init__(self, config: Mapping[str, Any], source: str = "config") -> None:
        self.config = config
        self.source = source
        for problem in self.problems():
            raise ConfigError(f"{source}: {problem}")

    # --- what runs

    @property
    def backbones(self) -> list[str]:
        """The CNN backbones (each gets features, temporal heads, early fusion)."""
        return list(self.config["cnn"]["backbones"])

    @property
    def video_models(self) -> list[str]:
        """The clip-level video networks (video_models.models)."""
        return list(self.config["video_models"]["models"])

    @property
    def pretrain(self) -> bool:
        """Static pre-training runs: pretrain.enabled, or (null) whether pretrain.datasets lists any."""
        pre = self.config["pretrain"]
        return bool(pre["datasets"]) if pre["enabled"] is None else bool(pre["enabled"])

    @property
    def fer2013(self) -> list[str]:
        """The FER2013 csv files of pre-training (static evaluation reads the first)."""
        return [d["path"] for d in self.config["pretrain"]["datasets"] if d["format"] == "fer2013"]

    @property
    def static_eval(self) -> bool:
        """The static evaluation of the pre-trained backbones runs (pretrain.evaluate_static)."""
        return bool(self.config["pretrain"]["evaluate_static"])

    @property
    def runs(self) -> list[str]:
        """Protocol run folders: ``results`` on the dataset's splits, or ``results/fold-<k>``."""
        results, folds = self.config["results"], self.config["dataset"]["folds"]
        return [f"{results}/fold-{k}" for k in range(folds)] if folds else [results]

    @property
    def bundle_run(self) -> str:
        """The run folder results/bundle packages: the only run, or fold ``bundle.fold`` (0)."""
        fold = self.config["bundle"]["fold"]
        return self.runs[fold or 0] if self.config["dataset"]["folds"] else self.runs[0]

    def run_fold(self, run: str) -> int | None:
        """The fold index of a run folder (None for the single run on the dataset's splits)."""
        return self.runs.index(run) if self.config["dataset"]["folds"] else None

    # --- model names

    def trained_models(self) -> list[str]:
        """Every model the config trains: cnn_<b>, <head>_<b>, audio_<m>, early<option>_<b>,
        e2e_<model>_<b>, the video networks."""
        cfg, bbs = self.config, self.backbones
        out = [f"cnn_{b}" for b in bbs]
        out += [f"{h}_{b}" for b in bbs for h in cfg["temporal"]["heads"]]
        out += [f"audio_{m}" for m in cfg["audio_models"]["models"]]
        out += [f"early{o}_{b}" for b in bbs for o in cfg["early_fusion"]["options"]]
        out += [f"e2e_{m}_{b}" for b in bbs for m in cfg["end_to_end"]["models"]]
        return out + self.video_models

    def fused_models(self) -> list[str]:
        """The members of the late fusion (fusion.models; empty = every trained model)."""
        return list(self.config["fusion"]["models"]) or self.trained_models()

    def summary_models(self) -> list[str]:
        """Models in the summary table: every trained model, plus any other fused model."""
        models = self.trained_models()
        return models + [m for m in self.fused_models() if m not in models]

    def bundle_models(self) -> list[str]:
        """The fused models results/bundle/ packages beside its face CNN (the first backbone's)."""
        return [m for m in self.fused_models() if m != f"cnn_{self.backbones[0]}"]

    def bundle_cnns(self) -> list[str]:
        """The face CNNs of other backbones whose features a bundled model reads, not fused
        themselves (results/bundle/cnns/)."""
        members = self.bundle_models()
        sources = {parse_model_name(m).feature_cnn for m in members}
        return sorted(c for c in sources - {None, f"cnn_{self.backbones[0]}"} if c not in members)

    def sequence_section(self, model: str) -> str:
        """The config section of a sequence model (temporal, audio_models or early_fusion)."""
        return SEQUENCE_SECTION[parse_model_name(model).family]

    # --- wildcard patterns of the rules

    head_re = HEAD_PATTERN
    audio_model_re = AUDIO_PATTERN
    option_re = OPTION_PATTERN
    seed_re = SEED_PATTERN

    @property
    def backbone_re(self) -> str:
        return _alternatives(self.backbones)

    @property
    def video_model_re(self) -> str:
        return _alternatives(self.video_models)

    @property
    def run_re(self) -> str:
        return _alternatives(self.runs)

    @property
    def e2e_model_re(self) -> str:
        """The sequence model inside ``e2e_<model>_<backbone>``."""
        return rf"({HEAD_PATTERN}|early{OPTION_PATTERN})"

    @property
    def sequence_model_re(self) -> str:
        """The base of a seeded sequence model (``<model>@seed<k>``)."""
        return rf"(({HEAD_PATTERN}|early{OPTION_PATTERN})_({self.backbone_re})|audio_({AUDIO_PATTERN}))"

    # --- the settings rules carry as params (what changes their results)

    def pretrain_cnn_settings(self) -> dict[str, Any]:
        """The cnn keys that shape a pre-trained model (pretrain_cnn)."""
        return {k: self.config["cnn"][k] for k in PRETRAIN_CNN_KEYS}

    def finetune_cnn_settings(self) -> dict[str, Any]:
        """The cnn section finetune_cnn reads: not the feature layer (the weights do not depend on it)."""
        return result_settings(self.config["cnn"], "backbones", *FEATURE_KEYS)

    def features(self, backbone: str) -> dict[str, Any]:
        """The feature layer read of ``backbone``'s CNN (extract_cnn_features, end to end, bundle)."""
        return feature_settings(self.config["cnn"], backbone)

    # --- checks

    def fusion_member_problem(self, name: str) -> str | None:
        """Why the workflow cannot train the fused model ``name`` (None when it can)."""
        try:
            parsed = parse_model_name(name)
        except AvferError as exc:
            return str(exc)
        if parsed.family == "video":
            known = self.video_models
            if parsed.base not in known:
                return f"{parsed.base} is not in video_models.models ({', '.join(known) or 'none'})"
        elif parsed.backbone is not None and parsed.backbone not in self.backbones:
            return f"{parsed.backbone} is not in cnn.backbones ({', '.join(self.backbones) or 'none'})"
        return None

    def problems(self) -> Iterator[str]:
        """Every way the config asks for something the workflow cannot do, one line each."""
        cfg, pre = self.config, self.config["pretrain"]
        if pre["enabled"] and not pre["datasets"]:
            yield "pretrain.enabled is true but pretrain.datasets lists no dataset"
        if self.static_eval and not (self.pretrain and self.fer2013):
            yield "pretrain.evaluate_static needs pre-training on a fer2013 dataset"
        for m in cfg["end_to_end"]["models"]:
            if (
                m not in cfg["temporal"]["heads"]
                and m.removeprefix("early") not in cfg["early_fusion"]["options"]
            ):
                yield f"end_to_end.models lists {m}, which temporal.heads / early_fusion.options do not train"
        for m in cfg["fusion"]["models"]:
            if problem := self.fusion_member_problem(m):
                yield f"fusion.models lists {m}, which the workflow cannot train: {problem}"
        method, methods = cfg["fusion"]["method"], cfg["fusion"]["methods"]
        if method != "auto" and method not in methods:
            yield f"fusion.method is {method}, which is not in fusion.methods ({', '.join(methods)})"
        fold, folds = cfg["bundle"]["fold"], cfg["dataset"]["folds"]
        if fold is not None and fold >= max(folds, 1):
            has = f"dataset.folds is {folds}" if folds else "dataset.folds is 0 (one run, no folds)"
            yield f"bundle.fold is {fold}, but {has}"
        cnn = cfg["cnn"]
        if cnn["pretrained"] == "ferplus" and not cnn["pretrained_path"]:
            from avfer.models.zoo import DEFAULT_MODEL, shipped_entry

            entry = shipped_entry(DEFAULT_MODEL)
            for b in self.backbones:
                if b not in cnn["pretrained_paths"] and (b, cnn["in_chans"]) != (
                    entry["backbone"],
                    entry["in_chans"],
                ):
                    yield (
                        f"cnn.pretrained: ferplus initialises a {entry['backbone']} with {entry['in_chans']}"
                        f" input channel(s) (the shipped face model), not {b} with {cnn['in_chans']}; set"
                        " cnn.backbones / cnn.in_chans to match, or cnn.pretrained: none"
                    )

    def notes(self) -> list[str]:
        """What a user may not expect of the config (logged when the workflow starts)."""
        pre = self.config["pretrain"]
        if not self.backbones or self.pretrain:
            return []
        why = "pretrain.enabled is false" if pre["enabled"] is False else "pretrain.datasets is empty"
        cnn = self.config["cnn"]
        shipped = (
            "the shipped ferplus face model" if cnn["pretrained"] == "ferplus" else "random initialisation"
        )
        init = cnn["pretrained_path"] or shipped
        return [f"no static pre-training ({why}); the CNNs are fine-tuned from {init}"]
