"""Reference documents: every hook specification is documented and called as specified;
docs/hooks.md and docs/recipes.md are generated (``python -m wsreid.docs``) and current."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from wsreid import hookspecs
from wsreid import api
from wsreid.docs import (
    GENERATED,
    api_classes,
    api_doc_problems,
    api_methods,
    components_reference_markdown,
    hook_doc_problems,
    hook_specifications,
    hooks_reference_markdown,
    main,
    parse_hook_doc,
    recipes_reference_markdown,
)
from wsreid.recipe.model import EvalConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "wsreid"
SPECS = hook_specifications()


def test_hook_specifications_are_found_in_source_order():
    assert list(SPECS) == [
        "wsreid_register", "wsreid_run_start", "wsreid_epoch_start", "wsreid_after_step",
        "wsreid_epoch_end", "wsreid_after_evaluation", "wsreid_run_end",
    ]  # fmt: skip
    assert all(getattr(hookspecs, name) is func for name, func in SPECS.items())


@pytest.mark.parametrize("name", list(SPECS))
def test_every_hook_is_documented(name):
    assert hook_doc_problems(SPECS[name]) == []


def test_an_undocumented_or_misdocumented_hook_is_reported():
    def wsreid_bare(run, epoch):
        pass

    def wsreid_stale(run, epoch):
        """Something happened.

        Called:
            sometimes.

        Arguments:
            run: the run.
            step: no longer an argument.

        Returns:
            nothing.
        """

    assert hook_doc_problems(wsreid_bare) == ["wsreid_bare: no docstring"]
    assert hook_doc_problems(wsreid_stale) == [
        "wsreid_stale: argument 'epoch' is not documented",
        "wsreid_stale: documents 'step', which is not an argument",
    ]


def test_hook_docstring_parts():
    parsed = parse_hook_doc(hookspecs.wsreid_after_step.__doc__)
    assert parsed.summary == "An optimizer step finished."
    assert list(parsed.sections) == ["Called", "Arguments", "Returns"]
    assert list(parsed.arguments) == ["run", "epoch", "step", "losses"]
    assert parsed.arguments["step"].startswith("optimizer steps done so far over the whole run, counting from 1")


def _hook_calls() -> dict[str, list[tuple[str, set[str]]]]:
    """hook name -> (file:line, keyword names) of every ``<...>.wsreid_<hook>(...)`` call
    in the wsreid package."""
    calls: dict[str, list[tuple[str, set[str]]]] = {}
    for path in SOURCES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr.startswith("wsreid_"):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                calls.setdefault(node.func.attr, []).append((where, {k.arg for k in node.keywords}))
    return calls


def test_the_engine_calls_every_lifecycle_hook_with_its_documented_arguments():
    calls = _hook_calls()
    lifecycle = {name: func for name, func in SPECS.items() if name != "wsreid_register"}
    assert set(calls) == set(lifecycle), "hooks called in wsreid/ and hook specifications differ"
    for name, sites in calls.items():
        params = set(inspect.signature(lifecycle[name]).parameters)
        for where, keywords in sites:
            assert keywords == params, f"{where}: {name} called with {sorted(keywords)}, specified {sorted(params)}"


def test_hooks_md_has_one_section_per_hook():
    text = (REPO / "docs" / "hooks.md").read_text(encoding="utf-8")
    documented = re.findall(r"^## (\S+)$", text, flags=re.M)
    assert documented == list(SPECS), "docs/hooks.md sections and hook specifications differ"
    markdown = hooks_reference_markdown()
    assert "- `losses`: `\"loss/<objective label>\"`" in markdown and ":class:" not in markdown


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_docs_are_current(name):
    committed = (REPO / "docs" / name).read_text(encoding="utf-8")
    assert committed == GENERATED[name](), f"docs/{name} is out of date: run `python -m wsreid.docs`"


def test_recipes_md_documents_every_key_and_shipped_component():
    text = recipes_reference_markdown()
    for model in (TrainConfig, EvalConfig):
        for key in model.model_fields:
            assert re.search(rf"^\| `{key}` \|", text, flags=re.M), key
    for heading in ("### local_association `lrc`", "### global_association `gsrc-fr`", "### objective `sdm`",
                    "### encoder `clip`", "### dataset `synth-pedes`", "### pair_construction `iasc`"):
        assert heading in text
    assert "| `threshold_image` | float (>= -1.0, <= 1.0) | `0.7` |" in text
    assert "`knn`" not in text  # only the shipped plugins, whatever else is installed


def test_docs_command_writes_then_checks(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GENERATED)
    assert main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "hooks.md").write_text("stale\n")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert str(tmp_path / "hooks.md") in capsys.readouterr().err


def test_component_api_is_documented():
    assert api_doc_problems() == []


def test_an_undocumented_component_method_is_reported(monkeypatch):
    def relate(self, features, batch, ctx):
        """Relate.

        Called:
            every step.

        Arguments:
            features: the features.
            batch: the batch.

        Returns:
            a relation.
        """

    monkeypatch.setattr(api.LocalAssociation, "relate", relate)
    monkeypatch.setattr(api.GlobalAssociation, "after_step", lambda self, features, batch, ctx: None)
    monkeypatch.setattr(api.StepContext, "__doc__", "State.\n\nFields:\n    epoch: the epoch.\n    step: the step.\n")
    assert api_doc_problems() == [
        "LocalAssociation.relate: argument 'ctx' is not documented",
        "GlobalAssociation.after_step: no docstring",
        "StepContext: field 'num_epochs' is not documented",
        "StepContext: field 'dist' is not documented",
    ]


def test_components_md_has_every_class_and_method():
    text = components_reference_markdown()
    assert re.findall(r"^### (\S+)$", text, flags=re.M) == list(api_classes())
    methods = [f"{name}.{m}" for name, cls in api_classes().items() for m in api_methods(cls)]
    assert re.findall(r"^#### `(\S+)`$", text, flags=re.M) == methods
    for needle in ("#### `Objective.loss`", "or None to skip this step", "`weight`", "`start_epoch`",
                   "GLOBAL batch", "load_state_tensors({})", "relates exactly as the original",
                   "| `num_train` | `int \\| None` |", "Only two parameter names are cross-checked"):
        assert needle in text, needle


def _markdown_sections(text: str) -> dict[str, str]:
    """Heading text (backticks removed) -> the text up to the next heading of any level."""
    parts = re.split(r"^(#{1,6} .*)$", text, flags=re.M)
    return {re.sub(r"^#+ ", "", heading).replace("`", ""): body for heading, body in zip(parts[1::2], parts[2::2])}


def test_recipes_md_gives_every_nested_model_a_section():
    from wsreid.docs import shipped_registry
    from wsreid.recipe.build import build_recipe_model
    from wsreid.recipe.model import InitConfig

    text = recipes_reference_markdown()
    sections = _markdown_sections(text)
    headings = [m.group(1).replace("`", "") for m in re.finditer(r"^#{1,6} (.*)$", text, flags=re.M)]
    rows = [(m.start(), m.group(0)) for m in re.finditer(r"^\| `[^`]+` \|.*$", text, flags=re.M)]
    assert rows
    for position, row in rows:
        key, kind, default, description = re.split(r"(?<!\\)\|", row.strip())[1:5]
        # a model named in the type column, or by '(see X)' in the description, has a heading
        named = set(re.findall(r"\b[A-Z][A-Za-z0-9_]*\b", kind))
        named |= {a or b for a, b in re.findall(r"\(see (?:`([^`]+)`|([A-Z]\w*))\)", kind + description)}
        for name in named:
            assert name in headings, f"{row}: {name} has no section"
        # '(see below)' points to a section further down: the key's or its type's
        if "(see below)" in default:
            targets = {key.strip().strip("`")} | set(re.findall(r"\b[A-Z][A-Za-z0-9_]*\b", kind))
            below = [m.group(1).replace("`", "") for m in re.finditer(r"^#{1,6} (.*)$", text[position:], flags=re.M)]
            assert targets & set(below), f"{row}: '(see below)' but no section below for {sorted(targets)}"
    clip = build_recipe_model(shipped_registry()).component_models["encoder"]["clip"]
    nested = {"InitConfig": InitConfig, "VisionParams": clip.model_fields["vision"].annotation,
              "TextParams": clip.model_fields["text"].annotation}
    assert set(nested["VisionParams"].model_fields) >= {"hidden", "layers", "heads", "patch_size"}
    assert set(nested["TextParams"].model_fields) >= {"hidden", "layers", "heads"}
    for name, model in nested.items():
        assert name in sections, name
        for key, field in model.model_fields.items():
            assert re.search(rf"^\| `{key}` \| [^|]+.* \| .+ \| {re.escape(field.description)} \|$", sections[name],
                             flags=re.M), f"{name}.{key}"
    assert "| `hidden` | int (>= 1) | `768` | width of the vision Transformer |" in sections["VisionParams"]
    assert '| `checkpoint` | "last" \\| "best" | `"last"` |' in sections["InitConfig"]
