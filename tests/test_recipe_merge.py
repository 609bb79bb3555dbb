"""Recipe files without a registry: YAML 1.2 reading, extends chains, merge rules,
overrides, and where each key came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from wsreid.errors import RecipeError
from wsreid.recipe import apply_overrides, merge, parse_override, parse_yaml_text, read_recipe_tree, read_yaml_file
from wsreid.recipe.locations import Location, Locations


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- YAML 1.2


def test_yaml_12_scalars_and_lines():
    tree, locations = parse_yaml_text("lr: 1e-5\nflag: on\nanswer: yes\nold_octal: 012\nnothing: null\nlist:\n  - a\n  - 2\n", "r.yaml")
    assert tree == {"lr": 1e-05, "flag": "on", "answer": "yes", "old_octal": 12, "nothing": None, "list": ["a", 2]}
    assert type(tree["lr"]) is float and type(tree["old_octal"]) is int
    assert locations["lr"] == Location("r.yaml", 1)
    assert locations["nothing"].line == 5
    assert locations[("list", 1)] == Location("r.yaml", 8)
    assert str(locations.find("list.1.deeper")) == "r.yaml:8"


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match=r"nope\.yaml: recipe file not found \(check the path\)"):
        read_yaml_file(tmp_path / "nope.yaml")


def test_invalid_yaml_reports_its_line(tmp_path):
    path = write(tmp_path, "bad.yaml", "train:\n  lr: 1\n  epochs: [1, 2\nx: 1\n")
    with pytest.raises(RecipeError) as info:
        read_yaml_file(path)
    # line 4 ("x: 1") is where the unclosed flow sequence opened on line 3 meets the ':'
    assert str(info.value) == (f"{path}:4: invalid YAML: while parsing a flow sequence expected ',' or ']', "
                               "but got ':' (check indentation, quoting and brackets)")


def test_duplicate_key_reports_its_line(tmp_path):
    path = write(tmp_path, "dup.yaml", "train:\n  lr: 1\n  lr: 2\n")
    with pytest.raises(RecipeError, match=r"dup\.yaml:3: invalid YAML: .*duplicate key"):
        read_yaml_file(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("- a\n- b\n", r"top\.yaml:1: the top level of a recipe must be a mapping of keys, not a list"),
     ("just words\n", r"top\.yaml:1: .* not a string"),
     ("# only a comment\n", r"top\.yaml: recipe file is empty")],
)
def test_top_level_must_be_a_mapping(tmp_path, text, expected):
    with pytest.raises(RecipeError, match=expected):
        read_yaml_file(write(tmp_path, "top.yaml", text))


# --------------------------------------------------------------------------- merge rules


def test_merge_rules():
    base = {
        "train": {"lr": 1.0, "epochs": 3, "betas": [0.9, 0.99]},
        "objectives": {"itc": {"name": "itc", "temperature": 0.1}, "sdm": {"name": "sdm", "relation": "lrc"}},
        "keep": "me",
    }
    overlay = {
        "train": {"lr": 2.0, "betas": [0.5]},  # mapping merges, list replaces
        "objectives": {
            "itc": {"weight": 0.5},  # no name: merges into the block
            "sdm": {"name": "itc"},  # new name: old parameters are dropped
        },
        "gone": None,
    }
    merged = merge(base, overlay)
    assert merged == {
        "train": {"lr": 2.0, "epochs": 3, "betas": [0.5]},
        "objectives": {"itc": {"name": "itc", "temperature": 0.1, "weight": 0.5}, "sdm": {"name": "itc"}},
        "keep": "me",
    }
    assert base["objectives"]["sdm"] == {"name": "sdm", "relation": "lrc"}  # inputs untouched


def test_merge_null_deletes_and_same_name_merges():
    base = {"objectives": {"a": {"name": "itc", "weight": 2.0}, "b": {"name": "sdm"}}}
    merged = merge(base, {"objectives": {"b": None, "a": {"name": "itc", "weight": None}, "c": {"name": "x", "p": None}}})
    assert merged == {"objectives": {"a": {"name": "itc"}, "c": {"name": "x"}}}


# --------------------------------------------------------------------------- extends


def test_extends_chain_with_locations(tmp_path):
    write(tmp_path, "base/root.yaml", "train:\n  lr: 1.0e-5\n  epochs: 3\nobjectives:\n  sdm: {name: sdm, relation: lrc}\n  itc: {name: itc}\n")
    write(tmp_path, "base/mid.yaml", "extends: root.yaml\ntrain:\n  epochs: 5\nobjectives:\n  sdm: {name: itc}\n")
    top = write(tmp_path, "top.yaml", "# top\nextends: base/mid.yaml\nobjectives:\n  itc: null\noutput_dir: runs/x\n")
    tree, locations = read_recipe_tree(top)
    assert tree == {"train": {"lr": 1e-05, "epochs": 5}, "objectives": {"sdm": {"name": "itc"}}, "output_dir": "runs/x"}
    assert locations["train.lr"] == Location(str(tmp_path / "base/root.yaml"), 2)
    assert locations["train.epochs"] == Location(str(tmp_path / "base/mid.yaml"), 3)
    assert locations["objectives.sdm.name"] == Location(str(tmp_path / "base/mid.yaml"), 5)
    assert "objectives.sdm.relation" not in locations and "objectives.itc" not in locations
    assert "extends" not in locations
    assert locations.root == Location(str(top))


def test_bottom_file_keeps_null_as_value(tmp_path):
    tree, _ = read_recipe_tree(write(tmp_path, "r.yaml", "train: {grad_clip: null}\n"))
    assert tree == {"train": {"grad_clip": None}}


def test_extends_itself(tmp_path):
    path = write(tmp_path, "self.yaml", "train: {}\nextends: self.yaml\n")
    with pytest.raises(RecipeError, match=r"self\.yaml:2: extends: .*self\.yaml extends itself"):
        read_recipe_tree(path)


def test_extends_cycle_names_the_chain(tmp_path):
    a = write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: c.yaml\n")
    write(tmp_path, "c.yaml", "x: 1\nextends: a.yaml\n")
    with pytest.raises(RecipeError) as info:
        read_recipe_tree(a)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'c.yaml'}:2: extends: cycle ")
    assert "a.yaml -> " in message and "b.yaml -> " in message and "c.yaml -> " in message
    assert message.count("a.yaml") == 2  # starts and ends the chain


def test_extends_missing_target(tmp_path):
    path = write(tmp_path, "r.yaml", "extends: nothere.yaml\n")
    with pytest.raises(RecipeError, match=r"r\.yaml:1: extends: 'nothere\.yaml' not found .*relative to the extending file"):
        read_recipe_tree(path)


def test_tree_in_code_may_extend_relative_to_cwd(tmp_path, monkeypatch):
    write(tmp_path, "base.yaml", "train: {lr: 0.5, epochs: 2}\n")
    monkeypatch.chdir(tmp_path)
    tree, locations = read_recipe_tree({"extends": "base.yaml", "train": {"epochs": 4}})
    assert tree == {"train": {"lr": 0.5, "epochs": 4}}
    assert locations["train.lr"] == Location("base.yaml", 1)


# --------------------------------------------------------------------------- overrides


def test_overrides_values_and_locations(tmp_path):
    path = write(
        tmp_path, "r.yaml",
        "train:\n  lr: 1.0\n  betas: [0.9, 0.99]\nlocal_associations:\n  lrc: {name: lrc, modalities: both, threshold: 0.5}\n"
        "objectives:\n  sdm_global: {name: sdm}\n",
    )
    tree, locations = read_recipe_tree(
        path,
        ["train.lr=2e-5", "objectives.sdm_global=null", "local_associations.lrc.modalities=image",
         "train.betas.1=0.98", "objectives.itc={name: itc, weight: 0.5}", "output_dir='on'"],
    )
    assert tree == {
        "train": {"lr": 2e-05, "betas": [0.9, 0.98]},
        "local_associations": {"lrc": {"name": "lrc", "modalities": "image", "threshold": 0.5}},
        "objectives": {"itc": {"name": "itc", "weight": 0.5}},
        "output_dir": "on",
    }
    assert str(locations.find("train.lr")) == "override -o train.lr=2e-5"
    assert str(locations.find("objectives.itc.weight")) == "override -o objectives.itc={name: itc, weight: 0.5}"
    assert locations["local_associations.lrc.threshold"] == Location(str(path), 5)
    assert locations["train"] == Location(str(path), 1)
    # stepping into a number of the file turns it into a mapping: the override is to blame
    _, locations = read_recipe_tree(path, ["train.lr.x=1"])
    assert str(locations.find("train.lr")) == "override -o train.lr.x=1"
    assert locations["train.betas"] == Location(str(path), 3)


def test_override_name_replaces_block():
    tree = {"objectives": {"a": {"name": "sdm", "relation": "lrc"}}}
    locations = Locations(Location("r.yaml"), {("objectives",): Location("r.yaml", 1)})
    out = apply_overrides(tree, ["objectives.a.name=itc"], locations)
    assert out == {"objectives": {"a": {"name": "itc"}}}
    assert tree == {"objectives": {"a": {"name": "sdm", "relation": "lrc"}}}
    assert str(locations["objectives.a"]) == "override -o objectives.a.name=itc"
    assert apply_overrides(tree, ["objectives.a.name=sdm"]) == tree  # same name: nothing dropped


@pytest.mark.parametrize("order", ["root first", "name first"])
def test_overrides_of_one_list_survive_a_later_name_change_of_their_block(order):
    """``-o data.root=/d -o data.name=rstpreid``: the name change drops the recipe's
    parameters of the old dataset, not the root given with it (the other order gave the
    same before); each key keeps the override that set it as its location."""
    tree = {"data": {"name": "synth-pedes", "size": "tiny", "root": "/synth"}, "train": {"lr": 1.0}}
    lines = ["data.root=/d", "data.name=rstpreid"] if order == "root first" else ["data.name=rstpreid", "data.root=/d"]
    locations = Locations(Location("r.yaml"), {("data",): Location("r.yaml", 1), ("data", "size"): Location("r.yaml", 2),
                                               ("data", "root"): Location("r.yaml", 3)})
    out = apply_overrides(tree, lines, locations)
    assert out == {"data": {"name": "rstpreid", "root": "/d"}, "train": {"lr": 1.0}}
    assert str(locations["data.root"]) == "override -o data.root=/d"
    assert str(locations["data.name"]) == "override -o data.name=rstpreid"
    assert ("data", "size") not in locations


def test_a_whole_block_override_keeps_earlier_keys_and_wins_over_them():
    tree = {"data": {"name": "synth-pedes", "size": "tiny"}}
    out = apply_overrides(tree, ["data.root=/a", "data.check_images=none", "data={name: rstpreid, root: /b}"])
    assert out == {"data": {"name": "rstpreid", "root": "/b", "check_images": "none"}}
    # an earlier key of the old component is kept too, and so blamed on its own override by validation
    out = apply_overrides(tree, ["data.size=small", "data.name=rstpreid"])
    assert out == {"data": {"name": "rstpreid", "size": "small"}}
    # keys of the file, and keys under another block, are not carried into the renamed block
    out = apply_overrides({"data": {"name": "a", "x": 1}, "encoder": {"name": "e"}},
                          ["encoder.y=2", "data.name=b", "data.name=c"])
    assert out == {"data": {"name": "c"}, "encoder": {"name": "e", "y": 2}}


@pytest.mark.parametrize(
    ("line", "expected"),
    [("train.lr", r"override -o train\.lr: expected dotted\.key=value"),
     ("=3", r"malformed key ''"),
     ("train..lr=3", r"malformed key 'train\.\.lr'"),
     ("train.lr=", r"empty value"),
     ("extends=x.yaml", r"'extends' cannot be overridden"),
     ("train.lr=[1", r"^override -o train\.lr=\[1: invalid YAML"),  # one line: no line number glued to it
     ("train.betas.2=0.5", r"train\.betas\.2: a list of 2 item\(s\) has no index '2'"),
     ("train.eps.0=0.5", r"train\.eps is not a list in the recipe, so it has no index 0 \(set the whole list"),
     ("train.momentum.1=0.5", r"train\.momentum is not a list in the recipe, so it has no index 1")],
)
def test_malformed_overrides(line, expected):
    with pytest.raises(RecipeError, match=expected) as info:
        apply_overrides({"train": {"betas": [0.9, 0.99], "eps": 1e-3}}, [line])
    assert "\n" not in str(info.value)


def test_parse_override_value_types():
    assert parse_override("a.b=[1, 2.5, x]") == (("a", "b"), [1, 2.5, "x"])
    assert parse_override("a = 1e3") == (("a",), 1000.0)
    assert parse_override("a=null") == (("a",), None)
    assert parse_override("a=k=v") == (("a",), "k=v")


# --------------------------------------------------------------------------- properties

keys = st.sampled_from(["name", "lr", "a", "b", "objectives", "x-y"])
scalars = st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), max_size=5), st.booleans())
values = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda inner: st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
trees = st.dictionaries(keys, values, max_size=4)
layers = st.dictionaries(keys, st.recursive(st.none() | scalars, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=8), max_size=4)


any_text = st.text(st.characters(categories=("L", "N", "P", "S", "Zs", "Cc")), max_size=8)
override_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=10,
)


def same(a, b):
    """Equal with the same types throughout (``1.0`` is not ``1``, ``True`` is not ``1``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@settings(max_examples=300, deadline=None)
@given(override_values)
@example(["?0"]).via("a flow item YAML reads as a mapping")
@example({"?0": 1}).via("a flow key YAML reads as another key")
@example(1.0).via("a float that must not come back as an int")
@example("\U0001F600 x\n").via("a character beyond U+FFFF, quoted")
@example(["2023-02-30", "._", "!!int a"]).via("strings whose plain form YAML cannot read")
def test_a_written_override_reads_back_as_its_value(value):
    """The ``-o`` text a study prints and runs (ablate's commands) reads back as the value it
    was written from: strings YAML would read as something else are quoted, whatever they hold."""
    from wsreid.recipe.yamlio import override_text

    path, read = parse_override(override_text("objectives.sdm_local", value))
    assert path == ("objectives", "sdm_local") and same(read, value)


def test_a_written_override_reads_as_a_recipe_writes_it():
    from wsreid.recipe.yamlio import override_text

    assert override_text("data.size", "tiny") == "data.size=tiny"
    assert override_text("local_associations.lrc", {"name": "true-identity"}) == "local_associations.lrc={name: true-identity}"
    assert override_text("train.lr", 1e-05) == "train.lr=1e-05"
    assert override_text("data.size", "null") == 'data.size="null"'
    assert override_text("output_dir", "runs/a b") == "output_dir=runs/a b"
    assert override_text("data.root", "a\u200bb\xa0") == 'data.root="a\\u200bb\\u00a0"'  # invisible: escaped
    assert override_text("data.root", "._") == 'data.root="._"'  # YAML cannot read it plain


@pytest.mark.parametrize("text", ["2023-02-30", "._", "!!int a"])
def test_a_value_yaml_cannot_convert_is_one_recipe_error(text):
    with pytest.raises(RecipeError) as info:
        parse_override(f"data.root={text}")
    assert str(info.value).startswith(f"override -o data.root={text}: invalid YAML: a value could not be read (")
    assert str(info.value).endswith(') (quote a value that is meant as a string, e.g. "2023-02-30")')


def leaves(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def read(tree, path):
    for part in path:
        tree = tree[part]
    return tree


@settings(max_examples=150, deadline=None)
@given(trees)
def test_merge_with_empty_is_identity(tree):
    assert merge(tree, {}) == tree
    assert merge({}, tree) == tree


def key_paths(tree, prefix=()):
    """Every key path of a nested mapping, inner keys included."""
    for key, value in tree.items():
        yield prefix + (key,)
        if isinstance(value, dict):
            yield from key_paths(value, prefix + (key,))


def replaced_whole(base, overlay, path):
    """Whether a component block on ``path`` (the root included) changes its name in
    ``overlay``, so that the whole block below it is replaced."""
    for i in range(len(path)):
        below, above = base, overlay
        try:
            for part in path[:i]:
                below, above = below[part], above[part]
        except (KeyError, TypeError):
            return False
        if (isinstance(below, dict) and isinstance(above, dict) and "name" in below and "name" in above
                and below["name"] != above["name"]):
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(trees, layers)
def test_upper_layer_wins(base, overlay):
    """Overlay leaves win and its nulls delete; every base leaf the overlay does not mention
    (no key on its path is in the overlay, and no component block above it is renamed) is
    kept with its value."""
    merged = merge(base, overlay)
    for path, value in leaves(overlay):
        if value is None:
            assert not _exists(merged, path)
        elif value != {}:
            assert read(merged, path) == value
    mentioned = set(key_paths(overlay))
    for path, value in leaves(base):
        if not any(path[:i] in mentioned for i in range(1, len(path) + 1)) and not replaced_whole(base, overlay, path):
            assert _exists(merged, path) and read(merged, path) == value, path


def reference_merge(base, overlay):
    """The module's merge rules written out: mappings merge key by key, a renamed component
    block and any non-mapping replace whole (their nulls dropped), null deletes."""
    def drop_nulls(value):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None} if isinstance(value, dict) else value

    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return drop_nulls(overlay)
    if "name" in base and "name" in overlay and base["name"] != overlay["name"]:
        return drop_nulls(overlay)
    out = dict(base)
    for key, value in overlay.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = reference_merge(out[key], value) if key in out else drop_nulls(value)
    return out


@settings(max_examples=150, deadline=None)
@given(trees, layers)
def test_merge_equals_the_reference_merge_and_leaves_its_inputs_unchanged(base, overlay):
    before = json.dumps([base, overlay], sort_keys=True)
    assert merge(base, overlay) == reference_merge(base, overlay)
    assert json.dumps([base, overlay], sort_keys=True) == before


def _exists(tree, path):
    try:
        read(tree, path)
        return True
    except (KeyError, TypeError):
        return False


@settings(max_examples=150, deadline=None)
@given(trees, st.lists(st.sampled_from(["lr", "a", "b"]), min_size=1, max_size=3), st.one_of(scalars, st.lists(scalars, max_size=3)))
def test_override_then_read_gives_the_value(tree, path, value):
    assume(not any(isinstance(read(tree, path[:i]), list) for i in range(1, len(path)) if _exists(tree, path[:i])))
    out = apply_overrides(tree, [f"{'.'.join(path)}={json.dumps(value, ensure_ascii=False)}"])
    assert read(out, path) == value


def test_extends_expands_the_home_folder(tmp_path, monkeypatch):
    """``~`` in extends is the home folder, as in data.root and init (it was looked for as
    a folder named '~' beside the recipe)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(tmp_path, "home/recipes/base.yaml", "train: {lr: 0.5, epochs: 2}\n")
    top = write(tmp_path, "work/top.yaml", "extends: ~/recipes/base.yaml\ntrain: {epochs: 4}\n")
    tree, locations = read_recipe_tree(top)
    assert tree == {"train": {"lr": 0.5, "epochs": 4}}
    assert locations["train.lr"] == Location(str(tmp_path / "home/recipes/base.yaml"), 1)
    monkeypatch.chdir(tmp_path / "work")
    assert read_recipe_tree({"extends": "~/recipes/base.yaml"})[0] == {"train": {"lr": 0.5, "epochs": 2}}
