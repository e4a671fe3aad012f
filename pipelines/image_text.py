"""The image-text pipeline as a Beam graph.

    match input globs -> read pairs (url lists CSV/TSV/JSONL/Parquet, WebDataset tars, Parquet with image bytes)
      -> caption checks: normalization and PII scrub shared with web text, language ID, length, blocklist
         (before the download, so a bad caption costs no request)                cleaners/image/caption.py
      -> download url-only pairs: bounded thread pool, retries on transient errors, size cap, opt-outs
                                                                                 pipelines/download.py
      -> image checks: full decode, bomb guard, EXIF orientation, RGB, min side, aspect ratio, perceptual hash,
         resize + center crop, JPEG re-encode                                    cleaners/image/checks.py
      -> perceptual-hash dedup across the dataset (shuffles)                     pipelines/image_dedup.py
      -> alignment score of each pair, batched; min_score / min_percentile floors (when a model is given)
                                                                                 pipelines/alignment.py
      -> images/NNNNNN.tar WebDataset shards (KEY.jpg, KEY.txt, KEY.json), deterministic; images/shards.json
      -> rejects/ (id, key, url, source, stage, reason), stats.json (in = out + dropped at every stage)
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cleaners.document import encodable, stable_hash
from cleaners.image.record import DATA_TYPE, ImageText
from pipelines import ledger, progress
from pipelines.inputs import MatchInputs
from shards.tar import sample_bytes, sample_members, write_tar

READ, DOWNLOAD, IMAGE, PHASH = "read", "download", "image", "phash_dedup"
ALIGNMENT, ALIGNMENT_PERCENTILE = "alignment", "alignment_percentile"
IMAGES_DIR, SHARDS_INDEX = "images", "shards.json"
SAMPLE_EXTENSIONS = ("jpg", "txt", "json")   # member order in a sample (shards.json's sha256 depend on it)


class ReadPairs(beam.DoFn):
    """One matched file -> ImageText pairs; reader Skips (bad rows, damage) become counted rejects."""

    def __init__(self, columns: dict[str, Any]):
        from pipelines.readers.image_text import ImageTextColumns

        self.columns = ImageTextColumns.from_dict(columns)  # a typo in the recipe fails here, before any work

    def process(self, metadata: fileio.FileMetadata) -> Iterable[Any]:
        from pipelines.readers.image_text import iter_image_text_file
        from pipelines.readers.skip import Skip

        path = encodable(metadata.path)      # the name records carry; the file opens by its real name
        try:
            stream = FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:
            progress.count(files_read=1, bytes_read=metadata.size_in_bytes, records_read=1)
            yield from ledger.dropped(Skip(f"{path}#open", path, ""), READ, f"unreadable-file:{type(exc).__name__}")
            return
        with stream:
            try:
                items = iter_image_text_file(stream, path, self.columns, opener=_open_any)
                for item in progress.track_file(items, stream, metadata.size_in_bytes):
                    if isinstance(item, ImageText):
                        yield ledger.passed(READ)
                        yield item
                    else:
                        yield from ledger.dropped(item, READ, item.reason)
            except Exception as exc:  # a reader bug costs one file, not the run
                progress.count(records_read=1)
                yield from ledger.dropped(Skip(f"{path}#error", path, ""), READ,
                                          f"damaged:reader-error:{type(exc).__name__}")

    def finish_bundle(self) -> None:
        progress.flush()


def _open_any(path: str):
    """Image files named by a row (data-juicer's relative paths), local or remote, through Beam FileSystems."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def count_download(item: Any):
    """After the download DoFn: pairs with image bytes go on, failed downloads (Skips) are counted drops."""
    if isinstance(item, ImageText):
        yield ledger.passed(DOWNLOAD)
        yield item
    else:
        reason = item.reason.removeprefix(f"{DOWNLOAD}:")
        yield from ledger.dropped(item, DOWNLOAD, reason)


def pair_id(original: bytes, caption: str) -> str:
    """Stable id of a pair: the hash of the original image bytes and the cleaned caption (reruns agree)."""
    return stable_hash(hashlib.sha256(original).hexdigest(), caption)


def to_output_record(pair: ImageText, checked: ImageText) -> dict[str, Any]:
    """The output record of a pair the image step kept: `checked` holds the re-encoded JPEG and the facts; the id
    hashes the original image bytes (`pair`'s) with the clean caption."""
    return {"id": pair_id(pair.image or b"", checked.caption), "key": checked.key, "source": checked.source,
            "url": checked.url, "caption": checked.caption, "lang": checked.lang, "caption_kind": checked.caption_kind,
            "dataType": DATA_TYPE, **({"texts": [{"text": t, "lang": lang} for t, lang in checked.texts]}
                                      if checked.texts else {}),
            "facts": checked.facts, "meta": checked.meta, "jpg": checked.image}


def to_sample(record: dict[str, Any]) -> dict[str, Any]:
    """A WebDataset sample: KEY.jpg (the training image), KEY.txt (the caption), KEY.json (everything else)."""
    meta = {k: v for k, v in record.items() if k != "jpg"}
    return {"__key__": record["id"], "jpg": record["jpg"], "txt": record["caption"].encode("utf-8"),
            "json": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")}


def shard_file_name(index: int) -> str:
    return f"{index:06d}.tar"


class WriteImageShard(beam.DoFn):
    """(index, samples) -> one tar sorted by key, written to a temporary name and renamed (any FileSystems path)."""

    def __init__(self, output: str):
        self.output = output

    def process(self, element: tuple[int, Iterable[dict[str, Any]]]):
        index, samples = element
        ordered = sorted(samples, key=lambda s: s["__key__"])
        final = FileSystems.join(self.output, IMAGES_DIR, shard_file_name(index))
        tmp = final + ".tmp"
        with FileSystems.create(tmp) as raw:
            written = write_tar(raw, sample_members(ordered, SAMPLE_EXTENSIONS))
        if FileSystems.exists(final):
            FileSystems.delete([final])
        FileSystems.rename([tmp], [final])
        progress.counter("shards-written").inc()
        progress.count(written=len(ordered))
        yield {"name": shard_file_name(index), "samples": len(ordered), "bytes": written.size, "sha256": written.sha256}

    def finish_bundle(self) -> None:
        progress.flush()


class WriteIndex(beam.DoFn):
    def __init__(self, output: str):
        self.output = output

    def process(self, entries: list[dict[str, Any]]):
        index = {"shards": sorted(entries, key=lambda e: e["name"]),
                 "samples": sum(e["samples"] for e in entries), "bytes": sum(e["bytes"] for e in entries)}
        final = FileSystems.join(self.output, IMAGES_DIR, SHARDS_INDEX)
        with FileSystems.create(final + ".tmp") as fh:
            fh.write((json.dumps(index, indent=1) + "\n").encode("utf-8"))
        if FileSystems.exists(final):
            FileSystems.delete([final])
        FileSystems.rename([final + ".tmp"], [final])
        yield index


def write_image_shards(kept: beam.PCollection, output: str, shard_size_bytes: int) -> beam.PCollection:
    """Kept records -> images/NNNNNN.tar; which shard a sample lands in depends on its id and the total bytes
    only, so any runner, bundling or worker count writes the same files."""
    from shards.writer import shard_of

    samples = kept | "ToSamples" >> beam.Map(to_sample)
    num_shards = (samples
                  | "SampleBytes" >> beam.Map(sample_bytes)
                  | "TotalBytes" >> beam.CombineGlobally(sum)
                  | "NumShards" >> beam.Map(lambda total: max(1, math.ceil(total / shard_size_bytes))))
    return (samples
            | "AssignShard" >> beam.Map(lambda s, n: (shard_of(s["__key__"], n), s),
                                        n=beam.pvalue.AsSingleton(num_shards))
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(WriteImageShard(output))
            | "Entries" >> beam.combiners.ToList()
            | "WriteIndex" >> beam.ParDo(WriteIndex(output)))


#: the caption steps' stages, in order (cleaners/image/caption.py)
CAPTION_STAGES = ("caption_text", "caption_language", "caption_rewrite", "caption_length")


def stage_order(config: dict[str, Any]) -> list[str]:
    order = [READ, *CAPTION_STAGES, DOWNLOAD, IMAGE]
    order += [PHASH] if (config.get("dedup") or {}).get("enabled", True) else []
    alignment = config.get("alignment") or {}
    if alignment.get("model_path"):
        order += [ALIGNMENT] + ([ALIGNMENT_PERCENTILE] if alignment.get("min_percentile") is not None else [])
    return order


def build_image_text_pipeline(pipeline: beam.Pipeline, inputs: list[str], output: str, config: dict[str, Any]) -> None:
    from pipelines.download import DownloadImages
    from pipelines.image_dedup import PerceptualDedup
    from cleaners.image.caption import CaptionChecks
    from cleaners.recipe import build_section_steps, build_step
    from pipelines.sinks import write_rejects_and_stats
    from pipelines.steps import RunSteps

    out_cfg = dict(config.get("output") or {})
    shard_size = int(out_cfg.get("shard_size_bytes", 256_000_000))
    if shard_size < 1:
        raise ValueError("output.shard_size_bytes must be >= 1")
    read = (pipeline
            | "Inputs" >> beam.Create(inputs)
            | "Match" >> MatchInputs()
            | "SpreadFiles" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadPairs(dict(config.get("read") or {})))
            .with_outputs(ledger.REJECTS, ledger.COUNTS, main="pairs"))
    caption_steps = build_section_steps(CaptionChecks, config, "caption")
    image_step = build_step(IMAGE, config.get("image"), kind="image_text")
    captions = (read.pairs
                | "SpreadPairs" >> beam.Reshuffle()
                | "Captions" >> beam.ParDo(RunSteps(caption_steps, live_kept=False))
                .with_outputs(ledger.REJECTS, ledger.COUNTS, main="pairs"))
    downloaded = (captions.pairs
                  | "Download" >> beam.ParDo(DownloadImages(dict(config.get("download") or {})))
                  | "CountDownloads" >> beam.FlatMap(count_download)
                  .with_outputs(ledger.REJECTS, ledger.COUNTS, main="pairs"))
    images = (downloaded.pairs
              | "Images" >> beam.ParDo(RunSteps([image_step], finish=to_output_record))
              .with_outputs(ledger.REJECTS, ledger.COUNTS, main="records"))
    rejects = [read[ledger.REJECTS], captions[ledger.REJECTS], downloaded[ledger.REJECTS], images[ledger.REJECTS]]
    counts = [read[ledger.COUNTS], captions[ledger.COUNTS], downloaded[ledger.COUNTS], images[ledger.COUNTS]]
    kept = images.records
    dedup = dict(config.get("dedup") or {})
    if dedup.pop("enabled", True):
        out = kept | "PerceptualDedup" >> PerceptualDedup(stage=PHASH, **dedup)
        kept = out.kept
        rejects.append(out.rejects)
        counts.append(out.counts)
    alignment = dict(config.get("alignment") or {})
    if alignment.get("model_path"):
        from pipelines.alignment import ScoreAlignment

        out = kept | "Alignment" >> ScoreAlignment(build_step(ALIGNMENT, alignment, kind="image_text"))
        kept = out.records
        rejects.append(out[ledger.REJECTS])
        counts.append(out[ledger.COUNTS])
    index = write_image_shards(kept, output, shard_size)
    write_rejects_and_stats(kept, rejects, counts, output, stage_order(config),
                            {"inputs": inputs, "output": output, "dataType": DATA_TYPE, "format": "webdataset"},
                            finished=[index])
