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

Every kind of corpus has its bundled default (`cleaners/data/`: `default_recipe.yaml` for web text,
`dialogue_recipe.yaml`, `image_text_recipe.yaml`), and one merge rule puts a user's file over it: mappings merge key
by key, at every depth; anything else (a list such as `steps`, a number, a string) replaces the default's value.
So `dedup: {minhash: {threshold: 0.7}}` changes one threshold and keeps everything else, and a user who gives
`steps` gives the whole list. A top-level section the default does not have is an error (a typo must not be
silently ignored).
"""
from __future__ import annotations

import copy
import inspect
from importlib import resources
from typing import Any

import yaml

from cleaners.step import STEPS, Step

DEFAULTS = {"text": "default_recipe.yaml", "dialogue": "dialogue_recipe.yaml", "image_text": "image_text_recipe.yaml"}


def load_default(kind: str = "text") -> dict[str, Any]:
    if kind not in DEFAULTS:
        raise ValueError(f"unknown recipe kind {kind!r}; known: {', '.join(DEFAULTS)}")
    return yaml.safe_load(resources.files("cleaners").joinpath("data", DEFAULTS[kind]).read_text("utf-8"))


def merge(base: Any, override: Any) -> Any:
    """`override` over `base`: mappings merge key by key at every depth; any other value replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base.get(key), value)
        return merged
    return copy.deepcopy(override)


def load_recipe(path: str | None = None, text: str | None = None, kind: str = "text") -> dict[str, Any]:
    """The default recipe of `kind` with a user's YAML (file at `path`, or a YAML string) merged over it."""
    config = load_default(kind)
    user = None
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            user = yaml.safe_load(fh)
    elif text is not None:
        user = yaml.safe_load(text)
    if not user:
        return config
    if not isinstance(user, dict):
        raise ValueError("a recipe must be a YAML mapping")
    unknown = sorted(set(user) - set(config))
    if unknown:
        raise ValueError(f"unknown recipe section(s) {unknown}; known: {', '.join(config)}")
    return merge(config, user)


def _import_step_modules() -> None:
    """Importing the modules registers their steps."""
    import cleaners.domain  # noqa: F401
    import cleaners.filters  # noqa: F401
    import cleaners.image.checks  # noqa: F401
    import cleaners.image.scoring  # noqa: F401
    import cleaners.language  # noqa: F401
    import cleaners.normalize  # noqa: F401
    import cleaners.pii  # noqa: F401
    import cleaners.quality  # noqa: F401


def build_step(name: str, params: dict[str, Any] | None, kind: str = "text") -> Step:
    """One configured step of a recipe of `kind`: the one way every pipeline builds its steps.

    `as` names the stage; `languages` limits the step to records of those languages, unless the step takes a
    `languages` parameter of its own (the caption step: the caption languages it keeps). Unknown names and bad
    parameters raise a clear ValueError."""
    _import_step_modules()
    cls = STEPS.get(name)
    if cls is None or cls.kind != kind:
        known = sorted(n for n, c in STEPS.items() if c.kind == kind)
        raise ValueError(f"unknown {kind} step {name!r}; known: {', '.join(known)}")
    params = dict(params or {})
    stage_name = params.pop("as", None)
    languages = None if "languages" in inspect.signature(cls).parameters else params.pop("languages", None)
    try:
        step = cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for step {name!r}: {exc}") from exc
    if languages is not None:
        step.languages = tuple(languages)
    step.stage_name = str(stage_name) if stage_name else name
    return step


def build_section_steps(settings_class: Any, config: dict[str, Any], section: str) -> list[Step]:
    """The steps of a recipe section that configures several steps at once (image-text `caption:` ->
    `CaptionChecks`, dialogue `rules:` -> `SessionCleaner`): the settings are checked here, on the launcher, so a
    typo fails before any work."""
    try:
        settings = settings_class(**dict(config.get(section) or {}))
    except TypeError as exc:
        raise ValueError(f"bad settings in recipe section {section!r}: {exc}") from exc
    return settings.steps()


def build_steps(config: dict[str, Any]) -> list[Step]:
    """The web-text recipe's `steps` list: each entry a name or a one-key mapping `{name: {params}}`."""
    steps: list[Step] = []
    for entry in config.get("steps") or []:
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, params), = entry.items()
        else:
            raise ValueError(f"recipe step must be a name or a one-key mapping, got {entry!r}")
        step = build_step(name, params)
        if name == "language":
            step.keep = tuple(config.get("languages") or ())  # type: ignore[attr-defined]
        steps.append(step)
    return steps
