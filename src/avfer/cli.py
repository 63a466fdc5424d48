"""Command line: ``avfer make-demo``, ``avfer sample-sheet``, ``avfer check-config``.

The pipeline itself runs through Snakemake; these commands expose the pieces a user wants
on their own (generate the demo data, inspect a dataset, validate a config).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avfer.errors import AvferError


def _make_demo(args: argparse.Namespace) -> None:
    from avfer.config import load_config
    from avfer.demo import make_demo

    cfg = load_config(args.config)
    demo = dict(cfg["demo"])
    if args.clips_per_class is not None:
        demo["clips_per_class"] = args.clips_per_class
    out = Path(args.out or cfg["dataset"]["root"])
    seed = cfg["seed"] if args.seed is None else args.seed
    print(json.dumps(make_demo(out, seed=seed, **demo), indent=2, default=str))


def _sample_sheet(args: argparse.Namespace) -> None:
    from avfer.config import load_config
    from avfer.datasets import build_sample_sheet, write_sample_sheet

    sheet = build_sample_sheet(load_config(args.config)["dataset"])
    if args.out:
        write_sample_sheet(sheet, args.out)
    counts = sheet.groupby(["split", "label"]).size().unstack(fill_value=0)
    print(counts.to_string())
    print(f"{len(sheet)} clips in {sheet['shard'].nunique()} shards")


def _check_config(args: argparse.Namespace) -> None:
    import yaml

    from avfer.config import DEMO_CONFIG, load_config

    cfg = load_config(args.config or None)
    if args.print:
        print(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), end="")
    else:
        names = ", ".join(args.config) if args.config else f"{DEMO_CONFIG} (the demo)"
        print(f"{names}: valid")


def _convert_vgg_face(args: argparse.Namespace) -> None:
    from avfer.models.weights import convert_vgg_face

    convert_vgg_face(args.src, args.dst)
    print(f"{args.dst}: vgg16 weights (use cnn.pretrained_paths: {{vgg16: {args.dst}}}, feature_layer: fc6)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``avfer`` command."""
    parser = argparse.ArgumentParser(prog="avfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-demo", help="generate the synthetic AFEW-style demo dataset")
    p.add_argument("--config", help="config file (demo and seed keys; default: the demo config)")
    p.add_argument("--out", help="output folder (default: dataset.root of the config)")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--clips-per-class", type=int, help="override demo.clips_per_class")
    p.set_defaults(func=_make_demo)

    p = sub.add_parser("sample-sheet", help="list a dataset's clips per split and label")
    p.add_argument("--config", help="config file (default: the demo config)")
    p.add_argument("--out", help="also write the sample sheet CSV here")
    p.set_defaults(func=_sample_sheet)

    p = sub.add_parser(
        "check-config",
        help="validate the config a run would use: the files (merged in order, like repeated "
        "--configfile) completed from config/schema.yaml's defaults; no file = the demo",
    )
    p.add_argument("config", nargs="*", help="config file(s); none = config/config.yaml (the demo)")
    p.add_argument("--print", action="store_true", help="print the resolved config (YAML)")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("convert-vgg-face", help="convert the VGG-Face weights (vgg_face_dag.pth) for vgg16")
    p.add_argument("src", help="the published VGG-Face PyTorch weights (conv1_1 ... fc8)")
    p.add_argument("dst", help="output state_dict for cnn.pretrained_paths: {vgg16: ...}")
    p.set_defaults(func=_convert_vgg_face)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except AvferError as exc:
        print(f"avfer: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
