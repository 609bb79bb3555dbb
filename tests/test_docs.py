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


# --- references to a section of docs/ --------------------------------------------------------------

#: ``docs/NAME.md, "Section"`` (or ``docs/NAME.md "Section"``, ``section "..."``, a list:
#: ``docs/NAME.md ("One", "... two")``) in a docstring, comment, message, recipe comment or
#: document; and ``"Section" in docs/NAME.md`` (``part of``)
_QUOTED = r"[\"“][^\"”]+[\"”]"
_SECTION_REFERENCE = re.compile(rf"docs/([\w-]+\.md),? (?:sections? )?\(?({_QUOTED}(?:, {_QUOTED})*)"
                                rf"|({_QUOTED}) (?:part |section )?(?:in|of) docs/([\w-]+\.md)")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _texts_of(path: Path) -> list[str]:
    """The prose of a file, each piece on one line: a Python file's string constants (adjacent
    literals joined, as Python joins them) and its runs of comment lines; any other file whole,
    with the leading '#' of its comment lines dropped."""
    import io
    import tokenize

    raw = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return [_one_line(" ".join(line.strip().lstrip("#") for line in raw.splitlines()))]
    pieces = [node.value for node in ast.walk(ast.parse(raw))
              if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    comments: list[str] = []
    for token in tokenize.generate_tokens(io.StringIO(raw).readline):
        if token.type == tokenize.COMMENT:
            comments.append(token.string.lstrip("#:"))
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT) and comments:
            pieces.append(" ".join(comments))
            comments = []
    pieces.append(" ".join(comments))
    return [_one_line(piece) for piece in pieces]


def _section_names(document: Path) -> list[str]:
    """What a reference may name in ``document``: its headings, the bold lead of a paragraph
    (``**Criterion b on fresh seeds (...).**``) and the italic lead of a list item
    (``- *Triplet schedule:* ...``), each on one line, markup dropped."""
    lines = document.read_text(encoding="utf-8").splitlines()
    names = []
    for i, line in enumerate(lines):
        if heading := re.match(r"#{1,6} (.*)", line):
            names.append(_one_line(heading.group(1)))
        elif line.startswith("**"):
            paragraph = []
            for following in lines[i:]:
                if not following.strip():
                    break
                paragraph.append(following)
            names.append(_one_line(" ".join(paragraph))[2:].replace("**", ""))
        elif lead := re.match(r"\s*- \*([^*]+)\*", line):
            names.append(_one_line(lead.group(1)))
    return [name.replace("`", "") for name in names]


def stale_section_references(files: list[Path], docs: Path) -> list[str]:
    """``file: docs/NAME.md "Quote"`` for each reference whose document is missing or none of
    whose sections begins with the quoted words (case and code marks ignored)."""
    found, sections = [], {}
    for path in files:
        for text in _texts_of(path):
            for reference in _SECTION_REFERENCE.finditer(text):
                name = reference.group(1) or reference.group(4)
                if name not in sections:
                    sections[name] = [s.lower() for s in _section_names(docs / name)] if (docs / name).is_file() else []
                for quoted in re.findall(r"[\"“]([^\"”]+)[\"”]", reference.group(2) or reference.group(3)):
                    quote = _one_line(quoted).replace("`", "").lower()
                    if quote.startswith("... "):  # "... ablations": the list's common start left out
                        named = any(quote[4:] in section for section in sections[name])
                    else:
                        named = any(section.startswith(quote) for section in sections[name])
                    if not named:
                        found.append(f"{path.name}: docs/{name} \"{quoted}\"")
    return found


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation other than '-' and '_'
    dropped, spaces made '-'."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")


def stale_anchor_links(files: list[Path], docs: Path) -> list[str]:
    """``file: docs/NAME.md#anchor`` for each link whose document has no heading with that anchor."""
    found = []
    for path in files:
        for name, anchor in re.findall(r"docs/([\w-]+\.md)#([\w-]+)", path.read_text(encoding="utf-8")):
            text = (docs / name).read_text(encoding="utf-8") if (docs / name).is_file() else ""
            if anchor not in {_github_anchor(h) for h in re.findall(r"^#{1,6} (.*)$", text, flags=re.M)}:
                found.append(f"{path.name}: docs/{name}#{anchor}")
    return found


def _tracked_prose_files() -> list[Path]:
    """The repository's Python, YAML, Markdown and TOML files (the committed runs under
    results/*/ left out: written by the tools, not by hand)."""
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False).stdout.split()
    if not listed:  # not a git checkout (an unpacked source archive)
        listed = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() and ".git" not in p.parts]
    return [REPO / name for name in listed if name.endswith((".py", ".yaml", ".md", ".toml"))
            and not (name.startswith("results/") and name.count("/") > 1) and (REPO / name).is_file()]


def test_every_reference_to_a_section_of_docs_names_one():
    files = [path for path in _tracked_prose_files() if path != Path(__file__).resolve()]  # this file's examples
    assert len(files) > 200 and REPO / "README.md" in files and REPO / "recipes" / "dgia.yaml" in files
    assert stale_section_references(files, REPO / "docs") == []
    assert stale_anchor_links(files, REPO / "docs") == []
    assert "docs/method.md#paper-text-and-the-authors-code" in (REPO / "README.md").read_text()  # one is checked


def test_a_stale_section_reference_is_found(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\n## Launching\n\ntext\n\n**Why not bit for bit.** Because.\n\n"
                                   "- *Triplet schedule:* after epoch 20\n", encoding="utf-8")
    module = tmp_path / "mod.py"
    module.write_text('"""See (docs/guide.md, "Launching") and docs/guide.md "Why not\n'
                      'bit for bit"."""\n'
                      '# a comment that goes on (docs/guide.md,\n# "Triplet schedule"; docs/guide.md, "Gone")\n'
                      'MESSAGE = ("(docs/guide.md, \\"Why "\n           "not bit\\")")\n'
                      'OTHER = "docs/missing.md, \\"Launching\\""\n', encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# thresholds (docs/guide.md, \"Launch\n# ing\")\nkey: 1  # docs/guide.md \"guide\"\n"
                      "# (\"Why not bit for\n# bit\" in docs/guide.md; the \"Profile\" part of docs/guide.md)\n"
                      "# docs/guide.md (\"Launching\", \"... bit for bit\", \"... gone\"); docs/guide.md, \"Guide\", \"Old\"\n",
                      encoding="utf-8")
    (tmp_path / "links.md").write_text("[a](docs/guide.md#launching), [b](docs/guide.md#why-not-bit-for-bit), "
                                       "[c](docs/guide.md#guide)\n", encoding="utf-8")
    assert stale_anchor_links([tmp_path / "links.md"], docs) == ["links.md: docs/guide.md#why-not-bit-for-bit"]
    assert sorted(stale_section_references([module, recipe], docs)) == [
        'mod.py: docs/guide.md "Gone"', 'mod.py: docs/missing.md "Launching"', 'r.yaml: docs/guide.md "... gone"',
        'r.yaml: docs/guide.md "Launch ing"', 'r.yaml: docs/guide.md "Old"', 'r.yaml: docs/guide.md "Profile"']
