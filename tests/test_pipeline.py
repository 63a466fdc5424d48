"""End to end on a small demo: `snakemake <R>/late_fusion.json` builds everything from the raw
clips, the late fusion beats every single-modality model, the outputs are complete, the report
has the summary table, and a run interrupted during training resumes to the same result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
SINGLE = ("visual", "audio")


def _merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def _config(results: Path) -> dict:
    """The demo config (a --configfile replaces it whole, so start from a copy) with one shard per
    split, fewer models and shorter trainings; the late fusion fuses single-modality models only."""
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return _merge(demo, {
        "results": str(results),
        "dataset": {"root": str(results / "data" / "demo"), "shard_size": 64},
        "pretrain": {"datasets": [{"format": "fer2013", "path": str(results / "data/demo/fer2013.csv")}]},
        "demo": {"fer_per_class": 30},
        "temporal": {"heads": ["gru", "bgru_att"], "train": {"epochs": 20, "patience": 6}},
        "early_fusion": {"options": ["d"], "train": {"epochs": 20, "patience": 6}},
        "audio_models": {"train": {"epochs": 25, "patience": 8}},
        "video_models": {"input_size": 32},  # c3d_2layer in the DAG; test_video_models: what it learns
        "fusion": {
            "models": [
                "cnn_mini_xception",
                "gru_mini_xception",
                "bgru_att_mini_xception",
                "audio_mlp",
                "audio_gru",
                "c3d_2layer",  # a video network: the bundle test reproduces it from the videos
            ]
        },
    })  # fmt: skip


def _snakemake(
    configfile: Path, *targets: str, extra: tuple[str, ...] = (), env: dict | None = None, cores: int = 2
) -> subprocess.CompletedProcess:
    """Snakemake on the repository's workflow in the run's own folder, the parent of its results
    (its own ``.snakemake``, whatever config file is given: never the repository's, so tests can
    run side by side)."""
    workdir = Path(yaml.safe_load(configfile.read_text())["results"]).parent
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", str(cores)]
    cmd += [*extra, "--configfile", str(configfile), "--", *targets]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=3000, env=env)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small demo run of the whole DAG (faces, audio, CNN, sequence models, fusion)."""
    base = tmp_path_factory.mktemp("pipeline")
    results = base / "results"
    configfile = base / "config.yaml"
    configfile.write_text(yaml.safe_dump(_config(results)))
    start = time.perf_counter()
    proc = _snakemake(configfile, str(results / "late_fusion.json"), str(results / "summary.csv"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"pipeline: {time.perf_counter() - start:.0f} s")
    return {"results": results, "configfile": configfile}


def _fusion(results: Path) -> dict:
    return json.loads((results / "late_fusion.json").read_text())


def test_late_fusion_beats_every_single_modality(run):
    from avfer.models.specs import parse_model_name

    fusion = _fusion(run["results"])
    singles = {m: r for m, r in fusion["models"].items() if parse_model_name(m).modality in SINGLE}
    assert {parse_model_name(m).modality for m in singles} == set(SINGLE)
    best_val = max(r["val"]["accuracy"] for r in singles.values())
    best_test = max(r["test"]["accuracy"] for r in singles.values())
    # Face alone and voice alone each tell 4 groups apart (at most 4/7 = 0.57); both tell all 7.
    assert fusion["val_fitted"]["accuracy"] >= best_val + 0.15
    assert fusion["cv"]["accuracy"] >= best_val + 0.1
    assert fusion["test"]["accuracy"] >= best_test + 0.15
    # the nested estimate re-does the choice of method and weights without the scored clips
    assert fusion["cv"]["accuracy"] < fusion["val_fitted"]["accuracy"]
    assert fusion["protocol"]["model_selection"] == "dev"


def test_outputs_layout(run):
    results = run["results"]
    fusion = _fusion(results)
    for key in ("method", "weights", "val_fitted", "cv", "protocol", "models", "test_predictions"):
        assert key in fusion
    assert set(fusion["val_fitted"]) >= {"accuracy", "uar", "macro_f1", "confusion"}
    splits = pd.read_csv(results / "splits.csv", dtype=str, keep_default_na=False)
    assert set(splits["split"]) == {"train", "dev", "val", "test"}
    assert not (results / "cv_summary.json").exists()
    sheet = pd.read_csv(results / "samples.csv", dtype=str, keep_default_na=False)
    test_ids = set(sheet.loc[sheet["split"] == "test", "clip_id"])
    assert set(fusion["test_predictions"]) == test_ids
    submitted = {p.stem: p.read_text().strip() for p in (results / "submission").glob("*.txt")}
    assert submitted == fusion["test_predictions"]
    for model in fusion["models"]:
        for name in ("model.pt", "predictions.csv", "metrics.json"):
            assert (results / "models" / model / name).exists(), f"{model}/{name}"
        assert not list((results / "models" / model).glob("resume-*.pt"))
    summary = pd.read_csv(results / "summary.csv")
    # 6 fused models (the video network c3d_2layer among them) + earlyd (not fused) + the fusion row
    assert len(summary) == 8 and summary["family"].iloc[-1] == "late_fusion"
    video = summary[summary["model"] == "c3d_2layer"].iloc[0]
    assert video["family"] == "video" and video["test_accuracy"] > 0
    assert summary["test_accuracy"].notna().all() and summary["val_fitted_accuracy"].notna().sum() == 1
    fallbacks = pd.read_csv(results / "fallbacks.csv", dtype=str, keep_default_na=False)
    # the demo has clips without audio: the audio models give them the fallback, and say so
    assert {"audio_mlp", "audio_gru"} <= set(fallbacks["model"]) and set(fallbacks["status"]) <= {
        "no_audio",
        "no_face",
        "failed",
    }
    audio = pd.read_csv(results / "models" / "audio_mlp" / "predictions.csv", keep_default_na=False)
    assert (audio["status"] == "no_audio").sum() >= 1
    metrics = json.loads((results / "models" / "audio_mlp" / "metrics.json").read_text())
    assert {"dev", "val"} <= set(metrics) and metrics["val"]["seen"]["n"] <= metrics["val"]["n"]
    assert (results / "models" / "earlyd_mini_xception" / "metrics.json").exists()
    fused = pd.read_csv(results / "fusion" / "predictions.csv", dtype={"clip_id": str}, keep_default_na=False)
    assert set(fused["clip_id"]) >= test_ids


def test_run_settings_do_not_rerun_anything(run, tmp_path):
    """Resources, devices and inference batch sizes are not in any rule's params: changing them
    schedules no job."""
    cfg = yaml.safe_load(run["configfile"].read_text())
    for section in ("faces", "pretrain", "cnn", "temporal", "audio_models", "early_fusion"):
        cfg[section].setdefault("resources", {}).update(threads=1, mem_mb=3333, runtime=77)
    for section in ("temporal", "audio_models", "early_fusion"):
        cfg[section]["train"]["device"] = "cpu"
    cfg["faces"].update(device="cpu", batch_size=7)
    cfg["cnn"].update(device="cpu", eval_batch_size=33)
    cfg["pretrain"].update(workers=1)
    cfg["fusion"]["chunk_size"] = 512
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    targets = (str(run["results"] / "late_fusion.json"), str(run["results"] / "summary.csv"))
    proc = _snakemake(changed, *targets, extra=("-n",))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_report_has_the_summary_table(run, tmp_path):
    report = tmp_path / "report.zip"
    proc = _snakemake(
        run["configfile"],
        str(run["results"] / "late_fusion.json"),
        str(run["results"] / "summary.csv"),
        extra=("--report", str(report)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = zipfile.ZipFile(report).namelist()
    assert any(n.endswith("summary.csv") for n in names) or any("Summary" in n for n in names), names[:50]


def test_interrupted_run_resumes_to_the_same_result(run):
    """A training job interrupted (KeyboardInterrupt, as Ctrl-C raises it) right after its second
    epoch's checkpoint, then `--rerun-incomplete`: the job resumes from that checkpoint and gives
    the uninterrupted run's predictions and metrics. The interrupt comes from the training loop's
    test hook (``AVFER_INTERRUPT_AFTER_EPOCHS``), at the same epoch every time. The job is the early
    fusion model that is trained but not fused (every trainer resumes through the same loop:
    test_video_models, test_cnn and test_train_sequence resume each kind in process)."""
    from avfer.train.loop import INTERRUPT_ENV

    results, configfile = run["results"], run["configfile"]
    model = results / "models" / "earlyd_mini_xception"
    target = str(model / "metrics.json")
    before = {name: (model / name).read_bytes() for name in ("predictions.csv", "metrics.json")}
    log = results / "logs" / "train_early_fusion" / "earlyd_mini_xception.log"
    assert "epoch 3:" in log.read_text()  # the uninterrupted job went past the interrupt
    shutil.rmtree(model)
    stopped = _snakemake(configfile, target, env={**os.environ, INTERRUPT_ENV: "2"}, cores=1)
    said = stopped.stderr + (log.read_text() if log.exists() else "")
    assert stopped.returncode != 0 and "interrupted after epoch 1" in said, said[-3000:]
    assert list(model.glob("resume-*.pt")) and not (model / "model.pt").exists()
    again = _snakemake(configfile, target, extra=("--rerun-incomplete",))
    assert again.returncode == 0, again.stderr[-4000:]
    resumed = log.read_text()
    assert "at epoch 2" in resumed.split("resumed from", 1)[-1].splitlines()[0], resumed[-2000:]
    assert not list(model.glob("resume-*.pt"))  # removed once the job completes
    assert json.loads((model / "metrics.json").read_text()) == json.loads(before["metrics.json"])
    assert (model / "predictions.csv").read_bytes() == before["predictions.csv"]


def test_bundle_reproduces_the_test_predictions(run):
    """`snakemake <R>/bundle` packages the run; `avfer predict` with it, on raw test clips, gives
    every fused model's test predictions and the late fusion's, from the videos alone. Four test
    clips spread evenly over the test split (its labels may be hidden, as in EmotiW): each clip goes
    through the same code, so more clips would prove nothing more."""
    import numpy as np

    from avfer.bundle import load_bundle
    from avfer.labels import EMOTIONS
    from avfer.predict import Predictor

    results, configfile = run["results"], run["configfile"]
    proc = _snakemake(configfile, str(results / "bundle"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    bundle = load_bundle(results / "bundle")
    fusion = _fusion(results)
    assert bundle.fusion["method"] == fusion["method"] and bundle.fusion["models"] == list(fusion["weights"])
    assert sorted(bundle.models) == sorted(m for m in fusion["weights"] if not m.startswith("cnn_"))
    sheet = pd.read_csv(results / "samples.csv", dtype=str, keep_default_na=False)
    test = sheet[sheet["split"] == "test"]
    assert len(test) >= 8, len(test)
    voiced = test  # the audio-only check below takes a voiced clip of the whole test split
    test = test.iloc[np.linspace(0, len(test) - 1, 4).round().astype(int)]
    cols = [f"p_{e}" for e in EMOTIONS]
    expected = {
        m: pd.read_csv(results / "models" / m / "predictions.csv", dtype={"clip_id": str}).set_index(
            "clip_id"
        )
        for m in fusion["weights"]
    }
    fused = pd.read_csv(results / "fusion" / "predictions.csv", dtype={"clip_id": str}).set_index("clip_id")
    predictor = Predictor(bundle, device="cpu", max_faces=1)
    for rec in test.itertuples():
        _, summary = predictor.video(results.parent / rec.path)
        for m, want in expected.items():
            got = [summary["models"][m]["probabilities"][e] for e in EMOTIONS]
            np.testing.assert_allclose(got, want.loc[rec.clip_id, cols].to_numpy(float), atol=1e-4, err_msg=m)
        got = [summary["fusion"]["probabilities"][e] for e in EMOTIONS]
        np.testing.assert_allclose(got, fused.loc[rec.clip_id, cols].to_numpy(float), atol=1e-4)
        assert summary["label"] == fused.loc[rec.clip_id, "pred"]

    # Per-frame audio and fused curves: sliding windows; a window longer than the clip gives the
    # clip's own scores on every frame.
    from avfer.predict.clip import audio_model

    rec = next(test.itertuples())
    path = results.parent / rec.path
    curves = {k: [f"{k}_p_{e}" for e in EMOTIONS] for k in ("audio", "fused")}
    frames, _ = Predictor(bundle, device="cpu", max_faces=1, curve_window=0.4).video(path)
    for k, c in curves.items():
        np.testing.assert_allclose(frames[c].sum(axis=1), 1, atol=1e-6, err_msg=k)
    assert frames[curves["fused"]].drop_duplicates().shape[0] > 1  # it changes over the clip
    frames, summary = Predictor(bundle, device="cpu", max_faces=1, curve_window=1e4).video(path)
    clip_fused = [summary["fusion"]["probabilities"][e] for e in EMOTIONS]
    np.testing.assert_allclose(frames[curves["fused"]].to_numpy(), [clip_fused] * len(frames), atol=1e-6)
    clip_audio = [summary["models"][audio_model(bundle)]["probabilities"][e] for e in EMOTIONS]
    np.testing.assert_allclose(frames[curves["audio"]].to_numpy(), [clip_audio] * len(frames), atol=1e-6)

    # An audio-only file (the clip's own audio stream, copied): the bundle's audio models give the
    # pipeline's clip scores (audio_mlp: functionals of the same samples), the clip gets a label.
    audio = pd.read_csv(results / "models" / "audio_mlp" / "predictions.csv", dtype={"clip_id": str})
    heard = audio[(audio["status"] == "ok") & audio["clip_id"].isin(voiced["clip_id"])].iloc[0]
    clip = results.parent / voiced.set_index("clip_id").loc[heard["clip_id"], "path"]
    voice = results.parent / "voice only.wav"  # PCM copied as is: the same samples
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-vn", "-c:a", "copy", str(voice)]
    subprocess.run(cmd, check=True)
    frames, summary = Predictor(bundle, device="cpu", max_faces=1).video(voice)
    assert summary["status"] == "ok" and summary["face_frames"] == 0 and summary["label"] in EMOTIONS
    got = [summary["models"]["audio_mlp"]["probabilities"][e] for e in EMOTIONS]
    np.testing.assert_allclose(got, heard[cols].to_numpy(float), atol=1e-4)
    assert (frames["face_id"] == -1).all() and len(frames) == summary["frames"] > 0
