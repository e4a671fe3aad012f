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

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cleaners.document import RawPage, encodable
from cleaners.runner import RecipeRunner
from pipelines import ledger, progress
from pipelines.inputs import MatchInputs
from pipelines.steps import RunSteps

LOG = logging.getLogger(__name__)


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


class RunRecipe(RunSteps):
    """The fused web recipe (`RecipeRunner`: read, extract, the steps): one input record in, one kept record or
    one reject out, plus its ledger counts; a reader Skip is a `read` drop."""

    def __init__(self, config: dict[str, Any]):
        super().__init__([])
        self.config = config

    def setup(self) -> None:
        self.runner = RecipeRunner(self.config)
        self.runner.setup()

    def process(self, item: Any) -> Iterable[Any]:
        assert self.runner is not None
        if isinstance(item, RawPage):
            yield from ledger.outcome(self.runner.process(item))
        else:  # a reader Skip
            yield from ledger.outcome(self.runner.skip(item.key, item.source, item.reason, item.url))


def build_text_pipeline(pipeline: beam.Pipeline, inputs: list[str], output: str, config: dict[str, Any]) -> None:
    """Add the web-text graph to `pipeline`: read, the fused recipe, the dedup stages, then the outputs."""
    from pipelines.dedup.stages import apply_dedup, stage_names
    from pipelines.sinks import write_outputs

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
    results = records | "Recipe" >> beam.ParDo(RunRecipe(config)).with_outputs(
        ledger.COUNTS, ledger.REJECTS, main="kept")
    kept, dedup_rejects, dedup_counts = apply_dedup(results.kept, config)
    write_outputs(kept, [results[ledger.REJECTS], *dedup_rejects], [results[ledger.COUNTS], *dedup_counts], output,
                  config, stage_order, {"inputs": inputs, "output": output})
