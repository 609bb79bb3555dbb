"""`wsreid eval` options on a trained tiny run: reproduction of the run's numbers,
cross-dataset evaluation, degraded (masked) queries, zero-shot without a run, and the
retrieval figure. Evaluation must never write into the run directory."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML

from conftest import RECIPES, TINY_OVERRIDES
from wsreid.cli import main
from wsreid.query_masking import mask_query_tokens, parse_ratios
from wsreid.errors import UserError

KEYS = ("R1", "R5", "R10", "mAP", "mINP")


def _write_recipe(path: Path, base: str, data_root: Path, seed: int, output_dir: Path) -> Path:
    tree = {"extends": str(RECIPES / base), "output_dir": str(output_dir),
            "data": {"name": "synth-pedes", "size": "tiny", "seed": seed, "root": str(data_root)}}
    tree.update({k: dict(v) for k, v in TINY_OVERRIDES.items()})
    tree["train"].update(epochs=2, batch_size=64)
    tree["init"] = None  # tiny random-init encoder, not the shipped recipes' pretrained one
    yaml = YAML()
    yaml.version = (1, 2)
    with path.open("w") as f:
        yaml.dump(tree, f)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_tiny_root):
    """A 2-epoch ITC run on synth-pedes tiny (seed 0): (run_dir, recipe path, workdir)."""
    work = tmp_path_factory.mktemp("eval")
    recipe = _write_recipe(work / "itc.yaml", "baselines/itc.yaml", synth_tiny_root, 0, work / "run")
    assert main(["run", str(recipe)]) == 0
    return work / "run", recipe, work


@pytest.fixture(scope="module")
def other_root(tmp_path_factory):
    """A second synth-pedes tiny dataset, generated with another seed."""
    from wsreid.data.synth import SynthConfig, generate_synth

    root = tmp_path_factory.mktemp("synth-other") / "tiny-seed1"
    generate_synth(SynthConfig(size="tiny", seed=1), root)
    return root


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(directory.rglob("*"))}


def _eval(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["eval", *map(str, args)]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_reproduces_the_run_and_writes_nothing(trained, capsys):
    run_dir, _, _ = trained
    before = _snapshot(run_dir)
    result = _eval(capsys, run_dir)
    expected = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert {k: result[k] for k in KEYS} == pytest.approx(expected, rel=1e-9)
    assert result["weights"].endswith("checkpoints/best/model.safetensors") and result["weakly_supervised"] is True
    # The best checkpoint is the epoch of the highest validation R1 of logs/epochs.csv (this run
    # peaks at epoch 1 of 2): its weights, not the last epoch's, give the run's test metrics.
    rows = list(csv.DictReader((run_dir / "logs" / "epochs.csv").open()))
    val_r1 = [float(r["val/R1"]) for r in rows]
    assert [int(r["epoch"]) for r in rows] == [1, 2] and val_r1[0] > val_r1[1], val_r1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = json.loads((run_dir / "checkpoints" / "best" / "state.json").read_text())
    assert best["epoch"] == metrics["best_epoch"] == 1 and best["R1"] == val_r1[0]
    last = _eval(capsys, run_dir / "checkpoints" / "epoch-0002" / "model.safetensors")
    assert last["weights"].endswith("epoch-0002/model.safetensors")
    assert {k: last[k] for k in KEYS} != expected
    assert _snapshot(run_dir) == before


def test_query_mask_ratio_rows(trained, capsys):
    run_dir, _, _ = trained
    result = _eval(capsys, run_dir, "--query-mask-ratio", "0,0.3,0.6")
    rows = result["query_mask"]
    assert [r["ratio"] for r in rows] == [0.0, 0.3, 0.6]
    assert {k: rows[0][k] for k in KEYS} == {k: result[k] for k in KEYS}  # ratio 0 = the plain evaluation
    assert rows[2]["mAP"] != result["mAP"]  # masking 60% of the words changes the ranking
    again = _eval(capsys, run_dir, "--query-mask-ratio", "0.6")
    assert again["query_mask"][0] == rows[2]  # seeded: the same masks again
    assert _eval(capsys, run_dir, "--query-mask-ratio", "0.6", "--mask-seed", "5")["query_mask"][0] != rows[2]

    assert main(["eval", str(run_dir), "--query-mask-ratio", "0.3,0.6", "--format", "table"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3  # header, unmasked, one row per ratio
    assert table[1].startswith("| none | " + f"{result['R1']:.2f} |")
    assert table[3] == ("| 0.6 | " + " | ".join(f"{rows[2][k]:.2f}" for k in KEYS)
                        + f" | {rows[2]['top1_images']} | {rows[2]['top1_hub_share']:.1f} | {rows[2]['query_mean_cosine']:.3f} |")
    # the hubness diagnostic: a count of gallery images and a share of the queries
    assert (rows[0]["top1_images"], rows[0]["top1_hub_share"]) == (result["top1_images"], result["top1_hub_share"])
    for row in [result] + rows:
        assert 1 <= row["top1_images"] and 0 < row["top1_hub_share"] <= 100 and -1 <= row["query_mean_cosine"] <= 1
    assert rows[0]["query_mean_cosine"] == pytest.approx(result["query_mean_cosine"])


def test_mask_query_tokens_masks_a_share_of_word_tokens():
    pad, start, end, mask = 0, 1, 2, 3
    ids = torch.tensor([[start, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, end, pad, pad],
                        [start, 20, 21, 22, end, pad, pad, pad, pad, pad, pad, pad, pad, pad]])
    attn = (ids != pad).long()
    special = {pad, start, end, mask}
    masked = {r: mask_query_tokens(ids, attn, r, mask, special, [7, 8], seed=0) for r in (0.0, 0.1, 0.3, 0.5, 0.99)}
    assert torch.equal(masked[0.0], ids)
    counts = {r: (m == mask).sum(dim=1).tolist() for r, m in masked.items()}
    # 10 and 3 word tokens: round(r * n), at least one once r > 0
    assert counts == {0.0: [0, 0], 0.1: [1, 1], 0.3: [3, 1], 0.5: [5, 2], 0.99: [10, 3]}
    for m in masked.values():  # special tokens and padding never change
        keep = torch.isin(ids, torch.tensor(sorted(special)))
        assert torch.equal(m[keep], ids[keep])
    assert ((masked[0.1] == mask) <= (masked[0.5] == mask)).all()  # nested masks
    # the mask of a caption depends on its index and the seed, not on its batch
    alone = mask_query_tokens(ids[1:], attn[1:], 0.5, mask, special, [8], seed=0)
    assert torch.equal(alone[0], masked[0.5][1])
    others = [mask_query_tokens(ids[:1], attn[:1], 0.5, mask, special, [7], seed=s)[0] for s in range(1, 6)]
    assert any(not torch.equal(o, masked[0.5][0]) for o in others)
    assert parse_ratios("0, 0.25") == [0.0, 0.25]
    for bad in ("1.0", "x", "-0.1"):
        with pytest.raises(UserError, match="--query-mask-ratio"):
            parse_ratios(bad)


def test_table_shows_a_dash_where_no_query_pair_exists():
    """A split with one caption has no pair of queries: the cosine is null, the table a dash."""
    from wsreid.engine.offline_eval import evaluation_table

    result = {"dataset": "d", "split": "test", "weights": "w", "R1": 100.0, "R5": 100.0, "R10": 100.0,
              "mAP": 100.0, "mINP": 100.0, "top1_images": 1, "top1_hub_share": 100.0, "query_mean_cosine": None}
    assert evaluation_table(result).splitlines()[-1] == "| none | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | 1 | 100.0 | - |"
    assert json.loads(json.dumps(result))["query_mean_cosine"] is None


def test_cross_dataset_evaluation_reuses_the_runs_tokenizer(trained, other_root, capsys):
    run_dir, _, work = trained
    before = _snapshot(run_dir)
    own = json.loads((run_dir / "metrics.json").read_text())["test"]
    cross = _eval(capsys, run_dir, "-o", f"data.root={other_root}", "-o", "data.seed=1")
    assert cross["data"]["root"] == str(other_root) and cross["data"]["seed"] == 1
    assert {k: cross[k] for k in KEYS} != own
    # the output says where its data came from (it read like an in-domain result)
    assert cross["data_from"] == f"-o data.root={other_root} -o data.seed=1"
    other_recipe = _write_recipe(work / "other.yaml", "baselines/itc.yaml", other_root, 1, work / "unused")
    via_recipe = _eval(capsys, run_dir, "--data", other_recipe)
    assert {k: via_recipe[k] for k in KEYS} == {k: cross[k] for k in KEYS}
    assert via_recipe["data_from"] == f"--data {other_recipe}"
    assert main(["eval", str(run_dir), "--data", str(other_recipe), "-o", "data.workers=1", "--format", "table"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert f", data: --data {other_recipe} -o data.workers=1, weights: " in header, header
    assert "data_from" not in _eval(capsys, run_dir)
    assert main(["eval", str(run_dir), "--format", "table"]) == 0
    assert ", data: " not in capsys.readouterr().out.splitlines()[0]
    # the weights file of one of the run's checkpoints is the run's too (its tokenizer)
    best = run_dir / "checkpoints" / "best" / "model.safetensors"
    via_file = _eval(capsys, best, "--data", other_recipe)
    assert via_file["weights"] == str(best) and {k: via_file[k] for k in KEYS} == {k: cross[k] for k in KEYS}
    assert _snapshot(run_dir) == before and not (work / "unused").exists()

    # The encoder gets the run's saved vocabulary, not one built from the other captions.
    from wsreid.recipe import load_recipe
    from wsreid.engine.offline_eval import build_for_evaluation as _build

    loaded = load_recipe(str(run_dir / "recipe.yaml"), [f"data.root={other_root}", "data.seed=1"])
    plugins = loaded.plugins
    _, with_run, _ = _build(loaded.recipe, plugins, run_dir)
    _, without_run, _ = _build(loaded.recipe, plugins, None)
    from transformers import PreTrainedTokenizerFast

    saved = PreTrainedTokenizerFast.from_pretrained(str(run_dir / "tokenizer"))
    assert with_run.tokenizer.get_vocab() == saved.get_vocab()
    assert without_run.tokenizer.get_vocab() != saved.get_vocab()


def test_weights_trained_with_a_built_vocabulary_are_never_given_another_one(trained, other_root, tmp_path, capsys):
    """A run copied without its tokenizer/ (or evaluated with another encoder's recipe)
    got a vocabulary built from the evaluated data's captions, saved INTO the run, where it
    broke every later evaluation; a checkpoint copied out of its run was scored with the
    other dataset's vocabulary, rc 0 and no warning, when the sizes happened to match."""
    import shutil

    run_dir, _, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "tokenizer")
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(run_dir / "checkpoints" / "best" / "model.safetensors", loose / "model.safetensors")
    said = ("(encoder.pretrained: null), saved in the run's tokenizer/ folder, and ")
    other = ["-o", f"data.root={other_root}", "-o", "data.seed=1"]
    for args, where in (([copy, *other],
                         f"its run directory {copy} holds no tokenizer/ folder (copied without it, or the recipe is "
                         "not the one the run was trained with?)"),
                        ([loose / "model.safetensors", "--recipe", run_dir / "recipe.yaml", *other],
                         "a checkpoint outside its run directory does not carry it")):
        capsys.readouterr()
        assert main(["eval", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said + where in err, err
        assert err.endswith("(evaluate the run directory itself, or copy its tokenizer/ folder back beside its "
                            "checkpoints/)\n"), err
    assert not (copy / "tokenizer").exists()  # nothing written into the run
    assert main(["search", str(loose / "model.safetensors"), "a man", "--images", str(other_root / "imgs" / "test"),
                 "--recipe", str(run_dir / "recipe.yaml")]) == 2
    assert "a checkpoint outside its run directory does not carry it" in capsys.readouterr().err


def test_data_recipe_errors_cite_the_data_recipe(trained, capsys):
    """With --data, a bad key of the borrowed data block is reported at its own file and
    line (not at the run's recipe), and an override of it at the override."""
    run_dir, _, work = trained
    bad = work / "bad-data.yaml"
    bad.write_text("%YAML 1.2\n---\ndata:\n  name: synth-pedes\n  size: huge\n")
    assert main(["eval", str(run_dir), "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}:5: data.size") and len(err.splitlines()) == 1, err
    assert main(["eval", str(run_dir), "--data", str(bad), "-o", "data.size=enormous"]) == 2
    err = capsys.readouterr().err.strip()
    assert "override -o data.size=enormous" in err and "bad-data.yaml" not in err, err
    # a study file given as --data names its base recipe (it said 'the recipe has no data block')
    study = work / "study.yaml"
    study.write_text("base: ../recipes/dgia.yaml\nvariants: [{label: A}]\n")
    assert main(["eval", str(run_dir), "--data", str(study)]) == 2
    assert capsys.readouterr().err == (
        f"error: --data {study}: this is an ablation study, not a recipe (pass a recipe with 'data:', such as the "
        "study's base recipe ../recipes/dgia.yaml (its path is relative to the study file))\n")


def test_zero_shot_of_a_recipe_needs_no_run(trained, synth_tiny_root, capsys, tmp_path):
    run_dir, _, _ = trained
    recipe = _write_recipe(tmp_path / "zs.yaml", "baselines/itc.yaml", synth_tiny_root, 0, tmp_path / "zs-run")
    zero = _eval(capsys, "--zero-shot", "--recipe", recipe)
    assert zero["weights"] == "encoder as loaded (zero-shot)"
    assert not (tmp_path / "zs-run").exists()
    assert _eval(capsys, recipe, "--zero-shot") == zero  # the recipe may also be the target
    # the same untrained encoder as the run started from (same seed, same vocabulary)
    from_run = _eval(capsys, run_dir, "--zero-shot")
    assert {k: from_run[k] for k in KEYS} == {k: zero[k] for k in KEYS}
    trained_metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert {k: zero[k] for k in KEYS} != trained_metrics

    assert main(["eval", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--zero-shot" in err


def test_an_evaluation_warns_about_the_queries_it_cuts_not_the_training_captions(synth_tiny_root, capsys, tmp_path):
    """Evaluation (zero-shot included) builds the encoder with the dataset: the encoder's
    build-time warning named "the training captions" (of the --data dataset, with --data:
    captions neither trained on nor evaluated), while what a short max_length cuts there is
    the evaluated split's queries."""
    recipe = _write_recipe(tmp_path / "zs.yaml", "baselines/itc.yaml", synth_tiny_root, 0, tmp_path / "zs-run")
    for split in ("val", "test"):
        capsys.readouterr()
        assert main(["eval", "--zero-shot", "--recipe", str(recipe), "-o", "encoder.max_length=20",
                     "--split", split]) == 0
        warned = capsys.readouterr().err.splitlines()
        assert len(warned) == 1 and "training captions" not in warned[0], warned
        assert re.fullmatch(rf"warning: encoder.max_length 20: (\d+\.\d)% of the {split} queries are longer \(in "
                            r"tokens, with start and end\) and lose their last words \(raise encoder.max_length\)",
                            warned[0]), warned[0]
    # the recipe's own max_length (64) cuts none of them: nothing to say
    assert main(["eval", "--zero-shot", "--recipe", str(recipe)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_show_writes_a_figure_of_the_expected_size(trained, capsys, tmp_path, monkeypatch):
    from PIL import Image

    from wsreid.showcase import FRAME, MARGIN, MATCH_COLOUR, MISS_COLOUR, CAPTION_WIDTH, THUMB_W, figure_size

    run_dir, _, _ = trained
    before = _snapshot(run_dir)
    result = _eval(capsys, run_dir, "--show", 3, "--top-k", 4, "--figure", tmp_path / "fig" / "top4.png")
    path = Path(result["figure"])
    assert path == tmp_path / "fig" / "top4.png"
    image = Image.open(path)
    assert image.format == "PNG" and image.size == figure_size(3, 4)
    assert figure_size(3, 4) == (MARGIN + CAPTION_WIDTH + 4 * (MARGIN + THUMB_W + 2 * FRAME) + MARGIN,
                                 MARGIN + 3 * (128 + 2 * FRAME + 14 + MARGIN))
    frames = [image.getpixel((MARGIN + CAPTION_WIDTH + MARGIN + j * (MARGIN + THUMB_W + 2 * FRAME) + 1,
                              MARGIN + i * (128 + 2 * FRAME + 14 + MARGIN) + 1)) for i in range(3) for j in range(4)]
    assert set(frames) <= {MATCH_COLOUR, MISS_COLOUR}
    assert _snapshot(run_dir) == before
    monkeypatch.chdir(tmp_path)  # the defaults: 5 images per query, retrieval.png in the working directory
    result = _eval(capsys, run_dir, "--show", 2)
    assert result["figure"] == "retrieval.png" and Image.open(tmp_path / "retrieval.png").size == figure_size(2, 5)
    # a figure path that cannot be a file is refused before the evaluation, in one line
    (tmp_path / "afile").write_text("x")
    for figure, says in ((tmp_path / "fig", "is a directory"), (tmp_path / "afile" / "top.png", "is a file")):
        assert main(["eval", str(run_dir), "--show", "2", "--figure", str(figure)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --figure {figure}") and says in err and err.count("\n") == 1, err


def test_top_k_rows_rank_by_similarity_and_mark_matches(tmp_path):
    from PIL import Image

    from wsreid.showcase import MATCH_COLOUR, MISS_COLOUR, draw_retrieval_figure, query_indices, top_k_rows

    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.2], [1.0, 1.0], [1.0, 0.0]]), dim=1)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (16, 32), (40 * i, 0, 0)).save(paths[-1])
    rows = top_k_rows(text, image, [5, 6], [6, 5, 6, 7], paths, [0, 1], 3)
    assert [(r.path.name, r.rank, r.match) for r in rows[0]] == [("3.png", 1, False), ("1.png", 2, True),
                                                                   ("2.png", 3, False)]
    assert [r.path.name for r in rows[1]] == ["0.png", "2.png", "1.png"] and rows[1][0].match
    assert rows[0][1].score == pytest.approx(1 / (1.04 ** 0.5))
    figure = draw_retrieval_figure(["first", "second"], rows, 3)
    from wsreid.showcase import CAPTION_WIDTH, MARGIN

    left = MARGIN + CAPTION_WIDTH + MARGIN
    assert figure.getpixel((left + 1, MARGIN + 1)) == MISS_COLOUR
    assert figure.getpixel((left + 1 + (MARGIN + 64 + 8), MARGIN + 1)) == MATCH_COLOUR
    assert query_indices(10, 4) == [0, 3, 6, 9] and query_indices(2, 5) == [0, 1] and query_indices(7, 1) == [0]


def test_zero_shot_with_a_checkpoint_is_refused_not_ignored(tmp_path, capsys):
    ckpt_dir = tmp_path / "run" / "checkpoints" / "best"
    ckpt_dir.mkdir(parents=True)
    (tmp_path / "run" / "recipe.yaml").write_text("extends: x\n")
    (ckpt_dir / "model.safetensors").write_bytes(b"")
    for target in (ckpt_dir, ckpt_dir / "model.safetensors"):
        assert main(["eval", str(target), "--zero-shot"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is a checkpoint, and --zero-shot evaluates the encoder without" in err


def test_eval_says_what_it_drew_and_refuses_what_it_would_ignore(trained, tmp_path, capsys):
    """--mask-seed without a ratio was ignored, a ratio given twice gave two equal rows,
    --top-k beyond the gallery and --show beyond the queries were cut down without a word,
    and the table left out where the figure went and how large the split is."""
    run_dir, _, _ = trained
    for args, says in ((["--mask-seed", "3"], "error: --mask-seed 3: the queries are masked only with "
                                              "--query-mask-ratio (add --query-mask-ratio R (e.g. 0.5), or leave "
                                              "--mask-seed out)\n"),
                       (["--query-mask-ratio", "0.1,0.1"], "error: --query-mask-ratio 0.1,0.1: ratio 0.1 is given "
                                                           "twice (list each ratio once)\n")):
        capsys.readouterr()
        assert main(["eval", str(run_dir), *args]) == 2
        assert capsys.readouterr().err == says
    figure = tmp_path / "all.png"
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--show", "500", "--top-k", "100", "--figure", str(figure),
                 "--format", "table"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[-2:] == [
        "note: --top-k 100: the test gallery holds 63 images; the figure shows 63 per query",
        "note: --show 500: the test split has 126 queries; the figure shows each once"]
    assert out.splitlines()[0].startswith("synth-pedes test (126 queries, 63 images), weights: ")
    assert f"figure: {figure}" in out.splitlines()


def test_the_latest_pointer_of_a_run_evaluates_the_checkpoint_it_names(trained, capsys):
    """RUN/checkpoints/latest (a file naming the newest checkpoint) was 'neither a run
    directory nor a checkpoint'."""
    run_dir, _, _ = trained
    named = (run_dir / "checkpoints" / "latest").read_text().strip()
    result = _eval(capsys, run_dir / "checkpoints" / "latest")
    assert result["weights"] == str(run_dir / "checkpoints" / named / "model.safetensors")
    assert result["R1"] == _eval(capsys, run_dir / "checkpoints" / named)["R1"]


def test_a_run_in_its_first_epoch_holds_no_checkpoint_yet(tmp_path):
    """It said 'RUN holds no checkpoint' of a run that is training, as if it were broken."""
    from wsreid.engine.offline_eval import resolve_target

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.yaml").write_text("extends: x.yaml\n")
    with pytest.raises(UserError) as caught:
        resolve_target(tmp_path / "run")
    assert str(caught.value) == (f"{tmp_path / 'run'} holds no checkpoint yet (a run writes its first one at the end "
                                 "of its first epoch) (train it first, or wait for its first epoch, or pass --zero-shot)")


def test_a_latest_pointer_naming_no_checkpoint_is_one_line(tmp_path):
    from wsreid.engine.offline_eval import resolve_target

    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "latest").write_text("epoch-0003\n")  # the folder it names was removed
    with pytest.raises(UserError) as caught:
        resolve_target(checkpoints / "latest")
    assert str(caught.value) == (f"{checkpoints / 'latest'} points to epoch-0003, which holds no model.safetensors "
                                 "(pass the run directory, or another checkpoint folder of checkpoints/)")
