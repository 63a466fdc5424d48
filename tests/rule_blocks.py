"""The text of each Snakemake rule in rules/*.smk, for tests that read rule directives."""

from __future__ import annotations

import re
from pathlib import Path

RULES = Path(__file__).resolve().parents[1] / "rules"


def rule_blocks() -> dict[str, tuple[Path, str]]:
    """rule name -> (its .smk file, its text); a ``use rule A as B`` rule gets A's text followed
    by what B changes (later directives win when a test reads the last match)."""
    texts = [
        (smk, t)
        for smk in sorted(RULES.glob("*.smk"))
        for t in re.split(r"^(?=rule |checkpoint |use rule )", smk.read_text(), flags=re.M)
    ]
    rule = re.compile(r"(?:rule|checkpoint)\s+(\w+)\s*:")
    blocks = {m.group(1): (smk, t) for smk, t in texts if (m := rule.match(t))}
    for _, t in texts:
        if m := re.match(r"use rule (\w+) as (\w+)", t):
            base_file, base = blocks[m.group(1)]
            blocks[m.group(2)] = (base_file, base + t)
    return blocks
