"""The sinks every pipeline shares: corpus/ (JSONL.gz or Parquet), rejects/ and stats.json.

stats.json is written last, atomically, once every output file has its final name: it is the run's completion
marker. The `write` stage of the ledger counts the kept records, whichever sink writes them, with the "after"
histograms (`cleaners.histogram`).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import ledger


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
        + [("scores", pa.map_(pa.string(), pa.float64())),
           ("domain", pa.struct([("source_type", pa.string()), ("topic", pa.string()),
                                 ("topic_score", pa.float64())]))]
    )


def _parquet_row(record: dict[str, Any]) -> dict[str, Any]:
    row = dict(record)
    row["scores"] = list(record.get("scores", {}).items())
    domain = record.get("domain")                 # null without a domain step, or when an input's is not ours
    source = domain.get("source_type") if isinstance(domain, dict) else None
    row["domain"] = None
    if isinstance(source, str):
        topic, score = domain.get("topic"), domain.get("topic_score")
        ours = isinstance(topic, str) and isinstance(score, (int, float)) and not isinstance(score, bool)
        row["domain"] = {"source_type": source, "topic": topic if ours else None,
                         "topic_score": float(score) if ours else None}
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


def count_written(record: dict[str, Any]) -> dict[str, int]:
    """The `write` stage's ledger counts for one kept record, with the "after" histograms (`cleaners.histogram`):
    `chars` of its text (`content`, `text`, dialogue `turns` joined by newlines, or an image's `caption`), `lang`,
    its WuDao domain label `dataType`, and `score:<name>` for each entry of its `scores`."""
    from cleaners import histogram as h

    def hist(name: str, bucket: str) -> str:
        return ledger.key(WRITE_STAGE, "hist", f"{name}|{bucket}")

    text = next((record[f] for f in ("content", "text", "caption") if isinstance(record.get(f), str)), None)
    if text is None and isinstance(record.get("turns"), list):
        text = "\n".join(str(turn) for turn in record["turns"])
    counts = {**ledger.kept_counts(WRITE_STAGE), hist("chars", h.chars_bucket(len(text or ""))): 1,
              hist("lang", h.category_bucket(record.get("lang"))): 1,
              hist("dataType", h.category_bucket(record.get("dataType"))): 1}
    scores = record.get("scores")
    for name, value in (scores.items() if isinstance(scores, dict) else ()):
        bucket = h.score_bucket(value)
        if bucket is not None:
            counts[hist("score:" + h.category_bucket(name), bucket)] = 1
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
                    | "WriteRejects" >> beam.io.WriteToText(FileSystems.join(output, ledger.REJECTS, "part"),
                                                            file_name_suffix=".jsonl.gz", num_shards=num_shards))
    written = kept | "CountWritten" >> beam.Map(count_written)
    summed = [pcoll | f"SumBundle{i}" >> beam.ParDo(ledger.SumPerBundle())
              for i, pcoll in enumerate([*counts, written])]
    _ = (summed | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombineGlobally(ledger.SumCounts())
         | "WriteStats" >> beam.ParDo(WriteStats(output, [*stage_order, WRITE_STAGE], extra),
                                      *[beam.pvalue.AsList(done) for done in [*(finished or []), rejects_done]]))
