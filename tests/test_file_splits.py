"""Reading one file as several splits: together they yield every record (and every reader skip) exactly once,
and a run with many small splits writes exactly what a run with whole files writes."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from apache_beam.io.filesystem import FileMetadata

from pipelines.run import run_text, sample_inputs
from pipelines.text import FileSplit, ReadRecords, split_file

SAMPLE = Path(__file__).resolve().parents[1] / "pipelines" / "data" / "sample"


def _keys(items) -> list[str]:
    return [item.key for item in items]


def _read(split: FileSplit) -> list:
    reader = ReadRecords(20_000_000)
    return list(reader.process(split))


def test_split_file_sizes():
    meta = FileMetadata("f.warc.gz", 100)
    assert [(s.split, s.splits) for s in split_file(meta, 30)] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert [(s.split, s.splits) for s in split_file(meta, 100)] == [(0, 1)]
    assert [(s.split, s.splits) for s in split_file(meta, 0)] == [(0, 1)]  # 0: whole files
    assert [(s.split, s.splits) for s in split_file(FileMetadata("empty", 0), 30)] == [(0, 1)]


@pytest.mark.parametrize("name", ["crawl-00000.warc.gz", "crawl-00001.warc", "crawl-00002-truncated.warc.gz",
                                  "pages.jsonl.gz", "standalone-page.html"])
@pytest.mark.parametrize("splits", [2, 3, 7])
def test_splits_partition_a_files_records(name, splits):
    path = str(SAMPLE / name)
    size = (SAMPLE / name).stat().st_size
    whole = _keys(_read(FileSplit(path, size)))
    parts = [_keys(_read(FileSplit(path, size, k, splits))) for k in range(splits)]
    assert sorted(key for part in parts for key in part) == sorted(whole)
    assert parts[0] == whole[::splits] and parts[-1] == whole[splits - 1::splits]


def test_a_reader_failure_is_reported_by_one_split(monkeypatch):
    from pipelines.readers import Skip

    def failing(stream, path, *, max_record_bytes):
        for n in range(5):
            yield Skip(key=f"{path}#{n}", source=path, reason="request")
        raise ValueError("reader bug")

    monkeypatch.setattr("pipelines.readers.iter_file", failing)
    path = str(SAMPLE / "standalone-page.html")
    for splits in (1, 2, 3):
        items = [item for k in range(splits) for item in _read(FileSplit(path, 10, k, splits))]
        assert sorted(i.key for i in items) == sorted([f"{path}#{n}" for n in range(5)] + [f"{path}#error"])


def test_unreadable_file_is_one_drop():
    items = [item for k in range(3) for item in _read(FileSplit("/no/such/file.warc.gz", 100, k, 3))]
    assert [i.reason for i in items] == ["unreadable-file:FileNotFoundError"]


def _outputs(out: Path) -> tuple[list[str], list[str], dict]:
    def lines(folder):
        rows = []
        for part in sorted(folder.glob("part-*")):
            with gzip.open(part, "rt", encoding="utf-8") as fh:
                rows += fh.read().splitlines()
        return sorted(rows)

    stats = json.loads((out / "stats.json").read_text("utf-8"))
    stats.pop("output")
    return lines(out / "corpus"), lines(out / "rejects"), stats


@pytest.mark.slow
def test_many_small_splits_write_what_whole_files_write(tmp_path):
    whole_cfg, split_cfg = tmp_path / "whole.yaml", tmp_path / "split.yaml"
    whole_cfg.write_text("read: {split_bytes: 0}\n", "utf-8")
    split_cfg.write_text("read: {split_bytes: 20000}\n", "utf-8")  # the 126 KB gzip WARC in 7 splits
    run_text(sample_inputs(), str(tmp_path / "whole"), str(whole_cfg), [])
    run_text(sample_inputs(), str(tmp_path / "split"), str(split_cfg),
             ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    whole, split = _outputs(tmp_path / "whole"), _outputs(tmp_path / "split")
    assert whole[0] and whole == split
