"""Recipe input that used to pass ``wsreid validate`` and fail (or change meaning) later:
a YAML alias inside the value it names, a ``data.root`` below a regular file, an
``init.run`` whose checkpoint the engine would not load, and ``--resume`` of a run whose
relative ``output_dir`` is read from another working directory (docs/reliability.md).
Each is one line naming the file and line (or the override) and the key, exit code 2."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from wsreid.cli import main
from wsreid.errors import RecipeError
from wsreid.recipe.yamlio import parse_yaml_text

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ITC = f"extends: {RECIPES / 'baselines' / 'itc.yaml'}\n"


def _refused(capsys, argv: list[str]) -> str:
    """Run ``wsreid ARGV``, which must fail with one line and exit 2; -> the message."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err[len("error: "):].rstrip("\n")


# --------------------------------------------------------------------------- recursive aliases
@pytest.mark.parametrize("text, line, key, kind", [
    ("train:\n  epochs: 1\nfoo: &x [*x]\n", 3, "foo.0", "list"),  # read as [None] before
    ("data: &d\n  name: synth-pedes\n  size: tiny\n  extra: *d\n", 4, "data.extra", "mapping"),  # read as null
    ("a: &x\n  - 1\n  - b: 2\n    c:\n      - *x\n", 5, "a.1.c.0", "list"),
])
def test_an_alias_inside_the_value_it_names_is_refused_with_its_line_and_key(tmp_path, capsys, text, line, key, kind):
    path = tmp_path / "recipe.yaml"
    path.write_text(ITC + text)
    message = _refused(capsys, ["validate", str(path)])
    anchor = text.split("&")[1][0]
    assert message == (f"{path}:{line + 1}: {key}: the alias *{anchor} stands inside the {kind} it names "
                       f"(&{anchor}): a value cannot contain itself (point *{anchor} at a value outside it, "
                       "or write the value out)")


def test_a_self_containing_mapping_in_an_override_is_one_line_not_a_recursion_error(capsys):
    message = _refused(capsys, ["validate", str(RECIPES / "baselines" / "itc.yaml"), "-o", "train=&x {a: *x}"])
    assert message.startswith("override -o train=&x {a: *x}:1: a: the alias *x stands inside the mapping it names")


def test_aliases_that_do_not_contain_themselves_still_load():
    text = "d: &y {p: 1}\ne: {<<: *y, q: *y}\nf: &x\n  g: &x 3\n  h: *x\nl: &l [1]\nm: [*l, *l]\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an anchor given again is YAML 1.2, not worth a warning to the user
        tree, _ = parse_yaml_text(text, "s.yaml")
    assert tree == {"d": {"p": 1}, "e": {"p": 1, "q": {"p": 1}}, "f": {"g": 3, "h": 3}, "l": [1], "m": [[1], [1]]}
    with pytest.raises(RecipeError, match=r"^s.yaml:1: a.0: the alias \*x"):
        parse_yaml_text("a: &x [*x]\n", "s.yaml")


# --------------------------------------------------------------------------- data.root below a file
def test_a_data_root_below_a_regular_file_is_refused_naming_the_override(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("")
    recipe = str(RECIPES / "baselines" / "itc.yaml")
    message = _refused(capsys, ["validate", recipe, "-o", "data.root=notes.txt/synth"])
    assert message == (f"override -o data.root=notes.txt/synth: data.root: 'notes.txt/synth' lies below "
                       f"{tmp_path / 'notes.txt'}, which is a file, not a folder (set data.root to a new folder, "
                       "or to the folder holding the dataset)")
    # in a recipe file: its line; the root itself a file keeps the dataset's own message
    path = tmp_path / "recipe.yaml"
    path.write_text(ITC + "data:\n  root: notes.txt/a/b\n")
    assert _refused(capsys, ["validate", str(path)]).startswith(
        f"recipe.yaml:3: data.root: 'notes.txt/a/b' lies below {tmp_path / 'notes.txt'}, which is a file")
    assert "notes.txt is a file, not a folder" in _refused(capsys, ["validate", recipe, "-o", "data.root=notes.txt"])
    # a root that does not exist yet below folders is fine: synth-pedes is generated there on first use
    assert main(["validate", recipe, "-o", "data.root=new/synth"]) == 0


# --------------------------------------------------------------------------- init.run: the engine's checkpoint rule
def _run_with(tmp_path: Path, files: dict[str, tuple[str, ...]], pointer: str | None = None) -> Path:
    """A run directory holding recipe.yaml and, per checkpoint folder, the files named
    (empty: validation reads names only); ``pointer``: the text of checkpoints/latest."""
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text("")
    for folder, names in files.items():
        (run / "checkpoints" / folder).mkdir(parents=True)
        for name in names:
            (run / "checkpoints" / folder / name).write_bytes(b"")
    if pointer is not None:
        (run / "checkpoints" / "latest").write_text(pointer)
    return run


@pytest.mark.parametrize("checkpoint", ["last", "best"])
def test_init_run_whose_only_epoch_folder_lacks_checkpoint_files_is_refused_as_the_engine_would(tmp_path, capsys,
                                                                                                 checkpoint):
    """The engine takes an epoch-XXXX folder (without checkpoints/latest) only when it holds
    every checkpoint file; validate accepted any folder holding model.safetensors."""
    from wsreid.engine import checkpoint as ckpt
    from wsreid.engine.rundir import weights_of
    from wsreid.errors import TrainingError

    run = _run_with(tmp_path, {"epoch-0003": ("model.safetensors", "components.safetensors", "rng.safetensors")})
    path = tmp_path / "recipe.yaml"
    path.write_text(ITC + f"init:\n  run: runs/old\n  checkpoint: {checkpoint}\n")
    message = _refused(capsys, ["validate", str(path)])
    assert message == (f"{path}:3: init.run: 'runs/old' holds no complete checkpoint yet (looked in "
                       f"{run / 'checkpoints'}) (train it first (a run writes a checkpoint at each "
                       "train.checkpoint_every epochs), or name another run)")
    with pytest.raises(TrainingError, match="holds no checkpoint"):  # what the run would meet
        weights_of(run, checkpoint)
    for name in ckpt.FILES:
        (run / "checkpoints" / "epoch-0003" / name).write_bytes(b"")
    assert main(["validate", str(path)]) == 0
    assert weights_of(run, checkpoint) == run / "checkpoints" / "epoch-0003" / "model.safetensors"


@pytest.mark.parametrize("pointer", ["epoch-0002", "../../other/checkpoints/epoch-0001"])
def test_init_run_whose_latest_pointer_names_a_missing_checkpoint_is_refused(tmp_path, capsys, pointer):
    """A pointer naming a folder that is gone, or one outside the run's own checkpoints/
    (here a complete checkpoint of another run, which the engine used to follow)."""
    from wsreid.engine import checkpoint as ckpt

    other = tmp_path / "runs" / "other" / "checkpoints" / "epoch-0001"
    other.mkdir(parents=True)
    for name in ckpt.FILES:
        (other / name).write_bytes(b"")
    run = _run_with(tmp_path, {"epoch-0001": ckpt.FILES}, pointer=pointer)
    path = tmp_path / "recipe.yaml"
    path.write_text(ITC + "init:\n  run: runs/old\n")
    assert _refused(capsys, ["validate", str(path)]) == (
        f"{path}:3: init.run: 'runs/old' has a checkpoint pointer {run / 'checkpoints' / 'latest'} naming a "
        "checkpoint that is missing or holds no model.safetensors (restore that checkpoint, or name another run)")
    # best: checkpoints/best (or the best.old the engine restores) is taken first, as by the engine
    path.write_text(ITC + "init:\n  run: runs/old\n  checkpoint: best\n")
    (run / "checkpoints" / "best.old").mkdir()
    (run / "checkpoints" / "best.old" / "model.safetensors").write_bytes(b"")
    assert main(["validate", str(path)]) == 0
    assert (run / "checkpoints" / "best.old").is_dir()  # validation moves nothing


# --------------------------------------------------------------------------- a relative output_dir and --resume
def test_resume_from_another_working_directory_names_where_it_looked_and_the_command_that_works(
        make_recipe, tmp_path, monkeypatch, capsys):
    """A relative output_dir is relative to the working directory (not to the recipe file):
    the run's saved recipe.yaml, resumed from elsewhere, looked for a directory that does
    not exist and said the run "holds no recipe.yaml" (start again with --overwrite)."""
    import shlex

    from wsreid.engine import session
    from wsreid.engine.rundir import write_run_files
    from wsreid.recipe import load_recipe

    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(start)
    loaded = load_recipe(make_recipe("baselines/itc.yaml"))
    write_run_files(Path("runs/rel"), session.resolved_yaml_for(loaded, Path("runs/rel")), {})
    saved = start / "runs" / "rel" / "recipe.yaml"
    assert "output_dir: runs/rel\n" in saved.read_text()
    monkeypatch.chdir(elsewhere)
    message = _refused(capsys, ["run", str(saved), "--resume"])
    assert message.startswith(f"--resume: the run directory runs/rel does not exist (looked for "
                              f"{elsewhere / 'runs' / 'rel'}: a relative run directory is relative to the working "
                              "directory, not to the recipe file) (to resume the run that recipe belongs to: wsreid run ")
    suggested = shlex.split(message.split("belongs to: ")[1].rstrip(")"))
    assert suggested == ["wsreid", "run", str(saved), "--output-dir", str(saved.parent), "--resume"]
    assert not (elsewhere / "runs").exists()
    started = []
    monkeypatch.setattr(session, "_train", lambda loaded, run_dir, mode, *rest: started.append((run_dir, mode))
                        or session.RunResult(run_dir, {}, False))
    from wsreid.checkpoint_layout import FILES  # a checkpoint's files: --resume needs one

    (saved.parent / "checkpoints" / "epoch-0001").mkdir(parents=True)
    for name in FILES:
        (saved.parent / "checkpoints" / "epoch-0001" / name).write_text("")
    assert main(suggested[1:]) == 0  # the suggested command gets past the recipe check into training
    assert started == [(saved.parent, session.RunMode.RESUME)]
    # a recipe that is not a run's own: where to run from, or --output-dir
    message = _refused(capsys, ["run", str(RECIPES / "baselines" / "itc.yaml"), "--output-dir", "gone", "--resume"])
    assert message.endswith("(run the command from the directory the run was started in, or name the run directory "
                            "with --output-dir; to start a new run there, leave --resume out)")
