"""``wsreid search`` (and ``wsreid eval``) as a review found it: ``--format json`` held the hits alone (not the
number of images searched, the files left out, the checkpoint); a finished run without
``checkpoints/best`` was searched (and evaluated) at its latest checkpoint without a word; hidden files
(macOS ``._*``, ``.thumbs/``) were searched and a symbolic link listed beside its target,
a link to nothing skipped silently; a description after ``--images`` was called a missing
file; counts of 1 read in the plural, and one unreadable file was a warning and an error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import RECIPES, TINY_OVERRIDES

from wsreid.cli import main

BAD = "(replace the file with an intact copy, or leave it out)"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synth_tiny_root) -> Path:
    """A finished 2-epoch run whose best epoch is 1 and whose latest checkpoint is
    epoch-0002: the encoder is frozen (only the ID classifier trains), so epoch 2's
    validation R1 equals epoch 1's and does not replace it as the best."""
    from wsreid.engine.session import run_recipe
    from wsreid.recipe import load_recipe

    out = tmp_path_factory.mktemp("search") / "run"
    tree = {"extends": str(RECIPES / "baselines" / "supervised-pk-id.yaml"), "output_dir": str(out), "init": None,
            "data": {"name": "synth-pedes", "size": "tiny", "root": str(synth_tiny_root)},
            **{k: dict(v) for k, v in TINY_OVERRIDES.items()}}
    tree["train"] = {**tree["train"], "lr_factors": {"objectives.id.*": 5.0, "encoder.*": 0.0}}
    metrics = run_recipe(load_recipe(tree)).metrics
    assert (metrics["best_epoch"], metrics["epochs"]) == (1, 2)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best", "epoch-0002", "latest"]
    return out


@pytest.fixture
def photos(tmp_path, synth_tiny_root, monkeypatch) -> list[str]:
    """Two images of the test split in ``photos/`` of the working directory (tmp_path)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    sources = sorted((synth_tiny_root / "imgs" / "test").iterdir())[:2]
    for k, source in enumerate(sources):
        shutil.copy(source, tmp_path / "photos" / f"p{k}.png")
    return ["photos/p0.png", "photos/p1.png"]


def _search(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["search", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_search_json_holds_the_images_searched_the_files_left_out_and_the_checkpoint(run_dir, photos, capsys):
    from wsreid.retrieval import load_encoder

    Path("photos/broken.png").write_text("not an image")
    Path("photos/gone.png").symlink_to("nothing.png")
    code, out, err = _search(capsys, str(run_dir), "a man in a red jacket", "--images", "photos", "--top-k", "5",
                             "--format", "json")
    assert code == 0
    printed = json.loads(out)
    [expected] = load_encoder(run_dir).search(["a man in a red jacket"], photos, top_k=5)
    assert printed == {
        "images": 2,
        "skipped": [
            {"path": "photos/gone.png", "problem": "image photos/gone.png is a symbolic link to nothing.png, which "
                                                   "does not exist (point the link at the image file, or replace it "
                                                   "with the file)"},
            {"path": "photos/broken.png", "problem": "image photos/broken.png cannot be decoded "
                                                     "(UnidentifiedImageError: cannot identify image file "
                                                     f"'photos/broken.png') {BAD}"},
        ],
        "checkpoint": f"{run_dir}/checkpoints/best/model.safetensors",
        "results": [{"query": "a man in a red jacket",
                     "hits": [{"rank": h.rank, "score": round(h.score, 6), "path": str(h.path)} for h in expected]}],
    }
    assert sorted(h["path"] for h in printed["results"][0]["hits"]) == photos
    assert err.splitlines() == [f"warning: {s['problem']}; searched without it" for s in printed["skipped"]]


def test_search_of_a_finished_run_without_its_best_checkpoint_says_which_it_uses(run_dir, photos, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    code, out, err = _search(capsys, str(copy), "a man", "--images", "photos")
    assert (code, err) == (0, "")  # checkpoints/best in place: nothing to say
    shutil.rmtree(copy / "checkpoints" / "best")
    code, out, err = _search(capsys, str(copy), "a man", "--images", "photos")
    assert code == 0
    assert err == (f"note: {copy} has no checkpoints/best (its metrics.json names epoch 1 as the best): searched "
                   "with its latest checkpoint epoch-0002\n")
    assert out.splitlines()[0] == f"2 images; encoder {copy}/checkpoints/epoch-0002/model.safetensors"
    # the latest checkpoint is the epoch metrics.json names (eval.select: last): nothing to say
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({**metrics, "best_epoch": 2}))
    assert _search(capsys, str(copy), "a man", "--images", "photos")[::2] == (0, "")
    # a checkpoint named by the user: searched as named
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert _search(capsys, str(copy / "checkpoints" / "epoch-0002"), "a man", "--images", "photos")[::2] == (0, "")


def test_eval_of_a_finished_run_without_its_best_checkpoint_says_which_it_evaluates(run_dir, tmp_path, capsys):
    """As search does: ``wsreid eval`` of a finished run whose checkpoints/best is gone
    evaluated its latest checkpoint without a word."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "checkpoints" / "best")
    capsys.readouterr()
    code = main(["eval", str(copy), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err == (f"note: {copy} has no checkpoints/best (its metrics.json names epoch 1 as the best): "
                            "evaluated its latest checkpoint epoch-0002\n")
    assert json.loads(captured.out)["weights"] == f"{copy}/checkpoints/epoch-0002/model.safetensors"
    # the checkpoint named by the user: evaluated as named, nothing to say
    assert main(["eval", str(copy / "checkpoints" / "epoch-0002"), "--format", "json"]) == 0
    assert capsys.readouterr().err == ""


def test_search_leaves_out_hidden_files_and_lists_each_real_file_once(run_dir, photos, capsys):
    from wsreid.retrieval import image_files

    shutil.copy("photos/p0.png", "photos/._p0.png")  # a macOS AppleDouble companion
    Path("photos/.thumbs").mkdir()
    shutil.copy("photos/p1.png", "photos/.thumbs/p1.png")
    Path("photos/z_link.png").symlink_to("p0.png")
    assert image_files(["photos"]) == [Path("photos/p0.png"), Path("photos/p1.png")]
    assert image_files(["photos/z_link.png", "photos"]) == [Path("photos/z_link.png"), Path("photos/p1.png")]
    assert image_files(["photos/.thumbs"]) == [Path("photos/.thumbs/p1.png")]  # as named

    Path("photos/a_gone.png").symlink_to("deleted.png")
    code, out, err = _search(capsys, str(run_dir), "a man", "--images", "photos")
    assert code == 0
    assert out.splitlines()[0] == (f"2 images (1 unreadable file left out); encoder "
                                   f"{run_dir}/checkpoints/best/model.safetensors")
    assert sorted(line.split()[-1] for line in out.splitlines()[3:]) == photos
    assert err == ("warning: image photos/a_gone.png is a symbolic link to deleted.png, which does not exist (point "
                   "the link at the image file, or replace it with the file); searched without it\n")


def test_a_folder_whose_only_images_are_left_out_says_what_was_left_out(run_dir, photos, capsys, monkeypatch):
    """A folder whose images all sit in hidden folders or behind a symbolic link to a
    folder was "no image files in this folder (names ending in .jpg, ...)" - as if it held
    none."""
    import wsreid.retrieval as retrieval

    monkeypatch.setattr(retrieval, "load_encoder", lambda *a, **k: pytest.fail("the encoder was built first"))
    Path("album/.thumbs").mkdir(parents=True)
    shutil.copy("photos/p0.png", "album/.thumbs/p0.png")
    shutil.copy("photos/p1.png", "album/._p1.png")
    Path("album/holiday").symlink_to("../photos")
    code, _, err = _search(capsys, str(run_dir), "a man", "--images", "album")
    assert (code, err) == (2, "error: album: no image files in this folder, leaving out 2 images in hidden files or "
                              "folders (names starting with '.', e.g. album/._p1.png) and 1 symbolic link to a "
                              "folder, not followed (e.g. album/holiday) (name those folders or files themselves to "
                              "search them)\n")
    # as the line says: named, they are searched
    assert retrieval.image_files(["album/holiday", "album/.thumbs"]) == [
        Path("album/holiday/p0.png"), Path("album/holiday/p1.png"), Path("album/.thumbs/p0.png")]
    Path("empty").mkdir()
    Path("empty/notes.txt").write_text("no images")
    assert _search(capsys, str(run_dir), "a man", "--images", "empty")[::2] == (2, (
        "error: empty: no image files in this folder (names ending in .jpg, .jpeg, .png, .bmp, .webp, .gif, .tif, "
        ".tiff) (name a folder of images, or image files)\n"))


def test_search_says_that_a_description_after_images_goes_before_it(run_dir, photos, capsys, monkeypatch):
    import wsreid.retrieval as retrieval

    monkeypatch.setattr(retrieval, "load_encoder", lambda *a, **k: pytest.fail("the encoder was built first"))
    assert _search(capsys, str(run_dir), "a man", "--images", "photos", "a woman", "a girl in red")[::2] == (2, (
        "error: --images 'a woman', 'a girl in red': no such file or folder; if they are descriptions: --images takes "
        "every argument after it (put every DESCRIPTION before --images, or correct the path)\n"))
    # a missing folder with a space in its name is told as missing too
    assert _search(capsys, str(run_dir), "a man", "--images", "my photos")[::2] == (2, (
        "error: --images 'my photos': no such file or folder; if it is a description: --images takes every argument "
        "after it (put every DESCRIPTION before --images, or correct the path)\n"))
    # what reads as a path stays a missing path
    for missing in ("photo", "my photos/2024", "holiday 1.jpg"):
        assert _search(capsys, str(run_dir), "a man", "--images", "photos", missing)[::2] == (
            2, f"error: {missing}: no such file or folder (name image files or folders of images)\n")


def test_search_counts_of_one_read_in_the_singular_and_nothing_readable_is_one_error_line(run_dir, photos, capsys):
    Path("photos/p1.png").unlink()
    for k in range(6):
        Path(f"photos/q{k}.png").write_text("not an image")
    code, out, err = _search(capsys, str(run_dir), "a xyzzy man", "--images", "photos")
    assert code == 0
    assert out.splitlines()[0] == (f"1 image (6 unreadable files left out); encoder "
                                   f"{run_dir}/checkpoints/best/model.safetensors")
    assert err.splitlines()[0] == ("warning: description 1 ('a xyzzy man'): 1 of its 3 word tokens is unknown to the "
                                   "encoder's vocabulary, each read as the same unknown token (use the words of the "
                                   "training captions)")
    assert err.splitlines()[1:] == [
        *(f"warning: image photos/q{k}.png cannot be decoded (UnidentifiedImageError: cannot identify image file "
          f"'photos/q{k}.png') {BAD}; searched without it" for k in range(5)),
        "warning: 1 more image file cannot be read; searched without it"]

    # the only file unreadable: its own line, once
    assert _search(capsys, str(run_dir), "a man", "--images", "photos/q0.png")[::2] == (2, (
        "error: image photos/q0.png cannot be decoded (UnidentifiedImageError: cannot identify image file "
        f"'photos/q0.png') {BAD}\n"))
    # none of several readable: one line, with the first one's reason
    assert _search(capsys, str(run_dir), "a man", "--images", "photos/q0.png", "photos/q1.png")[::2] == (2, (
        "error: none of the 2 image files can be read as an image; the first: image photos/q0.png cannot be decoded "
        f"(UnidentifiedImageError: cannot identify image file 'photos/q0.png') {BAD}\n"))


def test_zero_shot_search_of_a_from_scratch_recipe_says_to_train_it(photos, make_recipe, capsys):
    """A recipe whose encoder builds its vocabulary from the training captions has nothing to
    search with untrained: the hint named a library field (BuildContext.train_captions)."""
    recipe = make_recipe("baselines/itc.yaml")
    assert main(["search", "--zero-shot", str(recipe), "a man", "--images", "photos"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: clip encoder: with encoder.pretrained: null it builds its vocabulary from the training captions, and "
        "none are at hand (no dataset loaded, no tokenizer/ folder of a run) (a from-scratch encoder has nothing to "
        "encode with before it is trained: train the recipe (wsreid run) and use its run directory")
