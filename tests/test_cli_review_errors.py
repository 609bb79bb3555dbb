"""Findings of a newcomer review of the command line, each asserted with its exact line:
an argument mistake of any command is one ``error: ... (see wsreid COMMAND --help)`` line
(exit 2; ``--help`` unchanged), ``wsreid search`` says when ``--images`` took the
descriptions, ``eval --top-k`` without ``--show`` is refused as ``--figure`` is, ``--workers``
below 1 is refused, ``plugins --module`` names ``--module`` when the module fails to import,
``convert-weights`` hides transformers' bar and names ``--tokenizer``, ``eval --figure``
writes the format its suffix names (or refuses it first), and a missing eval target is
said to be missing."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from wsreid.cli import build_parser, main
from wsreid.data.synth import PRESETS
from wsreid.data.synth.generate import SynthPreset


def _argument_error(capsys, argv: list[str]) -> str:
    """The one stderr line of an argument mistake (exit 2, nothing on stdout)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    assert info.value.code == 2, captured.err
    assert captured.out == "" and captured.err.count("\n") == 1 and "usage:" not in captured.err, captured.err
    return captured.err.rstrip("\n")


def _user_error(capsys, argv: list[str]) -> str:
    """The one stderr line of a user error that the command raised (exit 2)."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    return captured.err.rstrip("\n")


# ------------------------------------------------------------------ 1: argument mistakes, one line


@pytest.mark.parametrize("argv, line", [
    (["eval", "run1", "--split", "train"],
     "error: argument --split: invalid choice: 'train' (choose from 'test', 'val') (see wsreid eval --help)"),
    (["eval", "run1", "--mask-seed", "abc"],
     "error: argument --mask-seed: invalid int value: 'abc' (see wsreid eval --help)"),
    (["eval", "run1", "--bogus", "x"], "error: unrecognized arguments: --bogus x (see wsreid eval --help)"),
    (["--debug", "--data"], "error: the following arguments are required: COMMAND (see wsreid --help)"),
    (["rn", "x"], "error: argument COMMAND: invalid choice: 'rn' (choose from 'run', 'validate', 'eval', 'search', "
                  "'ablate', 'schema', 'plugins', 'data', 'convert-weights') (did you mean 'run'? See wsreid --help)"),
    (["eval", "run1", "--format", "jsn"],
     "error: argument --format: invalid choice: 'jsn' (choose from 'json', 'table') (did you mean 'json'? See wsreid "
     "eval --help)"),
    (["bogus"], "error: argument COMMAND: invalid choice: 'bogus' (choose from 'run', 'validate', 'eval', 'search', "
                "'ablate', 'schema', 'plugins', 'data', 'convert-weights') (see wsreid --help)"),
    (["run"], "error: the following arguments are required: recipe (see wsreid run --help)"),
    (["validate", "r.yaml", "--resume"], "error: unrecognized arguments: --resume (see wsreid validate --help)"),
    (["ablate", "s.yaml", "-j", "two"], "error: argument -j/--jobs: invalid int value: 'two' (see wsreid ablate --help)"),
    (["schema", "extra"], "error: unrecognized arguments: extra (see wsreid schema --help)"),
    (["plugins", "--module"], "error: argument --module: expected one argument (see wsreid plugins --help)"),
    (["data"], "error: the following arguments are required: {synth,check} (see wsreid data --help)"),
    (["data", "synth"], "error: the following arguments are required: --out (see wsreid data synth --help)"),
    (["data", "check", "d", "--format", "market1501"],
     "error: argument --format: invalid choice: 'market1501' (choose from 'cuhk-pedes', 'icfg-pedes', 'rstpreid') "
     "(see wsreid data check --help)"),
    (["data", "check", "d", "--bogus"], "error: unrecognized arguments: --bogus (see wsreid data check --help)"),
    (["eval", "runs/x", "--checkpoint", "best"],
     "error: unrecognized arguments: --checkpoint best: eval has no --checkpoint option: a checkpoint is the target "
     "itself (pass its folder or file in place of the run: wsreid eval RUN/checkpoints/best (or latest, epoch-0003, a "
     "model.safetensors); see wsreid eval --help)"),
    (["convert-weights", "in.pt"],
     "error: the following arguments are required: OUT_DIR (see wsreid convert-weights --help)"),
    (["search", "run1", "a man"], "error: the following arguments are required: --images (see wsreid search --help)"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_an_argument_mistake_is_one_line_naming_the_commands_help(capsys, argv, line):
    assert _argument_error(capsys, argv) == line


def test_search_says_that_images_took_the_descriptions(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "run1").mkdir()
    assert _argument_error(capsys, ["search", "run1", "--images", "imgs", "a man in red", "a girl"]) == (
        "error: the following arguments are required: DESCRIPTION: --images takes every argument after it, and took "
        "'a man in red', 'a girl', which are not a file or folder (put DESCRIPTION before --images, or after --; "
        "see wsreid search --help)")
    # only paths after --images (a folder that exists): nothing else to say
    assert _argument_error(capsys, ["search", "run1", "--images", "imgs"]) == (
        "error: the following arguments are required: DESCRIPTION (see wsreid search --help)")
    # what the line advises parses
    args = build_parser().parse_args(["search", "run1", "--images", "imgs", "--", "a man in red"])
    assert args.queries == ["a man in red"] and args.images == ["imgs"]


def test_greedy_option_hint_speaks_only_of_its_positional_and_of_paths_that_do_not_exist(tmp_path):
    from wsreid.cli.common import ArgumentParser, GreedyOptionHint

    hint = GreedyOptionHint("--images", "DESCRIPTION")
    parser = ArgumentParser(prog="p")
    missing = "the following arguments are required: DESCRIPTION"
    assert hint(parser, missing, ["r", "--images", str(tmp_path), "--top-k", "3"]) is None
    assert hint(parser, "the following arguments are required: target", ["--images", "x"]) is None
    assert hint(parser, "unrecognized arguments: x", ["--images", "x"]) is None
    assert hint(parser, missing, ["r", "--images", "a", "--images", str(tmp_path)]) is None  # the last one counts
    assert hint(parser, "the following arguments are required: target, DESCRIPTION", ["--images", "nope"]) == (
        "--images takes every argument after it, and took 'nope', which is not a file or folder",
        "put DESCRIPTION before --images, or after --")
    parser.add_error_hint(hint)
    parser.add_error_hint(GreedyOptionHint("--images", "DESCRIPTION"))  # the same hook once
    assert parser._error_hints == [hint]


def _all_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """prog -> help text of ``parser`` and of every sub-parser below it."""
    texts = {parser.prog: parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts |= _all_help(sub)
    return texts


def test_every_override_option_says_what_null_does_and_overwrite_what_it_deletes():
    """`-o train.epochs=null` gave the engine's 30 epochs, not the extended recipe's 8, and
    --help said only 'VALUE is YAML'; --overwrite said 'replace the run' and deleted the
    user's own files in the run directory too."""
    from wsreid.cli.common import OVERRIDE_VALUE_HELP

    helps = {prog: " ".join(text.split()) for prog, text in _all_help(build_parser()).items()}
    with_overrides = sorted(prog for prog, text in helps.items() if "-o KEY=VALUE, --override KEY=VALUE" in text)
    assert with_overrides == ["wsreid ablate", "wsreid eval", "wsreid run", "wsreid search", "wsreid validate"]
    assert OVERRIDE_VALUE_HELP.startswith("repeatable; VALUE is YAML; KEY=null removes the key, so its default")
    for prog in with_overrides:
        assert OVERRIDE_VALUE_HELP in helps[prog], prog
    assert ("--overwrite delete the run in the output directory, every file in it included (a wsreid run's "
            "directory only), and train it again") in helps["wsreid run"]


def test_wsreid_alone_prints_its_help_and_version_says_the_version(capsys):
    """`wsreid` alone was one error line (a COMMAND is required), `wsreid --version` an
    unrecognised argument."""
    from wsreid import __version__

    for alone in ([], ["--debug"]):
        assert main(alone) == 0
        captured = capsys.readouterr()
        assert captured.err == "" and captured.out == build_parser().format_help()
    assert "    run            train a recipe\n" in captured.out
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"wsreid {__version__}\n"


def test_help_is_argparses_own(monkeypatch, capsys):
    """The parser class changes the errors only: every command's --help is what a plain
    argparse parser prints."""
    import wsreid.cli as cli

    ours = _all_help(build_parser())
    monkeypatch.setattr(cli, "ArgumentParser", argparse.ArgumentParser, raising=False)
    monkeypatch.setattr(argparse.ArgumentParser, "add_error_hint", lambda self, hint: None, raising=False)
    plain = _all_help(build_parser())
    assert ours == plain and "wsreid data synth" in ours and len(ours) == 12
    with pytest.raises(SystemExit) as info:
        main(["eval", "--help"])
    assert info.value.code == 0 and capsys.readouterr().out == ours["wsreid eval"]


# ------------------------------------------------------------------ 2: eval --top-k needs --show


def test_eval_top_k_without_show_is_refused_as_figure_is(capsys, tmp_path):
    assert _user_error(capsys, ["eval", str(tmp_path / "no-run"), "--top-k", "3"]) == (
        "error: --top-k 3: the figure is drawn only with --show N (add --show N (the number of queries to draw), "
        "or leave --top-k out)")
    assert _user_error(capsys, ["eval", str(tmp_path / "no-run"), "--show", "2", "--top-k", "0"]) == (
        "error: --show N needs N >= 0 and --top-k K needs K >= 1 (e.g. --show 8 --top-k 5)")


# ------------------------------------------------------------------ 3: --workers >= 1


@pytest.fixture
def micro(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PRESETS, "tiny", SynthPreset(4, 2, 3))


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_data_workers_below_one_are_refused_naming_the_option(capsys, tmp_path, micro, workers):
    out = tmp_path / "synth"
    assert _argument_error(capsys, ["data", "synth", "--out", str(out), "--size", "tiny", "--no-contact-sheet",
                                    "--workers", workers]) == (
        f"error: argument --workers: needs a whole number >= 1, got '{workers}' (see wsreid data synth --help)")
    assert not out.exists()
    assert _argument_error(capsys, ["data", "check", str(tmp_path), "--workers", workers]) == (
        f"error: argument --workers: needs a whole number >= 1, got '{workers}' (see wsreid data check --help)")


# ------------------------------------------------------------------ 4: plugins --module


def test_plugins_module_that_fails_to_import_names_the_option(capsys):
    assert _user_error(capsys, ["plugins", "--module", "wsreid_no_such_module"]) == (
        "error: plugin module 'wsreid_no_such_module' (--module) failed to import: ModuleNotFoundError: No module "
        "named 'wsreid_no_such_module' (check that it (and what it imports) is installed or on PYTHONPATH)")


@pytest.mark.parametrize("given, name", [("./my_plugin.py", "my_plugin"), ("/plugins/wsreid_x", "wsreid_x"),
                                         ("notes.py", "notes"), ("pkg/__init__.py", "pkg")])
def test_plugins_module_given_as_a_path_says_a_module_name_is_needed(capsys, given, name):
    """It was blamed on 'the plugin's code' (a relative import's TypeError) or read as a
    module named '/plugins/...'."""
    assert _user_error(capsys, ["plugins", "--module", given]) == (
        f"error: plugin module {given!r} (--module) is a path; a module name is needed (give the module's import "
        f"name, e.g. {name}, with its folder on PYTHONPATH)")


# ------------------------------------------------------------------ 5: convert-weights


@pytest.fixture
def openai_file(tmp_path) -> Path:
    import torch

    from test_clip_openai import tiny_openai_state

    path = tmp_path / "openai_state.pt"
    torch.save(tiny_openai_state(), path)
    return path


def test_convert_weights_shows_no_transformers_bar(openai_file, tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    capfd.readouterr()
    assert main(["convert-weights", str(openai_file), str(tmp_path / "out")]) == 0
    captured = capfd.readouterr()
    # stderr: only the line that the folder holds no tokenizer (no --tokenizer here), no bar
    assert captured.out == f"{tmp_path / 'out'}\n"
    assert captured.err == (f"warning: convert-weights: {tmp_path / 'out'} holds no tokenizer (no --tokenizer "
                            "given): use it with encoder.tokenizer set to OpenAI's BPE file "
                            "bpe_simple_vocab_16e6.txt.gz, or convert again into a new folder (or after deleting "
                            "this one) with --tokenizer BPE_FILE\n")
    assert (tmp_path / "out" / "model.safetensors").is_file()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_info()  # asking transformers for details shows it again
    try:
        assert main(["convert-weights", str(openai_file), str(tmp_path / "out2")]) == 0
    finally:
        hf_logging.set_verbosity(verbosity)
    assert "Writing model shards" in capfd.readouterr().err


def test_convert_weights_missing_tokenizer_names_the_option(openai_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert _user_error(capsys, ["convert-weights", str(openai_file), str(out), "--tokenizer",
                                str(tmp_path / "nope.gz")]) == (
        f"error: convert-weights: tokenizer file {tmp_path}/nope.gz does not exist (pass --tokenizer the BPE merges "
        "file, OpenAI's bpe_simple_vocab_16e6.txt.gz)")
    assert _user_error(capsys, ["convert-weights", str(openai_file), str(out), "--tokenizer", str(tmp_path)]) == (
        f"error: convert-weights: tokenizer file {tmp_path} is a folder (pass --tokenizer the BPE merges file, "
        "OpenAI's bpe_simple_vocab_16e6.txt.gz)")
    (tmp_path / "empty.txt").write_text("#version: 0.2\n")
    assert _user_error(capsys, ["convert-weights", str(openai_file), str(out), "--tokenizer",
                                str(tmp_path / "empty.txt")]) == (
        f"error: convert-weights: tokenizer file {tmp_path}/empty.txt holds no merges")
    assert not out.exists()


# ------------------------------------------------------------------ 6: --figure's format


@pytest.mark.parametrize("name, fmt", [("f.jpg", "JPEG"), ("f.JPEG", "JPEG"), ("f.png", "PNG"), ("f", "PNG"),
                                       ("f.webp", "WEBP")])
def test_the_figure_is_written_in_the_format_its_suffix_names(tmp_path, name, fmt):
    from PIL import Image

    from wsreid.showcase import save_figure

    path = save_figure(Image.new("RGB", (8, 8), "white"), tmp_path / name)
    assert Image.open(path).format == fmt


def test_a_figure_suffix_that_cannot_be_written_is_refused_before_any_work(capsys, tmp_path):
    from PIL import Image

    from wsreid.errors import UserError
    from wsreid.showcase import save_figure

    assert _user_error(capsys, ["eval", str(tmp_path / "no-run"), "--show", "1", "--figure",
                                str(tmp_path / "x.svg")]) == (
        f"error: --figure {tmp_path}/x.svg: cannot write .svg images (name a .png, .jpg, .webp, .tif, .bmp or .gif "
        "file)")
    with pytest.raises(UserError, match=r"^--figure .*x\.pdf: cannot write \.pdf images"):
        save_figure(Image.new("RGB", (8, 8), "white"), tmp_path / "x.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_figure_path_ending_in_a_slash_names_a_folder(capsys, tmp_path):
    """`--figure out/` wrote a PNG file named `out` (a second run overwrote it)."""
    assert _user_error(capsys, ["eval", str(tmp_path / "no-run"), "--show", "1", "--figure", f"{tmp_path}/out/"]) == (
        f"error: --figure {tmp_path}/out/: names a folder (it ends with /), not the image file (name the file, e.g. "
        f"--figure {tmp_path}/out/retrieval.png)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 7: a missing eval target


def test_eval_of_a_path_that_does_not_exist_says_so(capsys, tmp_path):
    missing = tmp_path / "does" / "not" / "exist"
    assert _user_error(capsys, ["eval", str(missing)]) == (
        f"error: {missing} does not exist (pass a run directory (holding recipe.yaml), a checkpoint directory or "
        ".safetensors file)")
    (tmp_path / "afile").write_text("x")  # a path that exists but is neither: as before
    assert _user_error(capsys, ["eval", str(tmp_path / "afile")]) == (
        f"error: {tmp_path}/afile is neither a run directory nor a checkpoint (pass a run directory (holding "
        "recipe.yaml), a checkpoint directory or .safetensors file)")


@pytest.mark.parametrize("argv", [
    ["run", "r.yaml", "--output-dir", ""], ["ablate", "s.yaml", "--output-dir", " "],
    ["eval", "RUN", "--figure", ""], ["eval", ""], ["eval", "RUN", "--recipe", ""], ["eval", "RUN", "--data", ""],
    ["search", "RUN", "a man", "--images", ""], ["search", "", "a man", "--images", "x"],
    ["data", "check", ""], ["data", "synth", "--out", ""],
])
def test_an_empty_path_is_refused_not_read_as_the_default_or_the_working_directory(capsys, argv):
    """A script's unset variable: ``--output-dir ""`` trained into the recipe's folder,
    ``--images ""`` searched the working directory, ``data check ""`` checked it."""
    option = next((a for a, b in zip(argv, argv[1:]) if a.startswith("--") and not b.strip()), None)
    err = _argument_error(capsys, argv)
    assert err.startswith(f"error: argument {option or ''}") and \
        "an empty path (is the variable meant to hold it set?)" in err, err


def test_tilde_in_output_paths_is_the_home_folder(make_recipe, tmp_path, monkeypatch, capsys):
    """``--output-dir=~/x`` (the shell leaves it) and ``output_dir: ~/x`` in a recipe made
    a folder named '~' in the working directory."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}, "output_dir": "~/runs/a"})
    assert main(["run", str(recipe)]) == 0
    assert (home / "runs" / "a" / "metrics.json").is_file()
    assert main(["eval", "~/runs/a", "--show", "1", "--figure=~/fig.png"]) == 0
    assert (home / "fig.png").is_file()
    assert main(["run", str(recipe), "--output-dir=~/runs/b", "-o", "train.epochs=1"]) == 0
    assert (home / "runs" / "b" / "metrics.json").is_file() and not (work / "~").exists()


def test_image_folders_that_cannot_be_listed_are_said_not_skipped_silently(tmp_path, monkeypatch):
    """A subfolder without read permission was left out without a word, and an unreadable
    folder given itself was called 'no image files in this folder'."""
    import os

    from PIL import Image

    from wsreid.errors import UserError
    from wsreid.retrieval import image_files

    for sub in ("open", "locked"):
        (tmp_path / "imgs" / sub).mkdir(parents=True)
        Image.new("RGB", (8, 16)).save(tmp_path / "imgs" / sub / "a.png")
    real_scandir = os.scandir

    def scandir(folder):
        if Path(folder).name == "locked":  # as os.scandir fails without read permission
            raise PermissionError(13, "Permission denied", str(folder))
        return real_scandir(folder)

    monkeypatch.setattr(os, "scandir", scandir)
    skipped: list[str] = []
    assert image_files([tmp_path / "imgs"], skipped) == [tmp_path / "imgs" / "open" / "a.png"]
    assert skipped == [f"{tmp_path / 'imgs' / 'locked'}: cannot be read (Permission denied)"]
    with pytest.raises(UserError) as caught:
        image_files([tmp_path / "imgs" / "locked"])
    assert str(caught.value) == (f"{tmp_path / 'imgs' / 'locked'}: cannot read this folder (Permission denied) (give "
                                 "it read permission, or name another folder)")


def test_eval_of_an_unfinished_run_says_which_checkpoint_it_evaluates(make_recipe, tmp_path, capsys,
                                                                      synth_tiny_root):
    """An interrupted or still-training run was evaluated at its latest checkpoint without
    a word that it is not finished."""
    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}, "eval": {"select": "last"}})
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "run"
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 0
    assert "note:" not in capsys.readouterr().err  # finished: its selected checkpoint, as metrics.json says
    (run_dir / "metrics.json").unlink()  # as an interrupted run, or one still training
    assert main(["eval", str(run_dir)]) == 0
    assert f"note: {run_dir} is not finished (no metrics.json): evaluated its checkpoint epoch-0001\n" in \
        capsys.readouterr().err
    # wsreid search said nothing of it
    image = sorted((synth_tiny_root / "imgs" / "test").iterdir())[0]
    assert main(["search", str(run_dir), "a man", "--images", str(image)]) == 0
    assert f"note: {run_dir} is not finished (no metrics.json): searched with its checkpoint epoch-0001\n" in \
        capsys.readouterr().err


def test_a_run_of_another_version_whose_recipe_does_not_load_says_so(make_recipe, tmp_path, capsys):
    """A run written by a newer wsreid (a key this version lacks) read as a typo in the
    run's recipe, 'did you mean', inviting an edit of the run."""
    import json

    recipe = make_recipe("baselines/itc.yaml", {"train": {"epochs": 1, "warmup_epochs": 0}})
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "run"
    saved = run_dir / "recipe.yaml"
    saved.write_text(saved.read_text().replace("  grad_clip: ", "  grad_clip_norm: 1.0\n  grad_clip: ", 1))
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 2
    same_version = capsys.readouterr().err
    assert "train.grad_clip_norm: unknown key" in same_version and "written by" not in same_version
    versions = json.loads((run_dir / "versions.json").read_text())
    versions["packages"]["wsreid"] = "9.0.0"
    (run_dir / "versions.json").write_text(json.dumps(versions))
    for argv in (["eval", str(run_dir)], ["search", str(run_dir), "a man", "--images", str(tmp_path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {run_dir} was written by wsreid 9.0.0 (this is wsreid 0.1.0), and its recipe "
                              "does not load here: ") and err.rstrip().endswith("(use wsreid 9.0.0 for this run)"), err
    # the user's own mistake is not blamed on the version
    saved.write_text(saved.read_text().replace("  grad_clip_norm: 1.0\n", "", 1))
    assert main(["eval", str(run_dir), "-o", "train.epochz=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: override -o train.epochz=2: train.epochz: unknown key") and "written by" not in err

    # weights laid out by another version (renamed tensors): the version, not the recipe, is named
    from safetensors.torch import load_file, save_file

    best = run_dir / "checkpoints" / "best" / "model.safetensors"
    save_file({f"old_layout.{k}": v for k, v in load_file(best).items()}, best)
    for argv in (["eval", str(run_dir)], ["search", str(run_dir), "a man", "--images", str(tmp_path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {run_dir} was written by wsreid 9.0.0 (this is wsreid 0.1.0), and its weights "
                              f"do not fit the model built here: checkpoint file {best.resolve()} does not fit the "
                              "model (") and err.rstrip().endswith("(use wsreid 9.0.0 for this run)"), err
    versions["packages"]["wsreid"] = "0.1.0"
    (run_dir / "versions.json").write_text(json.dumps(versions))
    assert main(["eval", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "written by" not in err and "(check that the recipe matches the run that wrote it)" in err, err


def test_a_directory_given_as_the_recipe_names_the_recipe_of_the_run_in_it(tmp_path, capsys, monkeypatch):
    """`wsreid run RUN` (the run directory, not its recipe.yaml) said only to give the
    recipe file inside it; a run directory's recipe and the resume command are known."""
    from wsreid.checkpoint_layout import RUN_MARKER

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my run").mkdir()
    (tmp_path / "my run" / "recipe.yaml").write_text("data: {name: synth-pedes}\n")
    (tmp_path / "empty").mkdir()
    assert _user_error(capsys, ["run", "my run"]) == (  # a folder of recipes, not a run: nothing to resume
        "error: my run: recipe file not found (it is a directory; give the recipe file inside it: "
        "'my run/recipe.yaml')")
    (tmp_path / "my run" / RUN_MARKER).write_text("{}")
    assert _user_error(capsys, ["run", "my run"]) == (
        "error: my run: recipe file not found (it is a directory; the recipe of the run in it is 'my run/recipe.yaml'; "
        "to resume that run: wsreid run 'my run/recipe.yaml' --output-dir 'my run' --resume)")
    assert _user_error(capsys, ["validate", "empty"]) == (
        "error: empty: recipe file not found (it is a directory; give the recipe file inside it)")


def test_eval_of_an_ablation_studys_directory_names_its_runs(tmp_path, capsys):
    """It said the folder was 'neither a run directory nor a checkpoint'."""
    study = tmp_path / "study"
    for label in ("B", "A"):
        (study / "runs" / label / "seed-0").mkdir(parents=True)
        (study / "runs" / label / "seed-0" / "recipe.yaml").write_text("data: {name: synth-pedes}\n")
    from PIL import Image

    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 16)).save(tmp_path / "photos" / "p.png")
    for command in (["eval", str(study)], ["search", str(study), "a man", "--images", str(tmp_path / "photos")]):
        assert _user_error(capsys, command) == (
            f"error: {study} is an ablation study's directory, not a run (its 2 runs are in {study}/runs/<label>/"
            f"seed-<seed>) (name one of them, e.g. {study}/runs/A/seed-0)")


@pytest.mark.parametrize("choices", ["'test', 'val'", "test, val"])  # quoted up to Python 3.12.6, plain after
def test_a_close_choice_is_found_whatever_the_python_version_writes(choices):
    from wsreid.cli.common import _close_choice

    assert _close_choice(f"argument --split: invalid choice: 'tst' (choose from {choices})") == "test"
    assert _close_choice(f"argument --split: invalid choice: 'xyzzy' (choose from {choices})") is None
