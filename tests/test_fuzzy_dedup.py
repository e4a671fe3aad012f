"""The MinHash-LSH fuzzy dedup stage: exact small cases, representatives, verification modes, the ledger."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from cleaners.minhash import collision_probability, exact_jaccard, shingles
from pipelines.dedup.fuzzy import MinHashDedup, recall_bands

BASE = ("The harbour town woke early on market day. Fishermen unloaded crates of silver mackerel while "
        "bakers carried warm loaves to the square. Children ran between the stalls, and an old man played the "
        "accordion beside the fountain. By noon the square was full of visitors from the villages along the "
        "coast, who came to buy cheese, honey, wool and the famous smoked fish that the town has sold for two "
        "hundred years. In the afternoon a brass band marched from the church to the quay, and the mayor gave "
        "a short speech about the new lighthouse that will be finished next spring.")
ZH_BASE = ("清晨的港口小镇迎来了赶集日。渔民们从船上卸下一箱箱银光闪闪的鲐鱼，面包师把刚出炉的面包送到广场。"
           "孩子们在摊位之间奔跑，一位老人在喷泉旁拉着手风琴。到了中午，广场上挤满了从沿海村庄赶来的游客，"
           "他们来买奶酪、蜂蜜、羊毛，还有小镇卖了两百年的熏鱼。下午，铜管乐队从教堂一路走到码头，"
           "镇长发表了简短的讲话，介绍明年春天就要完工的新灯塔。")


def edit_words(text: str, every: int, word: str = "blue") -> str:
    words = text.split()
    return " ".join(word if i % every == 0 else w for i, w in enumerate(words))


def rec(id_, content, lang="en", quality=None):
    r = {"id": id_, "content": content, "lang": lang, "url": f"https://example.org/{id_}", "scores": {}}
    if quality is not None:
        r["scores"]["quality"] = quality
    return r


def jaccard(a: str, b: str, lang="en") -> float:
    return exact_jaccard(shingles(a, lang), shingles(b, lang))


def run(stage, records, kept, rejects, counts):
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(records) | stage
        assert_that(out.kept | "Ids" >> beam.Map(lambda r: r["id"]), equal_to(kept), label="kept")
        assert_that(out.rejects | "Reasons" >> beam.Map(lambda r: (r["id"], r["reason"])), equal_to(rejects),
                    label="rejects")
        summed = out.counts | beam.FlatMap(lambda c: c.items()) | beam.CombinePerKey(sum)
        assert_that(summed, equal_to(sorted(counts.items())), label="counts")


def test_near_duplicates_merge_and_unrelated_documents_stay():
    near = edit_words(BASE, 60)                 # two words changed in ~100
    far = edit_words(BASE, 3)                   # a third of the words changed
    assert jaccard(BASE, near) >= 0.8 > jaccard(BASE, far)
    zh_near = ZH_BASE.replace("鲐鱼", "鲭鱼")
    assert jaccard(ZH_BASE, zh_near, "zh") >= 0.8
    records = [rec("b", BASE), rec("a", near), rec("c", far), rec("z1", ZH_BASE, "zh"), rec("z2", zh_near, "zh"),
               rec("u", "A completely different short note about trains and timetables.")]
    run(MinHashDedup(threshold=0.8), records, ["a", "c", "u", "z1"],
        [("b", "minhash-duplicate-of:a"), ("z2", "minhash-duplicate-of:z1")],
        {"minhash_dedup|in": 6, "minhash_dedup|out": 4, "minhash_dedup|drop|minhash-duplicate-of": 2})


def test_representative_is_highest_quality_then_smallest_id_across_a_cluster():
    v1, v2 = edit_words(BASE, 60), edit_words(BASE, 60, "green")
    records = [rec("a", BASE), rec("b", v1, quality=0.9), rec("c", v2, quality=0.9)]
    run(MinHashDedup(threshold=0.8), records, ["b"],
        [("a", "minhash-duplicate-of:b"), ("c", "minhash-duplicate-of:b")],
        {"minhash_dedup|in": 3, "minhash_dedup|out": 1, "minhash_dedup|drop|minhash-duplicate-of": 2})


def test_transitive_cluster_through_a_middle_document():
    """a~b and b~c are above the threshold, a~c is not: connected components put all three in one cluster."""
    words = BASE.split()
    a = BASE
    b = " ".join(words[:70] + ["ferry", "tickets", "cost", "less"] + words[70:])
    c = " ".join(words[:70] + ["ferry", "tickets", "cost", "less"] + words[70:80] + ["in", "winter"] + words[80:]
                 ).replace("accordion", "violin")
    assert jaccard(a, b) >= 0.8 and jaccard(b, c) >= 0.8
    records = [rec("1", a), rec("2", b), rec("3", c)]
    run(MinHashDedup(threshold=0.8), records, ["1"],
        [("2", "minhash-duplicate-of:1"), ("3", "minhash-duplicate-of:1")],
        {"minhash_dedup|in": 3, "minhash_dedup|out": 1, "minhash_dedup|drop|minhash-duplicate-of": 2})


@pytest.mark.parametrize("verify", ["exact", "estimate", "none"])
def test_verification_modes_agree_on_clear_cases(verify):
    records = [rec("a", BASE), rec("b", BASE + " Fin."), rec("c", "Unrelated text about mountains and snow.")]
    run(MinHashDedup(threshold=0.8, verify=verify), records, ["a", "c"], [("b", "minhash-duplicate-of:a")],
        {"minhash_dedup|in": 3, "minhash_dedup|out": 2, "minhash_dedup|drop|minhash-duplicate-of": 1})


def test_exact_verification_rejects_a_candidate_below_the_threshold():
    """With one band of one row every pair with the same minimum hash is a candidate; exact verification
    still keeps pairs below the threshold apart."""
    far = edit_words(BASE, 2)
    assert jaccard(BASE, far) < 0.8
    run(MinHashDedup(threshold=0.8, num_perm=4, bands=4, rows=1), [rec("a", BASE), rec("b", far)], ["a", "b"], [],
        {"minhash_dedup|in": 2, "minhash_dedup|out": 2})


def test_empty_and_tiny_documents_pass():
    run(MinHashDedup(), [rec("a", ""), rec("b", "hi"), rec("c", "hi")], ["a", "b"], [("c", "minhash-duplicate-of:b")],
        {"minhash_dedup|in": 3, "minhash_dedup|out": 2, "minhash_dedup|drop|minhash-duplicate-of": 1})


def test_recall_bands_catch_pairs_at_the_threshold():
    for threshold in (0.7, 0.8, 0.9):
        bands, rows = recall_bands(threshold, 128)
        assert bands * rows <= 128
        assert collision_probability(threshold, bands, rows) >= 0.99
        # one more row per band (fewer false candidates) would miss more than 1% of pairs at the threshold
        assert collision_probability(threshold, 128 // (rows + 1), rows + 1) < 0.99
    assert recall_bands(0.8, 128) == (21, 6)


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"threshold": 1.5}, {"bands": 4}, {"bands": 20, "rows": 10},
                                    {"verify": "maybe"}])
def test_bad_parameters_are_clear_errors(kwargs):
    with pytest.raises(ValueError):
        MinHashDedup(**kwargs)


def test_bucket_partitions_grow_with_the_corpus_in_powers_of_two():
    from pipelines.dedup.fuzzy import ENTRIES_PER_PARTITION, bucket_partitions

    assert bucket_partitions(0, 21) == 1 and bucket_partitions(1000, 21) == 1
    per_doc = ENTRIES_PER_PARTITION // 20
    assert bucket_partitions(per_doc, 20) == 1 and bucket_partitions(per_doc + 1, 20) == 2
    assert bucket_partitions(1_000_000_000, 21) == 1 << 17   # 21e9 entries: ~160k per partition


def test_packed_band_entries_give_the_buckets_of_plain_grouping(monkeypatch):
    """Band entries packed per partition (small blobs, many partitions) give every bucket's star edges, ids with
    lone surrogates and NULs included; one blob never exceeds BLOB_ENTRIES entries."""
    import numpy as np

    from cleaners.minhash import MinHasher, band_keys
    from pipelines.dedup import fuzzy

    monkeypatch.setattr(fuzzy, "BLOB_ENTRIES", 7)
    texts = [BASE, edit_words(BASE, 60), edit_words(BASE, 40), edit_words(BASE, 3), ZH_BASE]
    ids = ["b", "a\ud800", "c\x00", "d", "z"]
    signatures = MinHasher(num_perm=128, seed=1, ngram_zh=5, ngram_en=5).signatures(texts, ["en"] * 4 + ["zh"])
    elements = [(i, np.asarray(s, dtype=np.uint32).tobytes()) for i, s in zip(ids, signatures)]
    expected = {}
    for doc_id, signature in elements:
        for key in band_keys(np.frombuffer(signature, dtype=np.uint32), 21, 6):
            expected.setdefault(key, set()).add(doc_id)
    want = {(o, min(m)) for m in expected.values() for o in m if o != min(m)}
    assert want   # the near duplicates share buckets
    pack = fuzzy._PackBands(21, 6)
    pack.start_bundle()
    blobs = [kv for e in elements for kv in pack.process(e, documents=10**5)]   # 16 partitions
    blobs += [wv.value for wv in pack.finish_bundle()]

    def entries(blob: bytes) -> int:
        data, pos, n = fuzzy.zlib.decompress(blob), 0, 0
        while pos < len(data):
            head = pos + fuzzy._KEY + fuzzy._LENGTH
            pos, n = head + int.from_bytes(data[pos + fuzzy._KEY:head], "big"), n + 1
        return n

    assert sum(entries(b) for _, b in blobs) == 21 * len(elements) and max(entries(b) for _, b in blobs) <= 7
    assert len({part for part, _ in blobs}) > 1
    grouped = {}
    for part, blob in blobs:
        grouped.setdefault(part, []).append(blob)
    got = {edge for item in grouped.items() for edge in fuzzy._bucket_candidates(item)}
    assert got == want


def test_many_partitions_give_the_same_dedup(monkeypatch):
    from pipelines.dedup import fuzzy

    monkeypatch.setattr(fuzzy, "ENTRIES_PER_PARTITION", 4)   # 6 documents x 21 bands -> 32 partitions
    near, zh_near = edit_words(BASE, 60), ZH_BASE.replace("鲐鱼", "鲭鱼")
    records = [rec("b", BASE), rec("a", near), rec("c", edit_words(BASE, 3)), rec("z1", ZH_BASE, "zh"),
               rec("z2", zh_near, "zh"), rec("u", "A completely different short note about trains and timetables.")]
    run(MinHashDedup(threshold=0.8), records, ["a", "c", "u", "z1"],
        [("b", "minhash-duplicate-of:a"), ("z2", "minhash-duplicate-of:z1")],
        {"minhash_dedup|in": 6, "minhash_dedup|out": 4, "minhash_dedup|drop|minhash-duplicate-of": 2})
