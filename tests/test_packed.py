"""Records cross the dedup shuffles packed (pipelines/dedup/packed.py): exact round trips, smaller than raw.
That every dedup stage unpacks what it packed is covered by the stage and pipeline tests' exact outputs."""
from __future__ import annotations

import json
import math

from pipelines.dedup.packed import pack, unpack

RECORD = {"id": "8dd5e3c3", "title": "骑车上班一年",
          "content": "去年春天，公司搬到了城东。\n" * 40 + "emoji 🚲 and \u0000 nul",
          "lang": "zh", "scores": {"lang": 0.9999999999999999, "quality": 1e-300}, "date": None, "n": 3,
          "flag": True, "_key": "crawl.warc.gz#123"}


def test_round_trip_is_exact_and_smaller():
    packed = pack(RECORD)
    assert isinstance(packed, bytes) and unpack(packed) == RECORD
    assert list(unpack(packed)) == list(RECORD)  # field order kept: written records look the same
    assert len(packed) * 3 < len(json.dumps(RECORD, ensure_ascii=False).encode("utf-8"))


def test_equal_records_pack_to_equal_bytes():
    assert pack(dict(RECORD)) == pack(RECORD)  # _KeepBest compares packed bytes to find the keeper


def test_tuples_come_back_as_lists_and_nan_survives():
    assert unpack(pack(("text", "en"))) == ["text", "en"]
    assert math.isnan(unpack(pack({"s": float("nan")}))["s"])
