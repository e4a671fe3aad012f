"""The dedup stages a recipe turns on, chained in order: exact, URL, line/paragraph, MinHash-LSH.

Recipe section (every stage on by default; see cleaners/data/default_recipe.yaml):

    dedup:
      exact: {enabled: true}
      url: {enabled: true}
      lines: {enabled: true, min_docs: 10, min_line_chars: 0, recheck: [wudao_zh, gopher_quality]}
      minhash: {enabled: true, threshold: 0.8, num_perm: 128, bands: null, rows: null, ...}
"""
from __future__ import annotations

from typing import Any

import apache_beam as beam

STAGE_NAMES = {"exact": "exact_dedup", "url": "url_dedup", "lines": "line_dedup", "minhash": "minhash_dedup"}


def enabled_stages(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, params) for each enabled stage in pipeline order; unknown kinds or keys are a ValueError."""
    section = config.get("dedup") or {}
    unknown = set(section) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"unknown dedup stage(s) {sorted(unknown)}; known: {', '.join(STAGE_NAMES)}")
    stages = []
    for kind in STAGE_NAMES:
        params = dict(section.get(kind) or {})
        if params.pop("enabled", True):
            stages.append((kind, params))
    return stages


def stage_names(config: dict[str, Any]) -> list[str]:
    return [STAGE_NAMES[kind] for kind, _ in enabled_stages(config)]


def recheck_entries(recheck: Any, config: dict[str, Any]) -> Any:
    """Line dedup's `recheck` as recipe step entries: a stage name of the recipe's own `steps` (its `as:` name, else
    its step name) means that step as configured, parameters, `languages:` and `as:` included; any other name or
    mapping is built as written (a name alone: the step's defaults)."""
    if not isinstance(recheck, list):
        return recheck                               # LineDedup reports the type error
    configured: dict[str, Any] = {}
    for entry in config.get("steps") or []:
        if isinstance(entry, str):
            configured.setdefault(entry, entry)
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, params), = entry.items()
            stage = (params or {}).get("as") if isinstance(params, dict) else None
            configured.setdefault(str(stage or name), entry)
    return [configured.get(entry, entry) if isinstance(entry, str) else entry for entry in recheck]


def _transform(kind: str, params: dict[str, Any], config: dict[str, Any]) -> beam.PTransform:
    stage = STAGE_NAMES[kind]
    try:
        if kind == "exact":
            from pipelines.dedup.keep_one import ExactDedup
            return ExactDedup(stage, **params)
        if kind == "url":
            from pipelines.dedup.keep_one import UrlDedup
            return UrlDedup(stage, **params)
        if kind == "lines":
            from pipelines.dedup.lines import LineDedup
            recheck = params.pop("recheck", None)
            return LineDedup(stage=stage, recheck_steps=recheck_entries(recheck, config), **params)
        from pipelines.dedup.fuzzy import MinHashDedup
        return MinHashDedup(stage=stage, **params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for dedup stage {kind!r}: {exc}") from exc


def apply_dedup(records: beam.PCollection, config: dict[str, Any]):
    """Run the enabled stages on `records`; returns (kept, [rejects...], [counts...])."""
    rejects, counts = [], []
    for kind, params in enabled_stages(config):
        out = records | STAGE_NAMES[kind] >> _transform(kind, params, config)
        records = out.kept
        rejects.append(out.rejects)
        counts.append(out.counts)
    return records, rejects, counts
