"""shards.tar: the one tar writer (bytes as tarfile writes them) and the readers (tolerant and fast) over it."""
from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from shards import tar as T
from shards.tar import (Damage, Member, Sample, TarError, TarWriter, group_samples, iter_members, iter_tar,
                        member_bytes, sample_bytes, sample_members, split_member_name, write_tar)

MEMBERS = [("a.json", b"{}"), ("a.npy", b"x" * 511), ("b.jpg", b"\xff\xd8" + b"j" * 510), ("b.txt", b""),
           ("c.bin", b"y" * 513), ("d/" + "n" * 98 + "/" + "k" * 60 + ".json", b"long name, ustar prefix"),
           ("长城.txt", "中文".encode()), ("e.big", bytes(range(256)) * 300)]


def tarfile_bytes(members, mode: str) -> bytes:
    """What Python's tarfile writes for the members with the old writers' fixed headers (shards/writer.py's
    `tar_member` before shards.tar: mode 0644, uid/gid 0, no owner names, mtime 0)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def ours(members) -> bytes:
    out = io.BytesIO()
    write_tar(out, members)
    return out.getvalue()


# Python releases before the device-field change wrote "0000000" device numbers into regular files' headers
MODERN_TARFILE = tarfile.TarInfo("x").tobuf(tarfile.USTAR_FORMAT)[329:345] == bytes(16)


@pytest.mark.skipif(not MODERN_TARFILE, reason="this Python's tarfile writes device numbers for regular files")
@pytest.mark.parametrize("mode", ["w", "w|"])
@pytest.mark.parametrize("count", [0, 1, 3, len(MEMBERS)])
def test_written_bytes_are_tarfiles(mode, count):
    assert ours(MEMBERS[:count]) == tarfile_bytes(MEMBERS[:count], mode)


def test_size_sha256_and_record_padding():
    out = io.BytesIO()
    written = write_tar(out, MEMBERS)
    data = out.getvalue()
    assert written == (len(data), hashlib.sha256(data).hexdigest())
    assert len(data) % T.RECORD == 0 and len(data) >= sum(member_bytes(len(d)) for _, d in MEMBERS) + 1024
    assert write_tar(io.BytesIO(), MEMBERS, sha256=False) == (len(data), None)
    with TarWriter(io.BytesIO()) as tar:
        tar.add("k.txt", b"x")
    assert tar.written.size == T.RECORD and tar.close() is tar.written
    with pytest.raises(ValueError, match="closed"):
        tar.add("k2.txt", b"y")


def test_unfinished_writer_writes_no_end_blocks():
    out = io.BytesIO()
    with pytest.raises(RuntimeError):
        with TarWriter(out) as tar:
            tar.add("k.txt", b"x")
            raise RuntimeError("stop")
    assert len(out.getvalue()) == 1024


@pytest.mark.parametrize("name", ["x" * 101, "d" * 156 + "/k.txt", "bad\udcff.txt"])
def test_unwritable_names_raise(name):
    with pytest.raises(ValueError):
        ours([(name, b"")])


def test_sample_members_and_sizes():
    samples = [{"__key__": "k1", "txt": b"t", "jpg": b"j" * 600, "json": b"{}"}, {"__key__": "k2", "txt": b"",
                                                                                 "jpg": b"", "json": b""}]
    assert [n for n, _ in sample_members(samples)] == ["k1.jpg", "k1.json", "k1.txt", "k2.jpg", "k2.json", "k2.txt"]
    assert [n for n, _ in sample_members(samples, ("jpg", "txt", "json"))][:3] == ["k1.jpg", "k1.txt", "k1.json"]
    assert sample_bytes(samples[0]) == (512 + 1024) + (512 + 512) + (512 + 512)
    data = ours(sample_members(samples))
    assert len(data) == -(-(sum(map(sample_bytes, samples)) + 1024) // T.RECORD) * T.RECORD


# ---------------------------------------------------------------- reading


def test_iter_members_reads_back_what_was_written():
    got = list(iter_members(io.BytesIO(ours(MEMBERS))))
    assert [(m.name, m.data) for m in got] == MEMBERS
    assert all(isinstance(m, Member) and m.is_file and m.size == len(m.data) for m in got)


def test_group_samples_by_key():
    items = list(group_samples(iter_members(io.BytesIO(ours(MEMBERS)))))
    assert [s.key for s in items] == ["a", "b", "c", "d/" + "n" * 98 + "/" + "k" * 60, "长城", "e"]
    assert items[0].files == {"json": b"{}", "npy": b"x" * 511} and items[1].files["txt"] == b""
    assert split_member_name("dir/000123.seg.JPG") == ("dir/000123", "seg.jpg")
    assert split_member_name("README") == ("README", "")


def test_caps_leave_members_unread_and_reading_goes_on():
    caps = {"jpg": 100, "npy": None}
    got = list(iter_members(io.BytesIO(ours(MEMBERS)), max_size=lambda n: caps.get(split_member_name(n)[1], 5)))
    assert [(m.name, m.size, m.data) for m in got][:5] == [
        ("a.json", 2, b"{}"), ("a.npy", 511, b"x" * 511), ("b.jpg", 512, None), ("b.txt", 0, b""), ("c.bin", 513, None)]
    assert [m.name for m in got] == [n for n, _ in MEMBERS]
    samples = list(group_samples(got))
    assert samples[1].files == {"txt": b""} and [m.name for m in samples[1].skipped] == ["b.jpg"]
    assert [m.data for m in iter_members(io.BytesIO(ours(MEMBERS[:2])), max_size=0)] == [None, None]


class Dribble(io.RawIOBase):
    """A stream that returns at most 7 bytes a read and cannot seek (a pipe, a socket)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data[self.pos:self.pos + min(7, len(buffer))]
        buffer[:len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def test_short_reads_and_unseekable_streams():
    data = ours(MEMBERS)
    assert [(m.name, m.data) for m in iter_members(Dribble(data))] == MEMBERS
    assert list(iter_tar(Dribble(data), "x", ".txt")) == [(n, d if n.endswith(".txt") else None) for n, d in MEMBERS]


def tarfile_archive(fmt, members, *, mtime=0.0, extra=()):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_both_readers_read_tarfiles_formats(fmt):
    long_key = "d" * 90 + "/" + "k" * 90 if fmt == tarfile.USTAR_FORMAT else "k" * 150 + " with spaces\nand a newline"
    members = [(f"{long_key}.npy", b"N" * 700), (f"{long_key}.json", b"{}"), ("短.npy", b"s")]
    folder, link = tarfile.TarInfo("dir"), tarfile.TarInfo("link.npy")
    folder.type, link.type = tarfile.DIRTYPE, tarfile.SYMTYPE
    link.linkname = "x" * (20 if fmt == tarfile.USTAR_FORMAT else 120)   # GNU `K` and pax linkpath records
    data = tarfile_archive(fmt, members, mtime=1712345678.25, extra=[folder, link])  # a float mtime: pax records
    got = list(iter_members(io.BytesIO(data)))
    assert [(m.name, m.data) for m in got[:3]] == members
    assert [(m.name, m.type, m.data) for m in got[3:]] == [("dir", "dir", None), ("link.npy", "link", None)]
    fast = list(iter_tar(io.BytesIO(data), "t", ".npy"))
    assert fast == [(n, d if n.endswith(".npy") else None) for n, d in members]
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert [m.name for m in tf.getmembers()] == [m.name for m in got]


def test_base256_numbers_and_pax_sizes():
    assert T._number(b"\x80" + (7).to_bytes(11, "big")) == 7 and T._number(b"0000644 \0") == 0o644
    with pytest.raises(TarError):
        T._number(b"12x\0")
    assert T._pax_records(b"14 path=p.txt\n18 size=123456789\n") == {b"path": b"p.txt", b"size": b"123456789"}
    with pytest.raises(TarError):
        T._pax_records(b"99 path=p.txt\n")
    info = tarfile.TarInfo("big.bin")   # a GNU header with a base-256 size, as GNU tar writes for > 8 GiB
    info.size = 3
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[124:136] = b"\x80" + (3).to_bytes(11, "big")
    header[148:156] = b"%06o\0 " % (sum(header[:148]) + 256 + sum(header[156:]))
    data = bytes(header) + b"abc".ljust(512, b"\0") + bytes(1024)
    assert [(m.name, m.data) for m in iter_members(io.BytesIO(data))] == [("big.bin", b"abc")]


# ---------------------------------------------------------------- damage


SMALL = [("a.jpg", b"A" * 700), ("a.txt", b"first"), ("b.jpg", b"B" * 3000), ("b.txt", b"second")]


def test_every_cut_ends_in_one_damage_and_loses_nothing_before_it():
    data = ours(SMALL)
    whole = list(iter_members(io.BytesIO(data)))
    end = sum(member_bytes(len(d)) for _, d in SMALL)
    for cut in range(0, end + 512, 97):
        got = list(iter_members(io.BytesIO(data[:cut])))
        members, last = got[:-1], got[-1]
        assert isinstance(last, Damage) and not any(isinstance(m, Damage) for m in members), cut
        assert members == whole[:len(members)], cut
        assert last.reason == ("empty" if cut == 0 else "bad" if cut < 512 else "truncated"), cut
        if cut >= end:   # the members are whole, the end block is missing
            assert members == whole and last.member == "b.txt"
    assert list(iter_members(io.BytesIO(data[:end + 512]))) == whole      # one zero block ends an archive


def test_truncation_cuts_the_sample_it_is_in():
    data = ours(SMALL)
    for cut, member in ((3072, "b.jpg"), (3172, "b.jpg"), (6144, "b.jpg"), (6400, "b.jpg")):
        got = list(group_samples(iter_members(io.BytesIO(data[:cut]))))
        assert [type(i) for i in got] == [Sample, Damage] and got[0].key == "a", cut
        assert got[1].reason == "truncated" and got[1].member == member, cut
    cut_in_a = list(group_samples(iter_members(io.BytesIO(data[:2100]))))      # in a.txt's padding
    assert [type(i) for i in cut_in_a] == [Damage] and cut_in_a[0].member == "a.txt"


def test_bad_header_keeps_the_sample_before():
    data = ours(SMALL[:2])[:2560] + b"\x07" * 512 + ours(SMALL[2:])
    got = list(group_samples(iter_members(io.BytesIO(data))))
    assert [type(i) for i in got] == [Sample, Damage] and got[0].files["txt"] == b"first"
    assert (got[1].reason, got[1].member, got[1].offset) == ("bad", "a.txt", 2560)
    assert list(iter_members(io.BytesIO(b"\x01" * 2000)))[0].reason == "bad"
    assert list(iter_members(io.BytesIO(bytes(512)))) == []


def test_odd_members_end_the_sample_before_them():
    link = tarfile.TarInfo("a.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    data = tarfile_archive(tarfile.USTAR_FORMAT, [("a.txt", b"t"), ("README", b"r"), ("a.json", b"{}")], extra=[link])
    got = list(group_samples(iter_members(io.BytesIO(data))))
    assert [(type(i).__name__, getattr(i, "key", None) or i.name) for i in got] == [
        ("Sample", "a"), ("Member", "README"), ("Sample", "a"), ("Member", "a.jpg")]


def test_flipped_bytes_never_raise():
    data = ours(SMALL)
    for offset in list(range(0, 512, 3)) + list(range(1536, 2048, 5)):
        for bit in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[offset] ^= bit
            items = list(group_samples(iter_members(io.BytesIO(bytes(flipped)))))
            assert sum(isinstance(i, Damage) for i in items) <= 1 and all(
                isinstance(i, (Sample, Member, Damage)) for i in items)


def test_hostile_sizes_are_not_read_into_memory():
    info = tarfile.TarInfo("huge.jpg")
    info.size = 8 ** 11 - 1     # 8 GiB of data promised, none there
    data = info.tobuf(tarfile.USTAR_FORMAT) + b"tiny"
    got = list(iter_members(io.BytesIO(data), max_size=1000))
    assert got[0] == Member("huge.jpg", 8 ** 11 - 1, "file", None) and got[1].reason == "truncated"
    long_name = tarfile.TarInfo("././@LongLink")
    long_name.type, long_name.size = tarfile.GNUTYPE_LONGNAME, T.EXTENDED_MAX + 1
    got = list(iter_members(io.BytesIO(long_name.tobuf(tarfile.GNU_FORMAT))))
    assert got[0].reason == "bad" and "extended header" in got[0].detail


# ---------------------------------------------------------------- the fast path


def test_fast_path_errors():
    data = ours(SMALL)
    with pytest.raises(TarError, match="where: truncated"):
        list(iter_tar(io.BytesIO(data[:1000]), "where", ".jpg"))
    with pytest.raises(TarError, match="truncated tar header"):
        list(iter_tar(io.BytesIO(data[:1536 + 100]), "where", ".jpg"))
    flipped = bytearray(data)
    flipped[1536 + 10] ^= 0xFF
    with pytest.raises(TarError, match="checksum"):
        list(iter_tar(io.BytesIO(bytes(flipped)), "where", ".jpg"))
    end = sum(member_bytes(len(d)) for _, d in SMALL)
    assert [n for n, _ in iter_tar(io.BytesIO(data[:end]), "w", ".jpg")] == [n for n, _ in SMALL]   # no end block
    assert list(iter_tar(io.BytesIO(data), "w")) == [(n, None) for n, _ in SMALL]
