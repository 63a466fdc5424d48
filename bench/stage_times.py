"""Time per pipeline stage from the rules' Snakemake ``benchmark:`` files.

Reads ``<results>/benchmarks/**/*.tsv`` (one per job; the rule is the first folder below
``benchmarks/``, or the file name for single-job rules) and prints, per rule, the jobs, the
summed and the longest wall-clock seconds, CPU seconds and peak memory (max RSS, MB), plus the
total. Summed seconds overstate the elapsed time when jobs ran in parallel (``--cores``).

    python bench/stage_times.py [results] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def stage_table(results: str | Path) -> pd.DataFrame:
    """One row per rule: jobs, total_s, max_s, cpu_s, max_rss_mb (sorted by total_s)."""
    root = Path(results) / "benchmarks"
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        rel = tsv.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else tsv.stem
        df = pd.read_csv(tsv, sep="\t", na_values=["-", "NA"])
        rows.append(
            {
                "rule": rule,
                "s": float(df["s"].mean()),
                "cpu_s": float(pd.to_numeric(df.get("cpu_time"), errors="coerce").mean()),
                "rss_mb": float(pd.to_numeric(df.get("max_rss"), errors="coerce").max()),
            }
        )
    if not rows:
        raise SystemExit(f"no benchmark files under {root}")
    jobs = pd.DataFrame(rows)
    table = jobs.groupby("rule").agg(
        jobs=("s", "size"),
        total_s=("s", "sum"),
        max_s=("s", "max"),
        cpu_s=("cpu_s", "sum"),
        max_rss_mb=("rss_mb", "max"),
    )
    table = table.sort_values("total_s", ascending=False).reset_index()
    total = {
        "rule": "TOTAL",
        "jobs": int(table["jobs"].sum()),
        "total_s": table["total_s"].sum(),
        "max_s": table["max_s"].max(),
        "cpu_s": table["cpu_s"].sum(),
        "max_rss_mb": table["max_rss_mb"].max(),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = parser.parse_args()
    table = stage_table(args.results).round({"total_s": 1, "max_s": 1, "cpu_s": 1, "max_rss_mb": 0})
    if args.markdown:
        cols = list(table.columns)
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for row in table.itertuples(index=False):
            print("| " + " | ".join(str(v) for v in row) + " |")
    else:
        table.to_string(sys.stdout, index=False)
        print()


if __name__ == "__main__":
    main()
