"""Recipes: an ordered list of configured steps, read from YAML with defaults in code.

A recipe file looks like::

    languages: [zh, en]          # documents of other languages are dropped by the language step
    extract: {timeout_s: 10, max_html_bytes: 5000000}
    steps:
      - normalize: {t2s: true}
      - pii: {}
      - language: {min_score: 0.5}
      - wudao_zh: {min_doc_chinese_chars: 50}
      - gopher_quality: {languages: [en]}
      - gopher_repetition: {as: zh_repetition, languages: [zh], top_ngram_char_frac: null}

Two keys work on any step: `languages` (the step only sees documents of these languages; others pass
untouched) and `as` (the stage name in stats.json and rejects/, so one step can appear twice).

A user's file is merged over the bundled default (`cleaners/data/default_recipe.yaml`): top-level keys
replace the default's, so a user who gives `steps` gives the whole list.
"""
from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import yaml

from cleaners.step import STEPS, Step


def load_default() -> dict[str, Any]:
    text = resources.files("cleaners").joinpath("data/default_recipe.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def load_recipe(path: str | None = None, text: str | None = None) -> dict[str, Any]:
    """The default recipe with a user's YAML (file at `path`, or a YAML string) merged over it."""
    config = load_default()
    user = None
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            user = yaml.safe_load(fh)
    elif text is not None:
        user = yaml.safe_load(text)
    if user:
        if not isinstance(user, dict):
            raise ValueError("a recipe must be a YAML mapping")
        config.update(copy.deepcopy(user))
    return config


def _import_step_modules() -> None:
    """Importing the modules registers their steps."""
    import cleaners.filters  # noqa: F401
    import cleaners.language  # noqa: F401
    import cleaners.normalize  # noqa: F401
    import cleaners.pii  # noqa: F401
    import cleaners.quality  # noqa: F401


def build_steps(config: dict[str, Any]) -> list[Step]:
    """Instantiate the recipe's `steps` list. Unknown names and bad parameters raise a clear ValueError."""
    _import_step_modules()
    steps: list[Step] = []
    for entry in config.get("steps") or []:
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, params), = entry.items()
            params = dict(params or {})
        else:
            raise ValueError(f"recipe step must be a name or a one-key mapping, got {entry!r}")
        if name not in STEPS:
            raise ValueError(f"unknown step {name!r}; known: {', '.join(sorted(STEPS))}")
        languages = params.pop("languages", None)
        stage_name = params.pop("as", None)
        try:
            step = STEPS[name](**params)
        except TypeError as exc:
            raise ValueError(f"bad parameters for step {name!r}: {exc}") from exc
        if languages is not None:
            step.languages = tuple(languages)
        step.stage_name = str(stage_name) if stage_name else name
        if name == "language":
            step.keep = tuple(config.get("languages") or ())  # type: ignore[attr-defined]
        steps.append(step)
    return steps
