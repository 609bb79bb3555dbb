"""Recipes: YAML 1.2 files with ``extends`` and overrides, validated against the
components the registry holds. See docs/recipes.md (made by
:func:`recipe_reference_markdown`)."""

from wsreid.recipe.build import build_recipe_model, component_model, validate_recipe
from wsreid.recipe.loader import (
    LoadedRecipe,
    dump_resolved_yaml,
    load_recipe,
    read_recipe_tree,
    recipe_plugin_modules,
    resolve_relative_paths,
    resolved_recipe,
    validate_tree,
)
from wsreid.recipe.locations import Location, Locations
from wsreid.recipe.merge import apply_overrides, merge, parse_override
from wsreid.recipe.model import COMPONENT_SECTIONS, ComponentSpec, EvalConfig, RecipeBase, TrainConfig
from wsreid.recipe.reference import recipe_json_schema, recipe_reference_markdown
from wsreid.recipe.yamlio import parse_yaml_text, read_yaml_file

__all__ = [
    "COMPONENT_SECTIONS",
    "ComponentSpec",
    "EvalConfig",
    "LoadedRecipe",
    "Location",
    "Locations",
    "RecipeBase",
    "TrainConfig",
    "apply_overrides",
    "build_recipe_model",
    "component_model",
    "dump_resolved_yaml",
    "load_recipe",
    "merge",
    "parse_override",
    "parse_yaml_text",
    "read_recipe_tree",
    "read_yaml_file",
    "recipe_json_schema",
    "recipe_plugin_modules",
    "recipe_reference_markdown",
    "resolve_relative_paths",
    "resolved_recipe",
    "validate_recipe",
    "validate_tree",
]
