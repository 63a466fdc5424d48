"""SLURM profile: fast checks of both profiles, and an integration test that runs the DAG through
a real single-node SLURM (slurmctld + slurmd + slurmdbd with MariaDB accounting, munge auth)
started by a session fixture, then compares the results with a local run of the same config.

The SLURM packages come from `.ci/install-slurm.sh`. Without them the integration test fails
under CI (``CI`` set) and is skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rule_blocks import rule_blocks
from slurm_cluster import ACCOUNT, PARTITION, SlurmCluster, missing_tools

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
LOCAL_PROFILE = REPO / "profiles" / "local" / "config.yaml"

# What the integration test builds, relative to each run's working directory: the whole demo
# DAG (faces, audio, CNN, CNN features, temporal, audio, early fusion, late fusion) of a small
# demo config, with short training.
TARGET = "results/late_fusion.json"
TINY_CONFIG = {
    "seed": 0,
    "results": "results",
    "dataset": {"root": "results/data/demo", "generate_demo": True, "shard_size": 8},
    "demo": {"clips_per_class": 1, "fer_per_class": 5},
    "cnn": {"train": {"epochs": 1}},
    "temporal": {"heads": ["gru"], "train": {"epochs": 2}},
    "audio_models": {"train": {"epochs": 2}},
    "early_fusion": {"options": ["a"], "train": {"epochs": 2}},
}
GPU_RULES = {
    "detect_faces",
    "finetune_cnn",
    "extract_cnn_features",
    "train_temporal",
    "train_audio_model",
    "train_early_fusion",
    "train_video_model",
    "finetune_cnn_seeded",
    "train_sequence_seeded",
    "evaluate_static",
}
GROUPS = {"faces", "audio", "cnn_features"}
LOCAL_RULES = {
    "build_sample_sheet",
    "assign_splits",
    "summarize_faces",
    "summarize_audio",
    "summarize_models",
}
# Rules the profiles may name before they exist (set-resources/groups ignore unknown rules,
# so a typo would silently do nothing: the fast test catches it).
PLANNED_RULES = {
    "detect_faces",
    "extract_audio_features",
    "pretrain_cnn",
    "finetune_cnn",
    "extract_cnn_features",
    "train_temporal",
    "train_audio_model",
    "train_early_fusion",
    "fuse_late",
}

SLURM_RUN_TIMEOUT_S = 900  # the whole snakemake run through SLURM
LOCAL_RUN_TIMEOUT_S = 600  # the reference run with --cores 2


# ---------------------------------------------------------------- fast checks (no SLURM needed)


def _rule_names() -> set[str]:
    return set(rule_blocks())


def test_every_rule_with_a_gpu_resource_asks_the_cluster_for_one():
    """A rule that can use a GPU (``gpu=`` in its resources) gets the profile's GPU request:
    otherwise it runs on a CPU-only SLURM allocation, silently."""
    gpu_rules = {name for name, (_, block) in rule_blocks().items() if re.search(r"^\s+gpu=", block, re.M)}
    assert {"train_end_to_end", "train_end_to_end_seeded", "train_video_model_seeded"} <= gpu_rules
    prof = yaml.safe_load(SLURM_PROFILE.read_text())
    assert gpu_rules == set(prof["set-resources"]), gpu_rules ^ set(prof["set-resources"])


def test_profiles_name_known_rules():
    prof = yaml.safe_load(SLURM_PROFILE.read_text())
    named = set(prof["set-resources"]) | set(prof["groups"])
    assert named <= _rule_names() | PLANNED_RULES, named - _rule_names() - PLANNED_RULES
    assert set(prof["group-components"]) == set(prof["groups"].values())
    assert prof["set-resource-scopes"] == {"gpu": "local"}
    for rule, res in prof["set-resources"].items():
        assert res.get("gpu") == 1, rule


def test_memory_grows_with_the_attempt_and_cheap_rules_are_local():
    common = (REPO / "rules" / "common.smk").read_text()  # Snakemake syntax: take the function alone
    source = re.search(r"^def scaled_mem\(.*?(?=^\S|\Z)", common, re.M | re.S).group(0)
    scope: dict = {}
    exec(compile(source, "common.smk", "exec"), scope)
    mem = scope["scaled_mem"](1500)
    assert [mem(None, a) for a in (1, 2, 3)] == [1500, 3000, 4500]
    for smk in (REPO / "rules").glob("*.smk"):
        for line in re.findall(r"^\s*mem_mb=(.*)$", smk.read_text(), re.M):
            assert line.startswith("scaled_mem("), f"{smk.name}: mem_mb={line} does not grow with the attempt"
    prof = yaml.safe_load(SLURM_PROFILE.read_text())
    assert "attempt" in str(prof["default-resources"]["mem_mb"]) and prof["retries"] >= 1
    snakefile = (REPO / "Snakefile").read_text()
    block = re.search(r"^localrules:\n((?:\s+\w+,?\n)+)", snakefile, re.M)
    assert block and LOCAL_RULES | {"summarize_cv"} <= set(re.findall(r"\w+", block.group(1)))


@pytest.mark.parametrize("profile", [SLURM_PROFILE.parent, LOCAL_PROFILE.parent], ids=["slurm", "local"])
def test_profile_dry_run(profile, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(cfg),
            "--profile",
            str(profile),
            "-n",
            TARGET,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"Using profile {profile}" in out.stdout + out.stderr


# ---------------------------------------------------------------- the test cluster


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    missing = missing_tools()
    why = "needs root" if os.geteuid() != 0 else f"missing {', '.join(missing)}" if missing else ""
    if why:
        msg = f"SLURM test cluster {why}: run .ci/install-slurm.sh (as root)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    root = Path(tempfile.mkdtemp(prefix="avfer-slurm-", dir="/tmp"))  # short: socket paths <108 chars
    root.chmod(0o755)
    cluster = SlurmCluster(root)
    try:
        t0 = time.monotonic()
        cluster.start()
        print(f"\nSLURM test cluster up in {time.monotonic() - t0:.1f} s ({root})")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- running and comparing


# `python -m snakemake` whose SLURM executor checks its jobs every second: the plugin adds 10 s to
# its pause after every round in which no job finished (up to 180 s), which on this one-node
# cluster only adds about three minutes of sleep to the run (measured: 257 s for 10 jobs, against
# 90 s locally). The jobs, their sbatch arguments and the results are untouched.
POLL_EVERY_SECOND = """
import runpy, sys
from snakemake_executor_plugin_slurm import Executor
Executor.next_seconds_between_status_checks = property(lambda self: 1.0, lambda self, value: None)
sys.argv[0] = "snakemake"
runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
"""


def _snakemake(workdir: Path, args: list[str], env: dict, timeout: float) -> tuple[int, str]:
    """Run snakemake in its own process group; on timeout TERM it (it cancels its SLURM jobs), then KILL."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "snakemake.out"
    cmd = [
        sys.executable,
        "-c",
        POLL_EVERY_SECOND,
        "--snakefile",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        *args,
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException as exc:  # timeout, Ctrl-C, ...: never leave snakemake (and its jobs) behind
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            rc = -1
    return rc, log.read_text(errors="replace")


def _job_logs(workdir: Path, lines: int = 15) -> str:
    """Tails of the SLURM job logs and rule logs of a run, for failure messages."""
    logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")) + sorted(
        (workdir / "results" / "logs").rglob("*.log")
    )
    return "\n".join(
        f"== {p.relative_to(workdir)}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
        for p in logs
    )


def _test_profile(dest: Path) -> Path:
    """profiles/slurm adapted to the test cluster: its partition/account, fast polling. The GPU
    requests stay: sbatch is wrapped (:func:`_sbatch_wrapper`) to record them and drop them
    (the test cluster has no GPU)."""
    prof = yaml.safe_load(SLURM_PROFILE.read_text())
    prof["default-resources"].update(slurm_partition=PARTITION, slurm_account=ACCOUNT)
    prof.update(
        {
            "jobs": 4,
            "retries": 0,
            "latency-wait": 5,
            "keep-going": False,
            "cores": os.cpu_count() or 1,  # a job wider than the node would pend for ever
            "slurm-init-seconds-before-status-checks": 1,
            "slurm-keep-successful-logs": True,
        }
    )
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return dest


def _sbatch_wrapper(bin_dir: Path, calls: Path, path: str) -> Path:
    """``sbatch`` and ``srun`` first on PATH (sbatch exports PATH to the job, whose step the
    jobstep plugin launches with ``srun --gpus=...``) that record their arguments (a file per
    call in the folder ``calls``, named by the tool: calls run concurrently, and appends to one
    shared file interleave) and run the real tool without the GPU requests (``--gpus=...``,
    ``--gres=gpu...``; the first on ``path``): the test cluster has no GPU."""
    bin_dir.mkdir(parents=True)
    calls.mkdir(parents=True)
    for tool in ("sbatch", "srun"):
        real = shutil.which(tool, path=path)
        assert real, f"{tool} not found"
        wrapper = bin_dir / tool
        wrapper.write_text(
            "#!/usr/bin/env bash\n"
            f'printf "%s\\x1f" "$@" > "$(mktemp "{calls}/{tool}.XXXXXXXX")"\n'
            "args=()\n"
            'for a in "$@"; do case "$a" in --gpus=*|--gres=gpu*) ;; *) args+=("$a");; esac; done\n'
            f'exec "{real}" "${{args[@]}}"\n'
        )
        wrapper.chmod(0o755)
    return bin_dir


def _sbatch_calls(calls: Path, tool: str = "sbatch") -> list[list[str]]:
    """The recorded calls of ``tool`` (their arguments)."""
    return [f.read_text().rstrip("\x1f").split("\x1f") for f in sorted(calls.glob(f"{tool}.*"))]


# Wall-clock measurements that outputs record (audio summary, late-fusion report): they differ
# between any two runs, so only their presence is compared.
TIMING_KEYS = {"seconds", "realtime_factor", "fit_seconds"}


def _same(a, b, where: str) -> None:
    """Recursive equality for JSON-like/array values (JSON objects in strings too, as in HDF5
    attrs); floats to 1e-6 relative; values under TIMING_KEYS are not compared."""
    if isinstance(a, str) and isinstance(b, str) and a.startswith("{") and b.startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):
            a, b = json.loads(a), json.loads(b)
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a.keys() - TIMING_KEYS:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif hasattr(a, "detach"):  # torch tensor
        _same(a.detach().cpu().numpy(), b.detach().cpu().numpy(), where)
    elif isinstance(a, np.ndarray | np.generic | float) and np.asarray(a).dtype.kind in "fc":
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=where)
    elif isinstance(a, np.ndarray):
        assert a.shape == b.shape and np.array_equal(a, b), f"{where}: arrays differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _same_h5(a: Path, b: Path, where: str) -> None:
    import h5py

    with h5py.File(a) as fa, h5py.File(b) as fb:

        def visit(ga, gb, path):
            _same(dict(ga.attrs), dict(gb.attrs), f"{where}:{path} attrs")
            if isinstance(ga, h5py.Dataset):
                assert ga.dtype == gb.dtype and ga.shape == gb.shape, f"{where}:{path} dtype/shape"
                _same(np.asarray(ga[()]), np.asarray(gb[()]), f"{where}:{path}")
                return
            assert sorted(ga) == sorted(gb), f"{where}:{path} members {sorted(ga)} != {sorted(gb)}"
            for k in ga:
                visit(ga[k], gb[k], f"{path}/{k}")

        visit(fa, fb, "")


FIGURES = {".svg", ".png", ".pdf", ".html"}  # rendering metadata (dates, ids) differs: existence only


def _compare_results(got: Path, want: Path) -> list[str]:
    """Compare two results/ trees (logs and benchmarks excepted); returns the compared paths."""

    def files(root):
        return {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in ("logs", "benchmarks")
        }

    assert files(got) == files(want), f"different outputs: {sorted(files(got) ^ files(want))}"
    for rel in sorted(files(want)):
        a, b, ext = got / rel, want / rel, Path(rel).suffix
        if ext == ".csv":
            pd.testing.assert_frame_equal(
                pd.read_csv(a), pd.read_csv(b), check_exact=False, rtol=1e-6, obj=rel
            )
        elif ext == ".json":
            _same(json.loads(a.read_text()), json.loads(b.read_text()), rel)
        elif ext in (".h5", ".hdf5"):
            _same_h5(a, b, rel)
        elif ext in (".pt", ".pth"):
            import torch

            _same(
                torch.load(a, map_location="cpu", weights_only=False),
                torch.load(b, map_location="cpu", weights_only=False),
                rel,
            )
        elif ext not in FIGURES:
            assert a.read_bytes() == b.read_bytes(), f"{rel}: bytes differ"
    return sorted(files(want))


# ---------------------------------------------------------------- the integration test


@pytest.mark.integration
def test_slurm_run_matches_local_run(slurm_cluster: SlurmCluster, tmp_path: Path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    common = [TARGET, "--configfile", str(cfg)]  # --configfile takes several values: keep it last

    calls = tmp_path / "calls"
    env = dict(slurm_cluster.env)
    path = env.get("PATH", os.environ["PATH"])
    env["PATH"] = f"{_sbatch_wrapper(tmp_path / 'bin', calls, path)}:{path}"
    t0 = time.monotonic()
    rc, out = _snakemake(
        tmp_path / "slurm",
        ["--profile", str(_test_profile(tmp_path / "profile")), *common],
        env,
        SLURM_RUN_TIMEOUT_S,
    )
    t_slurm = time.monotonic() - t0
    assert rc == 0, (
        f"SLURM run failed (rc {rc}, {t_slurm:.0f} s):\n{out[-4000:]}\n"
        f"{_job_logs(tmp_path / 'slurm')}\n{slurm_cluster.logs()}"
    )

    t0 = time.monotonic()
    rc, local_out = _snakemake(
        tmp_path / "local", ["--cores", "2", *common], dict(os.environ), LOCAL_RUN_TIMEOUT_S
    )
    t_local = time.monotonic() - t0
    assert rc == 0, f"local run failed (rc {rc}):\n{local_out[-4000:]}\n{_job_logs(tmp_path / 'local')}"

    # Every job went through sbatch, and SLURM's accounting saw each one complete.
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", out))
    # Rules the SLURM run submitted (group members are indented) = those the local run ran,
    # less the workflow's localrules (e.g. `all`, which both runs print as `localrule`).
    remote_rules = set(re.findall(r"^\s*(?:rule|checkpoint) (\w+):", out, re.M))
    local_only = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", out, re.M))
    ran_locally = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", local_out, re.M))
    assert submitted and remote_rules == ran_locally - local_only, (remote_rules, ran_locally, local_only)
    sacct = slurm_cluster.run(
        "sacct",
        "-X",
        "--parsable2",
        "--noheader",
        "--starttime=now-1days",
        "--format=JobIDRaw,JobName%60,State,ExitCode,Comment%200",
    ).stdout
    rows = {r.split("|")[0]: r.split("|") for r in sacct.splitlines() if r}
    print(f"\nsacct:\n{sacct}")
    assert submitted <= rows.keys(), f"jobs missing from sacct: {submitted - rows.keys()}\n{sacct}"
    for job in submitted:
        _, name, state, exit_code, _comment = rows[job]
        assert (name, state, exit_code) == (run_id, "COMPLETED", "0:0"), rows[job]
    comments = " ".join(rows[j][4] for j in submitted)
    assert all(rule in comments for rule in remote_rules), f"{remote_rules} vs sacct comments {comments}"
    slurm_logs = list((tmp_path / "slurm" / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {p.stem for p in slurm_logs} == submitted, slurm_logs

    # The profile's GPU requests reached sbatch for the GPU rules only; group jobs were used;
    # the cheap rules ran in the Snakemake process (localrules), never as SLURM jobs.
    sbatch = _sbatch_calls(calls)
    assert len(sbatch) == len(submitted), (len(sbatch), len(submitted))
    for args in sbatch:
        comment = args[args.index("--comment") + 1] if "--comment" in args else " ".join(args)
        gpu_job = any(rule in comment for rule in GPU_RULES)
        assert ("--gpus=1" in args) == gpu_job, args
    # ... and the job steps (srun inside each job) asked for them too
    assert any("--gpus=1" in args for args in _sbatch_calls(calls, "srun")), "no GPU job step"
    assert {g for g in GROUPS if re.search(rf"group job {g}\b", out, re.I)} == GROUPS, out[-3000:]
    assert local_only >= {"build_sample_sheet", "assign_splits"}, local_only  # summaries: not needed here
    assert not LOCAL_RULES & remote_rules, (local_only, remote_rules)

    compared = _compare_results(tmp_path / "slurm" / "results", tmp_path / "local" / "results")
    print(
        f"SLURM run {t_slurm:.1f} s ({len(submitted)} jobs), local run {t_local:.1f} s, "
        f"{len(compared)} result files equal"
    )
