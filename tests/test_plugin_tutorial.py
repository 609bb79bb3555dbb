"""docs/plugins.md is executed, so it cannot drift: every file it shows equals the example
packages in examples/ (wsreid-knn-association, wsreid-memory-triplet), and every command it
shows runs, in order, in a fresh virtual environment (on top of this one) where those
packages get pip-installed.

Fenced blocks of the tutorial are of two sorts: ``<lang> file=PATH`` (written to PATH) and
``console`` (``$ command`` lines, each followed by lines its output must contain; ``...``
inside an expected line stands for any text). A console block marked ``requires=SUB`` is
skipped only when ``wsreid --help`` does not list SUB; when it is listed, ``wsreid SUB --help``
must work and the block runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "plugins.md"
#: file prefix in the tutorial -> the example package it belongs to
EXAMPLES = {f"{name}/": REPO / "examples" / name for name in ("wsreid-knn-association", "wsreid-memory-triplet")}
IGNORED_PARTS = {"__pycache__", ".pytest_cache", "build", "dist", "runs"}
COMMAND_TIMEOUT = 600


@dataclass
class Block:
    """A fenced block: its language, ``key=value`` attributes, text and first line."""

    lang: str
    attrs: dict[str, str]
    text: str
    line: int
    commands: list[tuple[str, list[str]]] = field(default_factory=list)


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, console blocks split into commands."""
    blocks, current, body = [], None, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```") and current is None:
            info = shlex.split(line[3:])
            current = Block(info[0] if info else "", dict(a.split("=", 1) for a in info[1:] if "=" in a), "", number)
            body = []
        elif line.startswith("```"):
            current.text = "".join(f"{b}\n" for b in body)
            if current.lang == "console":
                for text in body:
                    if text.startswith("$ "):
                        current.commands.append((text[2:], []))
                    elif text.strip():
                        current.commands[-1][1].append(text)
            blocks.append(current)
            current = None
        elif current is not None:
            body.append(line)
    assert current is None, f"{path}:{current.line}: unclosed code block"
    return blocks


def output_contains(expected: str, output: str) -> bool:
    """Whether some output line holds the parts of ``expected`` around ``...`` in order
    (whitespace runs compare equal)."""
    parts = [" ".join(p.split()) for p in expected.split("...")]
    pattern = ".*".join(re.escape(p) for p in parts)
    return any(re.search(pattern, " ".join(line.split())) for line in output.splitlines())


def example_files(example: Path) -> set[str]:
    return {
        str(p.relative_to(example)) for p in example.rglob("*")
        if p.is_file() and not IGNORED_PARTS & set(p.parts) and ".egg-info" not in str(p)
    }  # fmt: skip


BLOCKS = read_blocks(DOC)


def test_every_block_is_a_file_or_commands():
    for block in BLOCKS:
        where = f"{DOC.name}:{block.line}"
        assert "file" in block.attrs or block.lang == "console", f"{where}: neither file= nor console: not executable"
        if block.lang == "console":
            assert block.commands and block.text.startswith("$ "), f"{where}: a console block starts with '$ '"
        assert set(block.attrs) <= {"file", "requires"}, f"{where}: unknown attribute in {sorted(block.attrs)}"
    assert sum(1 for b in BLOCKS if b.attrs.get("requires") == "ablate") == 1


def test_tutorial_files_are_the_example_packages():
    shown: dict[str, dict[str, Block]] = {prefix: {} for prefix in EXAMPLES}
    for block in BLOCKS:
        if "file" in block.attrs:
            path = block.attrs["file"]
            prefix = next((p for p in EXAMPLES if path.startswith(p)), None)
            assert prefix is not None, f"{DOC.name}:{block.line}: files belong to one of {sorted(EXAMPLES)}"
            assert path[len(prefix):] not in shown[prefix], f"{DOC.name}:{block.line}: {path} is shown twice"
            shown[prefix][path[len(prefix):]] = block
    for prefix, example in EXAMPLES.items():
        for rel, block in shown[prefix].items():
            assert (example / rel).is_file(), f"{DOC.name}:{block.line}: examples/{prefix}{rel} does not exist"
            assert block.text == (example / rel).read_text(encoding="utf-8"), (
                f"{DOC.name}:{block.line}: differs from examples/{prefix}{rel}; copy the example file into the block")
        assert example_files(example) - set(shown[prefix]) == {"README.md"}, (
            f"every file of examples/{prefix} but README.md is shown in the tutorial")


@dataclass
class Workspace:
    """Where the tutorial runs: its directory and the environment of its commands."""

    root: Path
    env: dict[str, str]

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)

    def run_block(self, block: Block) -> None:
        if "file" in block.attrs:
            target = self.root / block.attrs["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
            return
        for command, expected in block.commands:
            done = self.run(command)
            output = done.stdout + done.stderr
            assert done.returncode == 0, f"{DOC.name}:{block.line}: `{command}` exited {done.returncode}:\n{output[-3000:]}"
            for line in expected:
                assert output_contains(line, output), f"{DOC.name}:{block.line}: `{command}` printed no {line!r}:\n{output[-3000:]}"


def _virtual_env(base: Path) -> Path:
    """A venv layered on this environment: it sees the packages this test sees (wsreid
    included, even when this environment is itself a venv) and installs into its own
    site-packages, offline; ``wsreid``, ``pip`` and ``pytest`` run its python."""
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    outer = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    site_packages = next(venv.glob("lib/python*/site-packages"))
    (site_packages / "_outer_environment.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in outer))
    for command, module in (("wsreid", "wsreid"), ("pip", "pip"), ("pytest", "pytest")):
        shim = venv / "bin" / command
        shim.write_text(f'#!/bin/sh\nexec "{venv / "bin" / "python"}" -m {module} "$@"\n')
        shim.chmod(0o755)
    return venv


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, synth_tiny_root) -> Workspace:
    """Runs every block without a ``requires`` in order (files, install, commands)."""
    from wsreid.data.synth.generate import SynthConfig

    base = tmp_path_factory.mktemp("tutorial")
    venv = _virtual_env(base)
    cache = base / "cache" / "synth-pedes"
    cache.mkdir(parents=True)
    (cache / SynthConfig(size="tiny").cache_name()).symlink_to(synth_tiny_root, target_is_directory=True)
    # WSREID_DISABLE_PLUGINS stays: it names the plugin packages of the environment this
    # one is layered on, which the tutorial's fresh environment must not see (conftest.py)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WSREID_", "PIP_", "PYTEST_")) or k == "WSREID_DISABLE_PLUGINS"}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", WSREID_CACHE=str(base / "cache"),
               PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    ws = Workspace(base / "work", env)
    ws.root.mkdir()
    for block in BLOCKS:
        if "requires" not in block.attrs:
            ws.run_block(block)
    return ws


def test_tutorial_runs_from_nothing_to_a_trained_recipe(workspace):
    run_dir = workspace.root / "runs" / "knn-smoke"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["weakly_supervised"] is True
    versions = json.loads((run_dir / "versions.json").read_text())
    assert {"kind": "local_association", "name": "knn", "provider": "knn",
            "distribution": "wsreid-knn-association", "version": "0.1.0"} in versions["components"]
    header = (run_dir / "logs" / "epochs.csv").read_text().splitlines()[0].split(",")
    assert "diag/local/relation_precision" in header and "loss/sdm_local" in header
    assert {c["name"] for c in versions["components"]} == {"synth-pedes", "clip", "identity", "knn", "itc", "sdm"}


def test_tutorial_memory_objective_and_observer_ran(workspace):
    run_dir = workspace.root / "runs" / "memory-smoke"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    rows = [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == list(range(1, len(rows) + 1)) and len(rows) >= 2  # settings.loss_log.every=1 from -o
    assert "loss/triplet" not in rows[0] and rows[-1]["epoch"] == 2 and rows[-1]["loss/triplet"] >= 0
    recipe = (run_dir / "recipe.yaml").read_text()
    assert "settings:\n  loss_log:\n    every: 1\n    file: losses.jsonl\n" in recipe
    versions = json.loads((run_dir / "versions.json").read_text())
    assert {"kind": "global_association", "name": "mutual-knn-memory", "provider": "memory",
            "distribution": "wsreid-memory-triplet", "version": "0.1.0"} in versions["components"]
    assert {c["name"] for c in versions["components"]} == {"synth-pedes", "clip", "identity", "mutual-knn-memory",
                                                           "itc", "sdm", "vse-triplet"}
    assert versions["observers"] == [{"plugin": "memory", "hooks": ["wsreid_after_step"],
                                      "distribution": "wsreid-memory-triplet", "version": "0.1.0"}]
    header = (run_dir / "logs" / "epochs.csv").read_text().splitlines()[0].split(",")
    assert "diag/memory/related_per_item" in header and "loss/triplet" in header


def listed_commands(help_text: str) -> list[str]:
    """The sub-command names in ``wsreid --help``: the 4-space-indented first words of the
    "positional arguments:" section (the section's own ``COMMAND`` metavar line excluded)."""
    section = help_text.split("positional arguments:\n", 1)[1].split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^    (\S+)", section, re.MULTILINE)]


@pytest.mark.parametrize("block", [b for b in BLOCKS if "requires" in b.attrs], ids=lambda b: f"line{b.line}")
def test_tutorial_block_that_needs_a_newer_command(workspace, block):
    """Skipped only when ``wsreid --help`` does not list the command; a listed command whose
    ``--help`` fails (an import error, a broken sub-parser) fails here, then the block runs."""
    command = block.attrs["requires"]
    top = workspace.run("wsreid --help")
    assert top.returncode == 0, top.stdout + top.stderr
    commands = listed_commands(top.stdout)
    assert {"run", "validate", "eval", "data"} <= set(commands), commands  # the parse found the command list
    if command not in commands:
        pytest.skip(f"docs/plugins.md:{block.line} needs `wsreid {command}`, which this wsreid does not have yet "
                    f"(its commands: {', '.join(commands)})")
    probe = workspace.run(f"wsreid {command} --help")
    assert probe.returncode == 0, f"`wsreid {command} --help` exited {probe.returncode}:\n{probe.stdout}{probe.stderr}"
    workspace.run_block(block)


def test_listed_commands_reads_the_command_section():
    """The parser behind the skip above: the names of wsreid's --help layout, and nothing of
    the options section or the wrapped help lines."""
    text = ("usage: wsreid [-h] [--debug] COMMAND ...\n\nWeakly-supervised\n\npositional arguments:\n"
            "  COMMAND\n    run            train a recipe\n    eval           evaluate a run, or\n"
            "                   encoder\n    convert-weights\n                   write a model\n\n"
            "options:\n  -h, --help       show this help message and exit\n")
    assert listed_commands(text) == ["run", "eval", "convert-weights"]
