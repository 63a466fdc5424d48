#!/usr/bin/env bash
# `pip install .` (not editable) into a fresh venv gives a working `avfer predict` on an image and a
# video: the schema and model files travel as package data, pyproject.toml lists every dependency.
# The tested pins (requirements.txt) are the constraints, so pip takes the releases `make install`
# took, from its cache. Runs outside the checkout, so only the installed package can be imported.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
media=$repo/tests/.media/pyfeat
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the files git knows (tracked, or new and not ignored): no build/ or *.egg-info left in the checkout
mkdir "$tmp/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _ \
  | tar -c --null -T - | tar -x -C "$tmp/src"
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -c requirements.txt "$tmp/src"

ffmpeg -nostdin -loglevel error -y -i "$media/WolfgangLanger_Pexels.mp4" -t 2 -an "$tmp/clip.mp4"
cd "$tmp"
venv/bin/avfer predict "$media/single_face.jpg" clip.mp4 --out out --no-progress --device cpu
for f in single_face.json single_face.frames.csv clip.json clip.frames.csv clip.annotated.mp4; do
  [ -s "out/$f" ] || { echo "check_install: avfer predict wrote no out/$f" >&2; exit 1; }
done
venv/bin/python - <<'EOF'
import json

for name in ("single_face", "clip"):
    summary = json.load(open(f"out/{name}.json"))
    assert summary["status"] == "ok" and summary["label"], f"{name}: {summary}"
    assert summary["model"].startswith("ferplus_"), summary["model"]  # the shipped default, package data
EOF
echo "check_install: pip install . gives a working avfer predict (image and video)"
