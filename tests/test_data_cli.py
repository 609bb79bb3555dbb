"""``wsreid data synth`` / ``wsreid data check`` parsers and the dataset plugin components."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from wsreid.api import BuildContext
from wsreid.cli.data import add_data_parser
from wsreid.data.synth.generate import GENERATOR_VERSION, PRESETS, SynthPreset
from wsreid.errors import DataError, RecipeError
from wsreid.pluginmanager import load_plugins

MICRO = SynthPreset(4, 2, 3)


@pytest.fixture
def micro(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the "tiny" preset a few identities so that tests generate in a fraction of a second."""
    monkeypatch.setitem(PRESETS, "tiny", MICRO)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wsreid")
    add_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_data_synth_generates_reuses_and_draws_contact_sheet(tmp_path: Path, micro, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "synth"
    assert _run(["data", "synth", "--out", str(out), "--size", "tiny", "--seed", "3", "--set", "clutter=2"]) == 0
    text = capsys.readouterr().out
    assert "generated in" in text and "train      4 ids" in text and "test       3 ids" in text
    meta = json.loads((out / "synth_meta.json").read_text())
    assert meta["config"]["seed"] == 3 and meta["config"]["clutter"] == 2
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] > 1000 and sheet.size[1] == 40 + 3 * (192 + 20)  # a title and one row per test identity
    assert _run(["data", "synth", "--out", str(out), "--size", "tiny", "--seed", "3", "--set", "clutter=2", "--no-contact-sheet"]) == 0
    assert "already present" in capsys.readouterr().out
    with pytest.raises(DataError) as caught:  # which setting differs, not only that one does
        _run(["data", "synth", "--out", str(out), "--size", "tiny", "--seed", "4"])
    assert str(caught.value) == (f"{out} holds a synth-pedes dataset generated with other settings: seed 3 there, 4 "
                                 "asked; clutter 2 there, 6 asked (to reuse it, ask for the folder's settings; else "
                                 "delete that directory or choose another location (--out))")
    custom = tmp_path / "sheets" / "s.png"
    _run(["data", "synth", "--out", str(tmp_path / "other"), "--size", "tiny", "--contact-sheet", str(custom)])
    assert custom.is_file() and not (tmp_path / "other" / "contact_sheet.png").exists()


@pytest.mark.parametrize(
    "setting, message",
    [
        ("bogus=1", "unknown synth-pedes setting"),
        ("caption_noise=2", "caption_noise"),
        ("clutter", "unknown"),
        ("train_images_per_id=[0.5]", r"^synth-pedes settings: train_images_per_id \[0\.5\] must be probabilities \(of 2, 3, \.\.\. images\) summing to 1$"),
    ],
)
def test_data_synth_rejects_bad_settings(tmp_path: Path, setting: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        _run(["data", "synth", "--out", str(tmp_path / "x"), "--set", setting])
    assert "\n" not in str(info.value) and not (tmp_path / "x").exists()


def test_data_synth_rejects_a_malformed_list_setting(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"^--set train_images_per_id=\[0\.5: invalid YAML") as info:
        _run(["data", "synth", "--out", str(tmp_path / "x"), "--set", "train_images_per_id=[0.5"])
    assert "\n" not in str(info.value) and not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv, error", [
    (["data"], "wsreid data: error: the following arguments are required: {synth,check}"),
    (["data", "synth", "--out", "x", "--size", "huge"],
     "wsreid data synth: error: argument --size: invalid choice: 'huge' (choose from 'tiny', 'small', 'medium', "
     "'cuhk')"),
    (["data", "check", "x", "--format", "market1501"],
     "wsreid data check: error: argument --format: invalid choice: 'market1501' (choose from 'cuhk-pedes', "
     "'icfg-pedes', 'rstpreid')"),
], ids=["no-subcommand", "size", "format"])
def test_data_parser_requires_subcommand_and_choices(argv: list[str], error: str, capsys: pytest.CaptureFixture) -> None:
    """A missing sub-command and an unknown --size/--format are argparse usage errors: exit
    code 2, with the usage and then the error naming the argument and the allowed choices."""
    with pytest.raises(SystemExit) as info:
        _run(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: wsreid {' '.join(argv[:2]) if len(argv) > 1 else 'data'} [-h]"), err
    assert err.splitlines()[-1] == error


def test_data_check_detects_format_and_reports(tmp_path: Path, micro, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ds"
    _run(["data", "synth", "--out", str(out), "--size", "tiny", "--no-contact-sheet"])
    capsys.readouterr()
    assert _run(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cuhk-pedes dataset" in text and "64x128" in text and "identities in more than one split: 0" in text
    victim = next((out / "imgs" / "test").iterdir())
    victim.write_bytes(b"not a png")
    with pytest.raises(DataError, match=f"{victim.name}.*cannot be decoded"):
        _run(["data", "check", str(out), "--format", "cuhk-pedes"])
    assert _run(["data", "check", str(out), "--no-decode"]) == 0  # existence only


def test_plugin_registers_dataset_components() -> None:
    registry = load_plugins().registry
    assert {"synth-pedes", "cuhk-pedes", "icfg-pedes", "rstpreid"} <= set(registry.names("dataset"))
    entry = registry.get("dataset", "synth-pedes")
    assert entry.params_model().size == "small" and entry.params_model().root is None
    for name in ("cuhk-pedes", "icfg-pedes", "rstpreid"):
        with pytest.raises(ValidationError):
            registry.get("dataset", name).params_model()  # root is required
        for field in registry.get("dataset", name).params_model.model_fields.values():
            assert field.description
    for field in entry.params_model.model_fields.values():
        assert field.description
    with pytest.raises(ValidationError):
        entry.params_model(size="small", colour_noise=0.1)  # unknown keys are rejected


def test_synth_pedes_component_generates_on_first_use(tmp_path: Path, micro, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSREID_CACHE", str(tmp_path / "cache"))
    cls = load_plugins().registry.get("dataset", "synth-pedes").cls
    splits = cls(cls.Params(size="tiny"), BuildContext()).load()
    assert splits.name == "synth-pedes" and splits.val is not None
    assert splits.root == tmp_path / "cache" / "synth-pedes" / f"tiny-seed0-v{GENERATOR_VERSION}"
    assert [p.index for p in splits.train] == list(range(len(splits.train)))
    assert {p.person_id for p in splits.train}.isdisjoint(splits.test.image_person_ids)
    again = cls(cls.Params(size="tiny", workers=2), BuildContext()).load()  # workers are not part of the key
    assert [p.caption for p in again.train] == [p.caption for p in splits.train]
    explicit = cls(cls.Params(size="tiny", seed=1, root=str(tmp_path / "mine")), BuildContext()).load()
    assert explicit.root == tmp_path / "mine" and explicit.train[0].caption != splits.train[0].caption


def _cuhk(root: Path) -> None:
    records = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        path = root / "imgs" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 8), (i, i, i)).save(path)
        records.append({"split": split, "captions": [f"caption {i} a", f"caption {i} b"], "file_path": f"{i}.png", "id": i + 1, "processed_tokens": []})
    (root / "reid_raw.json").write_text(json.dumps(records))


def test_real_dataset_components_load_and_check(tmp_path: Path) -> None:
    _cuhk(tmp_path)
    cls = load_plugins().registry.get("dataset", "cuhk-pedes").cls
    splits = cls(cls.Params(root=str(tmp_path)), BuildContext()).load()
    assert len(splits.train) == 4 and splits.test.caption_person_ids == [4, 4] and splits.val.image_person_ids == [3]
    (tmp_path / "imgs" / "3.png").write_bytes(b"broken")  # the test split's image
    assert len(cls(cls.Params(root=str(tmp_path), check_images="exists"), BuildContext()).load().train) == 4
    with pytest.raises(DataError) as info:  # the default decodes the evaluation splits at load
        cls(cls.Params(root=str(tmp_path)), BuildContext()).load()
    assert str(info.value).startswith(f"image {tmp_path / 'imgs' / '3.png'} (reid_raw.json record 3, split test) "
                                      "cannot be decoded (UnidentifiedImageError: ")
    assert str(info.value).endswith("(replace the file with an intact copy or remove its record)")
    with pytest.raises(DataError, match=r"3\.png.*cannot be decoded"):
        cls(cls.Params(root=str(tmp_path), check_images="decode"), BuildContext()).load()
    (tmp_path / "imgs" / "3.png").write_bytes((tmp_path / "imgs" / "2.png").read_bytes())
    (tmp_path / "imgs" / "0.png").write_bytes(b"broken")  # a training image: decoded only with 'decode'
    assert len(cls(cls.Params(root=str(tmp_path)), BuildContext()).load().train) == 4
    with pytest.raises(DataError, match=r"0\.png \(reid_raw.json record 0, split train\) cannot be decoded"):
        cls(cls.Params(root=str(tmp_path), check_images="decode"), BuildContext()).load()
    with pytest.raises(DataError, match="not a directory"):
        cls(cls.Params(root=str(tmp_path / "missing")), BuildContext()).load()
    rstp = load_plugins().registry.get("dataset", "rstpreid").cls
    with pytest.raises(DataError, match="data_captions.json"):
        rstp(rstp.Params(root=str(tmp_path)), BuildContext()).load()
