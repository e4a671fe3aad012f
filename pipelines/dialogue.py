"""The dialogue pipeline as a Beam graph.

    match input globs -> read sessions and thread posts (JSONL, ShareGPT, LCCC JSON/TSV, KdConv, thread dumps)
      -> posts: ThreadsToSessions (root-to-leaf paths, a shuffle)
      -> per-session LCCC-style rules (erase platform tags, URLs, contact numbers, names; cut repeats; split
         sessions at noise that cannot be erased)                       cleaners/dialogue/rules.py
      -> ad replies, generic replies (shuffles across sessions)         pipelines/dialogue_stages.py
      -> a quality score per session, `min_score` filter                cleaners/dialogue/quality.py
      -> exact and MinHash dedup of sessions (the web-text dedup stages, on the joined turns)
      -> corpus/ JSONL.gz {"id", "turns", "lang", "source", "dataType": "dialogue", "meta", "scores"}, rejects/,
         stats.json
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cleaners.dialogue.records import Post, Session, to_dialogue_record
from cleaners.document import encodable
from cleaners.language import guess_zh_or_en
from pipelines import ledger, progress
from pipelines.inputs import MatchInputs

READ_STAGE = "read"
#: the session rules' stages, in order (cleaners/dialogue/rules.py)
RULES_STAGES = ("dialogue_erase", "dialogue_names", "dialogue_repeats", "dialogue_judge")
POSTS = "posts"
QUALITY_STAGE = "dialogue_quality"


class ReadDialogues(beam.DoFn):
    """One matched file -> Sessions (main), Posts (tagged), reader Skips as counted rejects."""

    def process(self, metadata: fileio.FileMetadata) -> Iterable[Any]:
        from pipelines.readers.dialogue import iter_dialogue_file

        path = encodable(metadata.path)      # the name records carry; the file opens by its real name
        try:
            stream = FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:
            progress.count(files_read=1, bytes_read=metadata.size_in_bytes, records_read=1)
            yield from _read_drop({"key": f"{path}#open", "source": path}, f"unreadable-file:{type(exc).__name__}")
            return
        with stream:
            try:
                for item in progress.track_file(iter_dialogue_file(stream, path), stream, metadata.size_in_bytes):
                    if isinstance(item, Session):
                        yield ledger.passed(READ_STAGE)
                        yield item
                    elif isinstance(item, Post):
                        yield ledger.passed(READ_STAGE)
                        yield pvalue.TaggedOutput(POSTS, item)
                    else:
                        yield from _read_drop({"key": item.key, "source": item.source}, item.reason)
            except Exception as exc:  # a reader bug costs one file, not the run
                progress.count(records_read=1)
                yield from _read_drop({"key": f"{path}#error", "source": path},
                                      f"damaged:reader-error:{type(exc).__name__}")

    def finish_bundle(self) -> None:
        progress.flush()


def _read_drop(row: dict[str, Any], reason: str):
    yield from ledger.dropped(row, READ_STAGE, reason)


def with_language(session: Session) -> Session:
    """A session without `lang` gets its majority script's ("zh" or "en"); the input element stays as it is."""
    if session.lang:
        return session
    return dataclasses.replace(session, lang=guess_zh_or_en("".join(session.turns)))


def session_to_record(session: Session) -> dict[str, Any]:
    """The output record plus the fields the dedup stages read (`content`, `_key`), removed before writing."""
    record = to_dialogue_record(session)
    record["content"] = "\n".join(session.turns)
    record["_key"] = session.key
    return record


def _drop_content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "content"}


def stage_order(config: dict[str, Any]) -> list[str]:
    from pipelines.dedup.stages import stage_names

    order = [READ_STAGE, "threads", *RULES_STAGES]
    order += [name for name in ("ad_replies", "generic_replies") if (config.get(name) or {}).get("enabled", True)]
    return order + [QUALITY_STAGE] + stage_names(config)


def build_dialogue_pipeline(pipeline: beam.Pipeline, inputs: list[str], output: str, config: dict[str, Any]) -> None:
    from cleaners.dialogue.quality import QualityStep
    from cleaners.dialogue.rules import SessionCleaner
    from cleaners.recipe import build_section_steps
    from pipelines.dedup.stages import apply_dedup
    from pipelines.steps import RunSteps
    from pipelines.dialogue_stages import AdReplies, GenericReplies, ThreadsToSessions
    from pipelines.sinks import write_outputs

    if (config.get("output") or {}).get("format", "jsonl") != "jsonl":
        raise ValueError("the dialogue pipeline writes JSONL.gz only (output.format: jsonl)")
    read = (pipeline
            | "Inputs" >> beam.Create(inputs)
            | "Match" >> MatchInputs()
            | "SpreadFiles" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadDialogues()).with_outputs(POSTS, ledger.REJECTS, ledger.COUNTS, main="sessions"))
    threads = read[POSTS] | "Threads" >> ThreadsToSessions(stage="threads", **(config.get("threads") or {}))
    sessions = ((read.sessions, threads.kept) | "AllSessions" >> beam.Flatten()
                | "SpreadSessions" >> beam.Reshuffle())
    rules = build_section_steps(SessionCleaner, config, "rules")
    cleaned = sessions | "Rules" >> beam.ParDo(RunSteps(rules, prepare=with_language, live_kept=False)).with_outputs(
        ledger.REJECTS, ledger.COUNTS, main="sessions")
    rejects = [read[ledger.REJECTS], threads.rejects, cleaned[ledger.REJECTS]]
    counts = [read[ledger.COUNTS], threads.counts, cleaned[ledger.COUNTS]]
    current = cleaned.sessions
    for name, transform in (("ad_replies", AdReplies), ("generic_replies", GenericReplies)):
        params = dict(config.get(name) or {})
        if not params.pop("enabled", True):
            continue
        out = current | name >> transform(stage=name, **params)
        current = out.kept
        rejects.append(out.rejects)
        counts.append(out.counts)
    quality = build_section_steps(QualityStep, config, "quality")
    scored = current | "Quality" >> beam.ParDo(RunSteps(quality)).with_outputs(
        ledger.REJECTS, ledger.COUNTS, main="sessions")
    rejects.append(scored[ledger.REJECTS])
    counts.append(scored[ledger.COUNTS])
    records = scored.sessions | "ToRecords" >> beam.Map(session_to_record)
    kept, dedup_rejects, dedup_counts = apply_dedup(records, config)
    kept = kept | "DropContent" >> beam.Map(_drop_content)
    write_outputs(kept, [*rejects, *dedup_rejects], [*counts, *dedup_counts], output, config, stage_order(config),
                  {"inputs": inputs, "output": output, "dataType": "dialogue"})
