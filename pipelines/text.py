"""The web-text pipeline as a Beam graph.

    match input globs -> read records from each file (WARC/ARC/WET/JSONL/Parquet/HTML)
      -> reshuffle (spread one big file's records over workers)
      -> run the whole recipe per record in one fused DoFn (extract, normalize, PII, language, filters)
      -> corpus/  (JSONL.gz or Parquet, WuDao schema)
      -> rejects/ (id, url, source, stage, reason)
      -> stats.json (per stage: in, out, dropped by reason; in = out + dropped everywhere)

The graph uses only portable transforms, picklable DoFns and Beam FileSystems paths, so the same code runs
on DirectRunner, Dataflow, Spark and Flink. What each step does lives in `cleaners/`; this module only
decides where it runs.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Iterable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from cleaners.document import RawPage
from cleaners.runner import RecipeRunner
from pipelines import ledger

LOG = logging.getLogger(__name__)
REJECTS = "rejects"
COUNTS = "counts"


class ReadRecords(beam.DoFn):
    """Open one matched file through Beam FileSystems and yield its records (RawPage or Skip), streaming."""

    def __init__(self, max_record_bytes: int):
        self.max_record_bytes = max_record_bytes

    def process(self, metadata: fileio.FileMetadata) -> Iterable[Any]:
        from pipelines.readers import Skip, iter_file

        path = metadata.path
        try:
            stream = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:  # permissions, vanished file, remote errors
            yield Skip(key=f"{path}#open", source=path, reason=f"unreadable-file:{type(exc).__name__}", detail=str(exc))
            return
        with stream:
            try:
                yield from iter_file(stream, path, max_record_bytes=self.max_record_bytes)
            except Exception as exc:  # a reader bug must cost one file, not the run
                LOG.exception("reader failed on %s", path)
                yield Skip(key=f"{path}#error", source=path, reason=f"damaged:reader-error:{type(exc).__name__}")


class RunRecipe(beam.DoFn):
    """The fused recipe: one input record in, one kept record or one reject out, plus its ledger counts."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.runner: RecipeRunner | None = None
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        self.runner = RecipeRunner(self.config)
        self.runner.setup()

    def teardown(self) -> None:
        if self.runner is not None:
            self.runner.teardown()

    def process(self, item: Any) -> Iterable[Any]:
        assert self.runner is not None
        if isinstance(item, RawPage):
            outcome = self.runner.process(item)
        else:  # a reader Skip
            outcome = self.runner.skip(item.key, item.source, item.reason, item.url)
        for name, n in outcome.counts.items():
            counter = self._counters.get(name)
            if counter is None:
                counter = self._counters[name] = Metrics.counter("wudao", name)
            counter.inc(n)
        yield pvalue.TaggedOutput(COUNTS, dict(outcome.counts))
        if outcome.reject is not None:
            yield pvalue.TaggedOutput(REJECTS, outcome.reject)
        if outcome.record is not None:
            yield outcome.record


def to_json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False)


def public_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Drop the pipeline's private fields (`_key`, ...) before a record is written."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def corpus_parquet_schema():
    import pyarrow as pa

    return pa.schema(
        [(name, pa.string()) for name in
         ("id", "uniqueKey", "titleUkey", "dataType", "title", "content", "url", "lang", "source", "date",
          "source_id")]
        + [("scores", pa.map_(pa.string(), pa.float64()))]
    )


def _parquet_row(record: dict[str, Any]) -> dict[str, Any]:
    row = dict(record)
    row["scores"] = list(record.get("scores", {}).items())
    return row


class WriteStats(beam.DoFn):
    """Write stats.json atomically (temporary name, then rename) once the ledger is complete."""

    def __init__(self, output: str, stage_order: list[str], extra: dict[str, Any]):
        self.output, self.stage_order, self.extra = output, stage_order, extra

    def process(self, counts: dict[str, int]) -> Iterable[dict[str, Any]]:
        stats = ledger.build_stats(counts, self.stage_order, self.extra)
        final = FileSystems.join(self.output, "stats.json")
        tmp = final + ".tmp"
        with FileSystems.create(tmp) as fh:
            fh.write(ledger.dumps(stats).encode("utf-8"))
        if FileSystems.exists(final):
            FileSystems.delete([final])
        FileSystems.rename([tmp], [final])
        yield stats


WRITE_STAGE = "write"


def _count_written(record: dict[str, Any]) -> dict[str, int]:
    return {f"{WRITE_STAGE}|in": 1, f"{WRITE_STAGE}|out": 1}


def write_outputs(kept: beam.PCollection, rejects: list, counts: list, output: str, config: dict[str, Any],
                  stage_order: list[str], extra: dict[str, Any]) -> None:
    """corpus/ (JSONL.gz or Parquet), rejects/ and stats.json for the kept records, rejects and ledger counts."""
    out_cfg = config.get("output") or {}
    fmt = out_cfg.get("format", "jsonl")
    if fmt not in ("jsonl", "parquet"):
        raise ValueError(f"output.format must be jsonl or parquet, got {fmt!r}")
    num_shards = int(out_cfg.get("num_shards", 0))
    corpus_prefix = FileSystems.join(output, "corpus", "part")
    kept = kept | "PublicFields" >> beam.Map(public_fields)
    if fmt == "jsonl":
        _ = (kept
             | "CorpusJson" >> beam.Map(to_json_line)
             | "WriteCorpus" >> beam.io.WriteToText(corpus_prefix, file_name_suffix=".jsonl.gz", num_shards=num_shards))
    else:
        _ = (kept
             | "CorpusRows" >> beam.Map(_parquet_row)
             | "WriteCorpus" >> beam.io.WriteToParquet(
                 corpus_prefix, corpus_parquet_schema(), file_name_suffix=".parquet", num_shards=num_shards))
    write_rejects_and_stats(kept, rejects, counts, output, stage_order, {**extra, "format": fmt}, num_shards)


def write_rejects_and_stats(kept: beam.PCollection, rejects: list, counts: list, output: str, stage_order: list[str],
                            extra: dict[str, Any], num_shards: int = 0) -> None:
    """rejects/ and stats.json; the `write` stage counts the kept records, whichever sink writes them."""
    _ = (tuple(rejects) | "AllRejects" >> beam.Flatten()
         | "RejectJson" >> beam.Map(to_json_line)
         | "WriteRejects" >> beam.io.WriteToText(
             FileSystems.join(output, REJECTS, "part"), file_name_suffix=".jsonl.gz", num_shards=num_shards))
    written = kept | "CountWritten" >> beam.Map(_count_written)
    _ = ((*counts, written) | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombineGlobally(ledger.SumCounts())
         | "WriteStats" >> beam.ParDo(WriteStats(output, [*stage_order, WRITE_STAGE], extra)))


def build_text_pipeline(pipeline: beam.Pipeline, inputs: list[str], output: str, config: dict[str, Any]) -> None:
    """Add the web-text graph to `pipeline`: read, the fused recipe, the dedup stages, then the outputs."""
    from pipelines.dedup.stages import apply_dedup, stage_names

    read_cfg = config.get("read") or {}
    stage_order = RecipeRunner(config).stages() + stage_names(config)  # validates the recipe before anything runs

    files = (
        pipeline
        | "Inputs" >> beam.Create(inputs)
        | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
        | "SpreadFiles" >> beam.Reshuffle()
    )
    records = (
        files
        | "Read" >> beam.ParDo(ReadRecords(int(read_cfg.get("max_record_bytes", 20_000_000))))
        | "SpreadRecords" >> beam.Reshuffle()
    )
    results = records | "Recipe" >> beam.ParDo(RunRecipe(config)).with_outputs(COUNTS, REJECTS, main="kept")
    kept, dedup_rejects, dedup_counts = apply_dedup(results.kept, config)
    write_outputs(kept, [results[REJECTS], *dedup_rejects], [results[COUNTS], *dedup_counts], output, config,
                  stage_order, {"inputs": inputs, "output": output})
