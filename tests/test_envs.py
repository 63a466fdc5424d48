"""Conda environments (envs/*.yaml) stay correct by construction: conda channels are not
reachable from CI, so instead of building them this checks them against the tested pins.

- every env file is YAML with channels and dependencies; every pip entry is an exact
  ``name==version`` pin and every conda entry that names a package of requirements.txt has its
  version, equal to requirements.txt (no ``-r``/``-e`` lines: Snakemake copies the env file to
  .snakemake/conda/<hash>.yaml before creating it, so paths relative to envs/ break);
- each env pins everything of requirements.txt that its pins pull in (so pip cannot pick other
  versions), per the dependency metadata of the installed, tested set;
- every rule in rules/*.smk names a ``conda:`` env that exists, with a post-deploy script that
  installs this package into it;
- everything a rule's script imports, directly or through ``avfer`` modules, is in its env, and
  an env whose code calls ffmpeg/ffprobe has conda's ffmpeg.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from rule_blocks import rule_blocks

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
SRC = REPO / "src"
# Import name -> distribution name, where they differ (beyond `_` vs `-`).
DISTS = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "ffmpeg": "ffmpeg-python",
}
PROVIDED = {"snakemake", "avfer"}  # Snakemake's script preamble / the post-deploy install


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.txt: {line!r} is not an exact pin"
            pins[_norm(name)] = version.strip()
    return pins


def _env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict), path
    return env


def _pins(env: dict) -> tuple[dict[str, str | None], dict[str, str]]:
    """(conda name -> version or None, pip name -> version) of one env file."""
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                name, sep, version = line.partition("==")
                assert sep and not line.startswith("-"), (
                    f"pip entry {line!r}: only name==version pins (-r/-e paths break in .snakemake/conda/)"
                )
                pip[_norm(name)] = version.strip()
        else:
            name, _, version = re.match(r"([\w.-]+)\s*(=?=?)\s*(\S*)", dep).groups()
            conda[_norm(name)] = version or None
    return conda, pip


@cache
def _rules() -> dict[str, dict[str, str]]:
    """rule name -> its directives that name a file (conda, script), from rules/*.smk."""
    rules = {}
    for name, (smk, block) in rule_blocks().items():
        files = dict(re.findall(r"^\s+(conda|script):\s*\n?\s*[\"']([^\"']+)[\"']", block, re.M))
        rules[name] = {k: str((smk.parent / v).resolve()) for k, v in files.items()}
    assert rules, "no rules found"
    return rules


def test_requirements_are_exact_pins():
    assert requirements()


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_file_pins_agree_with_requirements(path):
    env = _env(path)
    assert env.get("channels") and all(isinstance(c, str) for c in env["channels"]), (
        f"{path.name}: no channels"
    )
    assert isinstance(env.get("dependencies"), list), f"{path.name}: no dependencies"
    conda, pip = _pins(env)
    reqs = requirements()
    for name, version in pip.items():
        assert name in reqs, f"{path.name}: pip pin {name} is not in requirements.txt"
        assert version == reqs[name], f"{path.name}: {name}=={version}, requirements.txt has {reqs[name]}"
    for name, version in conda.items():
        if name in reqs:
            assert version in (reqs[name], f"={reqs[name]}"), (
                f"{path.name}: conda {name}={version} != {reqs[name]}"
            )
        assert name not in pip, f"{path.name}: {name} both from conda and pip"


def _pulled_in(dist: str) -> set[str]:
    """Packages of requirements.txt that ``dist`` needs, directly or through unpinned packages
    (dependency metadata of the installed, tested set; extras and foreign markers skipped)."""
    reqs, seen, todo = requirements(), {dist}, [dist]
    while todo:
        try:
            requires = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            name = _norm(req.name)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return (seen - {dist}) & reqs.keys()


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_everything_its_pins_pull_in(path):
    conda, pip = _pins(_env(path))
    pinned = set(pip) | set(conda)
    for dist in pip:
        missing = _pulled_in(dist) - pinned
        assert not missing, (
            f"{path.name}: {dist} pulls in {sorted(missing)}: pin them too (requirements.txt versions)"
        )


def test_every_rule_names_an_existing_conda_env_with_post_deploy():
    for rule, files in _rules().items():
        assert "conda" in files, f"rule {rule} has no conda: env"
        env = Path(files["conda"])
        assert env.is_file(), f"rule {rule}: conda env {env} does not exist"
        deploy = env.with_suffix(".post-deploy.sh")
        assert deploy.is_file(), f"{deploy.name} missing: the env {env.name} would lack the avfer package"
        assert "pip install" in deploy.read_text() and "--no-deps" in deploy.read_text(), deploy


# ---------------------------------------------------------------- what each rule's code imports


def _module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path, module: str) -> tuple[set[str], bool]:
    """(modules imported anywhere in ``path`` outside `if TYPE_CHECKING:`, calls ffmpeg?)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    walk(orelse)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - child.level + 1])
                    mod = f"{base}.{child.module}" if child.module else base
                else:
                    mod = child.module
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in child.names if _module_file(f"{mod}.{a.name}"))
            walk(child)

    walk(tree)
    calls_ffmpeg = bool(re.search(r"[\"'](ffmpeg|ffprobe)[\"']", path.read_text()))
    return found, calls_ffmpeg


@cache
def _closure(script: str) -> tuple[frozenset[str], bool]:
    """Distributions a script needs (its imports + those of every avfer module it reaches)."""
    todo, seen, dists, ffmpeg = [(Path(script), "__main__")], set(), set(), False
    while todo:
        path, module = todo.pop()
        mods, calls = _imports(path, module)
        ffmpeg |= calls
        for mod in mods:
            top = mod.split(".")[0]
            if top == "avfer":
                parts = mod.split(".")
                for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
                    sub = ".".join(parts[:i])
                    file = _module_file(sub)
                    if file and sub not in seen:
                        seen.add(sub)
                        todo.append((file, sub))
            elif top not in sys.stdlib_module_names and top not in PROVIDED:
                dists.add(_norm(DISTS.get(top, top)))
    return frozenset(dists), ffmpeg


@pytest.mark.parametrize("rule", sorted(_rules()), ids=str)
def test_rule_env_has_what_its_script_imports(rule):
    files = _rules()[rule]
    if "script" not in files:
        pytest.skip(f"rule {rule} runs no script")
    env_path = Path(files["conda"])
    conda, pip = _pins(_env(env_path))
    needed, ffmpeg = _closure(files["script"])
    unknown = needed - requirements().keys()
    assert not unknown, f"rule {rule} imports {sorted(unknown)}, which requirements.txt does not pin"
    missing = needed - set(pip) - set(conda)
    assert not missing, f"rule {rule}: {env_path.name} lacks {sorted(missing)} (imported by its code)"
    if ffmpeg:
        assert "ffmpeg" in conda, f"rule {rule} calls ffmpeg/ffprobe: add conda's ffmpeg to {env_path.name}"
