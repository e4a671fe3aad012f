"""The web-text pipeline as a Beam graph.

    match input globs -> split files (one split per `read.split_bytes`) -> reshuffle the splits over workers
      -> read each split's records (WARC/ARC/WET/JSONL/Parquet/HTML), fused with:
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
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from cleaners.document import RawPage, encodable
from cleaners.runner import RecipeRunner
from pipelines import ledger, progress
from pipelines.inputs import MatchInputs

LOG = logging.getLogger(__name__)
REJECTS = "rejects"
COUNTS = "counts"


@dataclass(frozen=True)
class FileSplit:
    """Every `splits`-th record of one file, starting at record number `split`."""

    path: str
    size: int
    split: int = 0
    splits: int = 1


def split_file(metadata: fileio.FileMetadata, split_bytes: int) -> Iterable[FileSplit]:
    """One split per `split_bytes` of the file (at least one; `split_bytes` 0 keeps files whole).

    Splits let one big file's records be read and cleaned by several workers without shuffling its raw HTML
    (which the local runner would hold in memory): each split streams the whole file but parses and keeps only
    its own records; scanning past the others costs about 2 s per 50 MB of gzip WARC here."""
    size = metadata.size_in_bytes
    splits = max(1, -(-size // split_bytes)) if split_bytes > 0 else 1
    for split in range(splits):
        yield FileSplit(metadata.path, size, split, splits)


def _every_nth(items: Iterable[Any], split: int, splits: int, numbered: list[int]) -> Iterable[Any]:
    """The items numbered `split` modulo `splits` (from 0); `numbered[0]` counts the items seen so far."""
    for item in items:
        numbered[0] += 1
        if (numbered[0] - 1) % splits == split:
            yield item


class ReadRecords(beam.DoFn):
    """Open one file split through Beam FileSystems and yield its records (RawPage or Skip), streaming.

    Records (and reader skips) are numbered in file order; a split yields those whose number is `split` modulo
    `splits`, so the splits of a file together yield each record exactly once."""

    def __init__(self, max_record_bytes: int):
        self.max_record_bytes = max_record_bytes

    def process(self, element: FileSplit | fileio.FileMetadata) -> Iterable[Any]:
        from pipelines.readers import Skip, iter_file

        if not isinstance(element, FileSplit):
            element = FileSplit(element.path, element.size_in_bytes)
        path, split, splits = encodable(element.path), element.split, element.splits   # path: for records
        try:
            stream = FileSystems.open(element.path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:  # permissions, vanished file, remote errors
            if split == 0:
                progress.count(files_read=1, bytes_read=element.size, records_read=1)
                yield Skip(key=f"{path}#open", source=path, reason=f"unreadable-file:{type(exc).__name__}",
                           detail=str(exc))
            return
        numbered = [0]  # records numbered so far, shared with _every_nth
        with stream:
            try:
                mine = _every_nth(iter_file(stream, path, max_record_bytes=self.max_record_bytes), split, splits,
                                  numbered)
                yield from progress.track_file(mine, stream, element.size, split, splits)
            except Exception as exc:  # a reader bug must cost one file, not the run
                if numbered[0] % splits == split:  # the failure takes the next number: one split reports it
                    LOG.exception("reader failed on %s", path)
                    progress.count(records_read=1)
                    yield Skip(key=f"{path}#error", source=path, reason=f"damaged:reader-error:{type(exc).__name__}")

    def finish_bundle(self) -> None:
        progress.flush()


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
        progress.flush()
        if self.runner is not None:
            self.runner.teardown()

    def finish_bundle(self) -> None:
        progress.flush()

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
        progress.count(kept=int(outcome.record is not None), dropped=int(outcome.reject is not None))
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
    """Write stats.json atomically (temporary name, then rename) once the ledger is complete.

    stats.json is the run's completion marker: `finished` are the sinks' results (their final file names) as side
    inputs, so this runs only after every output file has its final name, and a run killed earlier leaves none."""

    def __init__(self, output: str, stage_order: list[str], extra: dict[str, Any]):
        self.output, self.stage_order, self.extra = output, stage_order, extra

    def process(self, counts: dict[str, int], *finished: Any) -> Iterable[dict[str, Any]]:
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
    """The `write` stage's ledger counts for one kept record, with the "after" histograms (`cleaners.histogram`):
    `chars` of its text (`content`, `text`, dialogue `turns` joined by newlines, or an image's `caption`), `lang`,
    and `score:<name>` for each entry of its `scores`."""
    from cleaners import histogram as h

    text = next((record[f] for f in ("content", "text", "caption") if isinstance(record.get(f), str)), None)
    if text is None and isinstance(record.get("turns"), list):
        text = "\n".join(str(turn) for turn in record["turns"])
    counts = {f"{WRITE_STAGE}|in": 1, f"{WRITE_STAGE}|out": 1,
              h.hist_key(WRITE_STAGE, "chars", h.chars_bucket(len(text or ""))): 1,
              h.hist_key(WRITE_STAGE, "lang", h.category_bucket(record.get("lang"))): 1}
    scores = record.get("scores")
    for name, value in (scores.items() if isinstance(scores, dict) else ()):
        bucket = h.score_bucket(value)
        if bucket is not None:
            counts[h.hist_key(WRITE_STAGE, "score:" + h.category_bucket(name), bucket)] = 1
    return counts


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
        corpus_done = (kept
                       | "CorpusJson" >> beam.Map(to_json_line)
                       | "WriteCorpus" >> beam.io.WriteToText(corpus_prefix, file_name_suffix=".jsonl.gz",
                                                              num_shards=num_shards))
    else:
        corpus_done = (kept
                       | "CorpusRows" >> beam.Map(_parquet_row)
                       | "WriteCorpus" >> beam.io.WriteToParquet(
                           corpus_prefix, corpus_parquet_schema(), file_name_suffix=".parquet", num_shards=num_shards))
    write_rejects_and_stats(kept, rejects, counts, output, stage_order, {**extra, "format": fmt}, num_shards,
                            finished=[corpus_done])


def write_rejects_and_stats(kept: beam.PCollection, rejects: list, counts: list, output: str, stage_order: list[str],
                            extra: dict[str, Any], num_shards: int = 0, finished: list | None = None) -> None:
    """rejects/ and stats.json; the `write` stage counts the kept records, whichever sink writes them.

    `finished`: the results of the sinks that write the kept records; stats.json waits for them and for rejects/."""
    rejects_done = (tuple(rejects) | "AllRejects" >> beam.Flatten()
                    | "RejectJson" >> beam.Map(to_json_line)
                    | "WriteRejects" >> beam.io.WriteToText(
                        FileSystems.join(output, REJECTS, "part"), file_name_suffix=".jsonl.gz", num_shards=num_shards))
    written = kept | "CountWritten" >> beam.Map(_count_written)
    summed = [pcoll | f"SumBundle{i}" >> beam.ParDo(ledger.SumPerBundle())
              for i, pcoll in enumerate([*counts, written])]
    _ = (summed | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombineGlobally(ledger.SumCounts())
         | "WriteStats" >> beam.ParDo(WriteStats(output, [*stage_order, WRITE_STAGE], extra),
                                      *[beam.pvalue.AsList(done) for done in [*(finished or []), rejects_done]]))


def build_text_pipeline(pipeline: beam.Pipeline, inputs: list[str], output: str, config: dict[str, Any]) -> None:
    """Add the web-text graph to `pipeline`: read, the fused recipe, the dedup stages, then the outputs."""
    from pipelines.dedup.stages import apply_dedup, stage_names

    read_cfg = config.get("read") or {}
    stage_order = RecipeRunner(config).stages() + stage_names(config)  # validates the recipe before anything runs

    files = (
        pipeline
        | "Inputs" >> beam.Create(inputs)
        | "Match" >> MatchInputs()
    )
    split_bytes = int(read_cfg.get("split_bytes", 32_000_000))
    records = (
        files
        | "SplitFiles" >> beam.FlatMap(split_file, split_bytes)
        | "SpreadSplits" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadRecords(int(read_cfg.get("max_record_bytes", 20_000_000))))
    )
    results = records | "Recipe" >> beam.ParDo(RunRecipe(config)).with_outputs(COUNTS, REJECTS, main="kept")
    kept, dedup_rejects, dedup_counts = apply_dedup(results.kept, config)
    write_outputs(kept, [results[REJECTS], *dedup_rejects], [results[COUNTS], *dedup_counts], output, config,
                  stage_order, {"inputs": inputs, "output": output})
