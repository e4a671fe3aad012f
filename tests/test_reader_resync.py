"""Resynchronisation after hostile framing: a wrong WARC/ARC length (too long, over the cap, past the end of the
file) and garbage or corrupt gzip members never swallow the records after them; each resync is one damage Skip."""
from __future__ import annotations

import gzip
import random
import tracemalloc

import pytest

from pipelines.readers import RawPage, Skip
from pipelines.readers.bytesource import KEEP_RAW
from test_readers import arc_record, http_response, offsets, read_all, warc_record

TEXTS = [f"record {n} " + "text " * (10 + n) for n in range(8)]


def wet(n: int, length: int | None = None, text: str | None = None) -> bytes:
    return warc_record("conversion", (text or TEXTS[n]).encode(), f"http://x/{n}", "text/plain", length=length)


def brief(items) -> list[tuple[str, str]]:
    """(key, url of a page or reason of a Skip) per item."""
    return [(i.key, i.url) if isinstance(i, RawPage) else (i.key, i.reason) for i in items]


def texts(items) -> list[str]:
    return [i.text for i in items if isinstance(i, RawPage)]


def damage(items) -> list[str]:
    return [i.reason for i in items if isinstance(i, Skip) and i.is_damage]


def gzip_members(parts: list[bytes]) -> list[bytes]:
    return [gzip.compress(p, mtime=0) for p in parts]


def corrupt(member: bytes) -> bytes:
    """The member with a byte of its deflate data flipped."""
    bad = bytearray(member)
    bad[len(bad) // 2] ^= 0xFF
    return bytes(bad)


# ---- (1)-(3) wrong Content-Length ---------------------------------------------------------------
def ten_x_parts() -> list[bytes]:
    parts = [wet(n) for n in range(8)]
    parts[2] = wet(2, length=10 * len(TEXTS[2]))
    return parts


def test_ten_times_content_length_in_a_plain_warc_keeps_later_records():
    parts = ten_x_parts()
    declared_end = offsets(parts)[2] + parts[2].index(b"\r\n\r\n") + 4 + 10 * len(TEXTS[2])
    assert offsets(parts)[3] < declared_end < len(b"".join(parts))          # it lands inside a later record
    items = read_all(b"".join(parts), "p.warc")
    pages = [i for i in items if isinstance(i, RawPage)]
    assert texts(items) == TEXTS
    assert [p.key for p in pages] == [f"p.warc#{o}" for o in offsets(parts)]
    assert damage(items) == ["damaged:bad-length"]
    assert items[3].reason == "damaged:bad-length"                          # right after the record it concerns


def test_ten_times_content_length_in_per_record_gzip_keeps_later_records():
    members = gzip_members(ten_x_parts())
    items = read_all(b"".join(members), "p.warc.gz")
    assert texts(items) == TEXTS
    assert [i.key for i in items if isinstance(i, RawPage)] == [f"p.warc.gz#{o}" for o in offsets(members)]
    assert damage(items) == ["damaged:bad-length"]


@pytest.mark.parametrize("gzipped", [False, True])
def test_over_cap_wrong_length_is_too_large_and_later_records_are_read(gzipped):
    parts = [wet(n) for n in range(8)]
    parts[2] = wet(2, length=10_000)                # over the cap of 1000, lands far inside later records
    parts = gzip_members(parts) if gzipped else parts
    name = "c.warc.gz" if gzipped else "c.warc"
    items = read_all(b"".join(parts), name, max_record_bytes=1000)
    keys = [f"{name}#{o}" for o in offsets(parts)]
    assert [(k, r) for k, r in brief(items) if not r.startswith("damaged:")] == [
        (keys[0], "http://x/0"), (keys[1], "http://x/1"), (keys[2], "too-large")] + [
        (k, f"http://x/{n}") for n, k in enumerate(keys) if n > 2]
    assert damage(items) == ["damaged:bad-length"]
    assert brief(items)[3][1] == "damaged:bad-length"


@pytest.mark.parametrize("length", [5_000, 10**12])
@pytest.mark.parametrize("gzipped", [False, True])
def test_length_past_the_end_of_the_file(length, gzipped):
    parts = [wet(0), wet(1, length=length), wet(2), wet(3)]
    parts = gzip_members(parts) if gzipped else parts
    items = read_all(b"".join(parts), "e.warc", max_record_bytes=10_000)
    kept = [TEXTS[0], TEXTS[2], TEXTS[3]] if length > 10_000 else [TEXTS[0], TEXTS[1], TEXTS[2], TEXTS[3]]
    assert texts(items) == kept
    assert damage(items) == ["damaged:bad-length"]
    assert [i.reason for i in items if isinstance(i, Skip) and not i.is_damage] == (
        ["too-large"] if length > 10_000 else [])
    # the last record's length past the end with nothing after it: that record is the truncation
    last = read_all(wet(0) + wet(1, length=length), "e.warc", max_record_bytes=10_000)
    assert brief(last) == [("e.warc#0", "http://x/0"), (f"e.warc#{len(wet(0))}", "damaged:truncated")]


# ---- (4) garbage and corrupt gzip members --------------------------------------------------------
GOOD = [wet(n) for n in range(6)]


def gz_keys(members: list[bytes], name: str = "g.warc.gz") -> list[str]:
    return [f"{name}#{o}" for o in offsets(members)]


@pytest.mark.parametrize("garbage", [
    random.Random(1).randbytes(3000),
    b"\x1f\x8b\x08" + random.Random(2).randbytes(500),            # looks like a member, is not one
    b"junk\x1f\x8b\x08\x00\x00junk" * 20,                          # false magics inside
])
def test_garbage_between_members_loses_nothing(garbage):
    members = gzip_members(GOOD)
    members.insert(3, garbage)
    items = read_all(b"".join(members), "g.warc.gz")
    keys = gz_keys(members)
    assert [(k, u) for k, u in brief(items) if not u.startswith("damaged:")] == [
        (keys[n], f"http://x/{n}") for n in range(3)] + [(keys[n + 1], f"http://x/{n}") for n in range(3, 6)]
    assert damage(items) == ["damaged:bad-gzip"]
    assert str(offsets(members)[3]) in [i for i in items if isinstance(i, Skip)][0].detail
    assert texts(items) == TEXTS[:6]


def test_corrupt_member_is_its_records_damage_and_later_members_keep_their_offsets():
    members = gzip_members(GOOD)
    members[2] = corrupt(members[2])
    items = read_all(b"".join(members), "g.warc.gz")
    keys = gz_keys(members)
    assert brief(items) == [(keys[0], "http://x/0"), (keys[1], "http://x/1"), (keys[2], "damaged:bad-gzip")] + [
        (keys[n], f"http://x/{n}") for n in range(3, 6)]
    assert f"member at {offsets(members)[2]}" in items[2].detail
    assert texts(items) == TEXTS[:2] + TEXTS[3:6]


def test_two_bad_members_in_a_row_and_a_bad_last_member():
    members = gzip_members(GOOD)
    members[1], members[2], members[5] = corrupt(members[1]), b"\x00\x01not gzip\xff" * 9, corrupt(members[5])
    items = read_all(b"".join(members), "g.warc.gz")
    keys = gz_keys(members)
    assert brief(items) == [(keys[0], "http://x/0"), (keys[1], "damaged:bad-gzip"), (keys[3], "http://x/3"),
                            (keys[4], "http://x/4"), (keys[5], "damaged:bad-gzip")]     # one resync skips both


def test_padding_between_members_is_not_damage_and_truncation_still_ends_the_file():
    members = gzip_members(GOOD)
    padded = members[:2] + [b"\x00" * 50] + members[2:]
    items = read_all(b"".join(padded), "g.warc.gz")
    assert texts(items) == TEXTS[:6] and damage(items) == []
    assert [i.key for i in items][2:] == gz_keys(padded)[3:]
    whole = gzip.compress(b"".join(GOOD))
    cut = read_all(whole[: len(whole) * 2 // 3], "g.warc.gz")
    assert damage(cut) == ["damaged:truncated"] and cut[-1].reason == "damaged:truncated"
    assert texts(cut) == TEXTS[: len(texts(cut))]


def test_other_readers_still_stop_at_gzip_damage():
    lines = [gzip.compress(b'{"text": "line %d"}\n' % n) for n in range(4)]
    lines[1] = corrupt(lines[1])
    items = read_all(b"".join(lines), "j.jsonl.gz")
    assert [i.text for i in items if isinstance(i, RawPage)] == ["line 0"]
    assert damage(items) == ["damaged:bad-gzip"]


# ---- (5) WARC text inside a correct record ---------------------------------------------------------
EMBEDDED = b"before\r\n\r\n" + wet(7) + b"after\r\nWARC/1.0\r\nmore text"


@pytest.mark.parametrize("gzipped", [False, True])
def test_warc_text_inside_a_correct_record_is_kept_whole(gzipped):
    parts = [wet(0), warc_record("conversion", EMBEDDED, "http://x/e", "text/plain"), wet(1)]
    parts = gzip_members(parts) if gzipped else parts
    items = read_all(b"".join(parts), "w.warc")
    assert [i.text for i in items] == [TEXTS[0], EMBEDDED.decode(), TEXTS[1]]
    assert [i.key for i in items] == [f"w.warc#{o}" for o in offsets(parts)]


def test_warc_text_inside_a_correct_over_cap_record_is_one_too_large_skip():
    # the declared end is within one cap of the embedded record, so it is checked (and holds)
    big = warc_record("resource", b"x\n" * 1500 + EMBEDDED, "http://x/e", "text/plain")
    parts = [wet(0), big, wet(1)]
    items = read_all(b"".join(parts), "w.warc", max_record_bytes=1000)
    assert brief(items) == [("w.warc#0", "http://x/0"), (f"w.warc#{len(parts[0])}", "too-large"),
                            (f"w.warc#{len(parts[0]) + len(big)}", "http://x/1")]


# ---- (6) bounded search ------------------------------------------------------------------------------
PEAK = 2_500_000        # the same ~1.4 MB (read buffers, gzip look-back) for runs of 4 or 8 MB: flat, not per run
def peak_of(data: bytes, name: str, cap: int) -> tuple[list, int]:
    tracemalloc.start()
    try:
        items = read_all(data, name, max_record_bytes=cap)
        return items, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_garbage_longer_than_the_cap_is_one_damage_with_bounded_memory():
    garbage = b"no record here,\r\n" * 500_000                # 8.5 MB, no WARC line in it
    data = wet(0) + wet(1, length=10**12) + garbage + wet(2)
    items, peak = peak_of(data, "b.warc", 10_000)
    assert texts(items) == [TEXTS[0], TEXTS[2]]
    assert [i.reason for i in items if isinstance(i, Skip)] == ["too-large", "damaged:bad-length"]
    assert peak < PEAK, peak
    items, peak = peak_of(wet(0) + garbage + wet(2), "b.warc", 10_000)
    assert texts(items) == [TEXTS[0], TEXTS[2]] and damage(items) == ["damaged:bad-header"]
    assert peak < PEAK, peak
    items, peak = peak_of(wet(0) + garbage, "b.warc", 10_000)       # and nothing after it
    assert texts(items) == [TEXTS[0]] and damage(items) == ["damaged:bad-header"] and peak < PEAK


def test_gzip_garbage_run_longer_than_the_look_back_is_searched_streaming():
    members = gzip_members(GOOD[:2])
    garbage = random.Random(3).randbytes(8 * KEEP_RAW).replace(b"\x1f\x8b", b"..")
    data = members[0] + garbage + members[1]
    items, peak = peak_of(data, "b.warc.gz", 10_000)
    pages = [i.key for i in items if isinstance(i, RawPage)]
    assert pages == ["b.warc.gz#0", f"b.warc.gz#{len(data) - len(members[1])}"]
    assert texts(items) == TEXTS[:2] and damage(items) == ["damaged:bad-gzip"]
    assert f"compressed offset {len(members[0])}" in items[1].detail
    assert peak < PEAK, peak


# ---- ARC -----------------------------------------------------------------------------------------------
def arc_page(n: int, length: int | None = None) -> bytes:
    body = http_response(f"<html><body><p>{TEXTS[n]}</p></body></html>".encode())
    record = arc_record(f"http://a/{n}", "text/html", body)
    return record if length is None else record.replace(f" {len(body)}\n".encode(), f" {length}\n".encode(), 1)


@pytest.mark.parametrize("length,cap", [(900, 20_000_000), (10**12, 1000), (5000, 1000)])
@pytest.mark.parametrize("gzipped", [False, True])
def test_arc_wrong_length_keeps_later_records(length, cap, gzipped):
    parts = [arc_page(n) for n in range(6)]
    parts[1] = arc_page(1, length)
    parts = gzip_members(parts) if gzipped else parts
    items = read_all(b"".join(parts), "a.arc", max_record_bytes=cap)
    keys = [f"a.arc#{o}" for o in offsets(parts)]
    second = "too-large" if length > cap else "http://a/1"
    assert [(k, r) for k, r in brief(items) if not r.startswith("damaged:")] == [
        (keys[0], "http://a/0"), (keys[1], second)] + [(keys[n], f"http://a/{n}") for n in range(2, 6)]
    assert damage(items) == ["damaged:bad-length"]


def test_arc_corrupt_gzip_member_resyncs():
    members = gzip_members([arc_page(n) for n in range(4)])
    members[1] = corrupt(members[1])
    items = read_all(b"".join(members), "a.arc.gz")
    keys = [f"a.arc.gz#{o}" for o in offsets(members)]
    assert brief(items) == [(keys[0], "http://a/0"), (keys[1], "damaged:bad-gzip"), (keys[2], "http://a/2"),
                            (keys[3], "http://a/3")]


# ---- hostile bytes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["f.warc.gz", "f.arc.gz", "f.warc"])
def test_mutated_files_never_raise_and_keys_stay_unique(name):
    rng = random.Random(5)
    parts = [arc_page(n) for n in range(6)] if ".arc" in name else [wet(n) for n in range(8)]
    data = b"".join(gzip_members(parts) if name.endswith(".gz") else parts)
    for _ in range(150):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            at = rng.randrange(len(mutated))
            if rng.random() < 0.6:
                mutated[at] = rng.randrange(256)
            else:
                mutated[at:at] = rng.randbytes(rng.randint(1, 300))
        items = read_all(bytes(mutated), name, max_record_bytes=rng.choice([300, 20_000_000]))
        assert all(isinstance(i, (RawPage, Skip)) and getattr(i, "reason", "") != "damaged:reader-error"
                   for i in items)
        assert len({i.key for i in items}) == len(items)
