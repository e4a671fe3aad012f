"""Perceptual-hash dedup as a Beam stage: exact kept/dropped sets on small inputs, pigeonhole recall, ledger."""
from __future__ import annotations

import random

import apache_beam as beam
import pytest

from pipelines.image_dedup import PerceptualDedup, band_masks, image_rank


def _record(rid: str, phash: int, w: int = 300, h: int = 300, key: str = "") -> dict:
    return {"id": rid, "key": key or f"in#{rid}", "source": "in", "url": "",
            "facts": {"phash": f"{phash:016x}", "original_width": w, "original_height": h}}


_OUT: dict[str, list] = {}  # module-level: the in-process runner unpickles the lambdas into this module


def _store(rows: list, name: str) -> None:
    _OUT[name] = rows


def _run(records: list[dict], **params) -> tuple[list[dict], list[dict], list[dict]]:
    _OUT.clear()
    out = _OUT
    with beam.Pipeline(runner="FnApiRunner") as p:
        result = p | beam.Create(records) | PerceptualDedup(**params)
        for name, pcoll in (("kept", result.kept), ("rejects", result.rejects), ("counts", result.counts)):
            _ = pcoll | f"Collect{name}" >> beam.combiners.ToList() | f"Store{name}" >> beam.Map(_store, name)
    return out["kept"], out["rejects"], out["counts"]


def _flip(value: int, bits: list[int]) -> int:
    for b in bits:
        value ^= 1 << b
    return value


def test_band_masks_cover_all_64_bits_once():
    for d in (0, 1, 4, 10):
        masks = band_masks(d)
        assert len(masks) == d + 1
        covered = 0
        for shift, mask in masks:
            assert covered & (mask << shift) == 0
            covered |= mask << shift
        assert covered == (1 << 64) - 1
    with pytest.raises(ValueError):
        band_masks(64)


def test_keeps_largest_image_of_each_cluster_and_names_it():
    base = 0x9F3C_5A10_77E2_0B4D
    far = 0x1234_5678_9ABC_DEF0
    records = [
        _record("a", base, 300, 300),
        _record("b", _flip(base, [0, 17, 40, 63]), 600, 600),   # 4 bits away, bigger: the keeper
        _record("c", base, 200, 200),                            # the same hash as a
        _record("d", far, 300, 300),                             # unrelated
        _record("e", _flip(far, [1, 2, 3, 4, 5]), 300, 300),     # 5 bits from d: kept at max_distance 4
    ]
    kept, rejects, counts = _run(records, max_distance=4)
    assert sorted(r["id"] for r in kept) == ["b", "d", "e"]
    assert sorted((r["id"], r["reason"], r["stage"]) for r in rejects) == [
        ("a", "phash-duplicate-of:b", "phash_dedup"), ("c", "phash-duplicate-of:b", "phash_dedup")]
    assert len(counts) == len(records)
    assert sum(v for c in counts for k, v in c.items() if k.endswith("|in")) == len(records)


def test_max_distance_zero_only_drops_identical_hashes():
    base = 0x0F0F_0F0F_0F0F_0F0F
    kept, rejects, _ = _run([_record("a", base), _record("b", base, 400, 400), _record("c", _flip(base, [3]))],
                            max_distance=0)
    assert sorted(r["id"] for r in kept) == ["b", "c"]
    assert [r["reason"] for r in rejects] == ["phash-duplicate-of:b"]


def test_chains_join_one_cluster():
    """a-b and b-c are within 2 bits, a-c is 4 bits: one cluster through b (connected components)."""
    a = 0xAAAA_AAAA_AAAA_AAAA
    b, c = _flip(a, [0, 1]), _flip(a, [0, 1, 2, 3])
    kept, rejects, _ = _run([_record("a", a, 500, 500), _record("b", b), _record("c", c)], max_distance=2)
    assert [r["id"] for r in kept] == ["a"]
    assert sorted(r["reason"] for r in rejects) == ["phash-duplicate-of:a"] * 2


def test_same_id_copies_keep_one_by_input_key():
    h = 0x1111_2222_3333_4444
    kept, rejects, counts = _run([_record("x", h, key="f#2"), _record("x", h, key="f#1")])
    assert [r["key"] for r in kept] == ["f#1"]
    assert [(r["key"], r["reason"]) for r in rejects] == [("f#2", "phash-duplicate-of:x")]
    assert len(counts) == 2


def test_every_pair_within_distance_is_found_randomised():
    """Pigeonhole recall: random hashes with planted copies at 1..4 bits are all caught, none far apart."""
    rng = random.Random(7)
    records, expected_drops = [], set()
    for i in range(60):
        base = rng.getrandbits(64)
        records.append(_record(f"k{i:03d}", base, 1000, 1000))
        near = _flip(base, rng.sample(range(64), rng.randint(1, 4)))
        records.append(_record(f"n{i:03d}", near, 100, 100))
        expected_drops.add(f"n{i:03d}")
    kept, rejects, _ = _run(records, max_distance=4)
    assert {r["id"] for r in rejects} == expected_drops
    assert len(kept) == 60
    assert image_rank(records[0]) < image_rank(records[1])
