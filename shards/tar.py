"""Tar files: the one module of the project that writes or reads them (DESIGN.md: `shards/` owns tar).

Writing (`TarWriter`, `write_tar`, `sample_members`): regular-file members as a POSIX ustar tar whose bytes depend on
the names and data alone: mode 0644, uid and gid 0, empty owner names, mtime 0, empty device fields (the recipe of
reproducible-builds.org for archives: `--mtime=@0 --owner=0 --group=0 --numeric-owner`), then two zero blocks and
zero padding to a whole 10240-byte record. These are the bytes Python's `tarfile` writes for the same members
(USTAR_FORMAT, stream or not; tests/test_shards_tar.py compares them), but built here, so they no longer follow the
Python release (tarfile's device fields changed between releases). Callers keep the member order (sorted keys).
The size and sha256 of what was written come back, for manifests on any Beam FileSystems path.

Reading, as webdataset's `tariterators.py` does it, in steps that compose:
    tar bytes --iter_members--> Member ... [Damage] --group_samples--> Sample | odd Member | Damage
- `iter_members(stream, max_size=...)`: the tolerant reader for input we did not write (image-text inputs, VQ
  training images, `verify` of a shard folder). Reads forward only (any object with `read(n)`), holds one member
  at a time, leaves members over `max_size` unread, and never raises on bad bytes: a cut or corrupt archive ends
  with one `Damage` saying where and why.
- `group_samples(items)`: consecutive members sharing a key (the base name up to its first dot, `split_member_name`)
  become one `Sample`, webdataset's rule.
- `iter_tar(f, where, want)`: the fast path for our own token shards (shards/reader.py's training stream; measured
  by bench/reader_throughput.py): a plain loop that reads only the members it wants and raises `TarError` at the
  first problem. It is kept apart from `iter_members` because the tolerant reader's bookkeeping per member (caps,
  positions, damage, chunked skips) would slow it; both read headers with the same `_header` and `_extended_name`
  (ustar and GNU tar: 512-byte blocks, octal or base-256 numbers, the header checksum, ustar name prefixes, GNU
  `L` long names and pax `x` records for path and size).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, Iterator, NamedTuple

BLOCK = 512
RECORD = 20 * BLOCK            # tarfile's (and GNU tar's default) record: the archive is padded to a multiple
MODE = 0o644
EXTENDED_MAX = 1 << 20         # bytes a GNU long name or pax header may hold: more is not a tar we read
SKIP_CHUNK = 1 << 20           # bytes held at a time while skipping unread data
_MAGIC_OFFSET = 257
_USTAR_MAGIC = b"ustar\x0000"
_ZEROS = bytes(RECORD)
_REGULAR = (b"0", b"\0", b"7")
_TYPES = {b"0": "file", b"\0": "file", b"7": "file", b"5": "dir", b"1": "link", b"2": "link"}
_SKIPPED_RECORDS = (b"K", b"g")  # GNU long link names, pax global headers: read past, nothing we use


class TarError(ValueError):
    """A tar that cannot be read on; `reason` is "truncated" (it ends early) or "bad" (bytes that are no tar)."""

    def __init__(self, message: str, reason: str = "bad"):
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------- writing


def padded(size: int) -> int:
    """`size` rounded up to whole 512-byte blocks: what a member's data takes in a tar."""
    return -(-size // BLOCK) * BLOCK


def member_bytes(size: int) -> int:
    """Bytes one member of `size` data bytes takes in a tar: its header and its padded data."""
    return BLOCK + padded(size)


def sample_bytes(sample: dict[str, Any]) -> int:
    """Bytes a WebDataset sample ({"__key__", ext: bytes}) takes in a tar, the tar's end blocks not counted."""
    return sum(member_bytes(len(sample[ext])) for ext in sample if ext != "__key__")


def member_header(name: str, size: int) -> bytes:
    """The ustar header block of a regular file `name` of `size` bytes with the fixed mode, owner and mtime.

    Names longer than 100 bytes are split into ustar's prefix and name at a '/' (as tarfile does); a name that
    cannot be split, or is not valid UTF-8 text, raises ValueError (UnicodeEncodeError)."""
    raw = name.encode("utf-8")
    prefix = b""
    if len(raw) > 100:
        prefix, raw = _split_ustar(name)
    if not 0 <= size < 8 ** 11:
        raise ValueError(f"member {name!r}: size {size} does not fit a ustar header")
    head = b"".join((
        raw.ljust(100, b"\0"), b"%07o\0" % MODE, b"0000000\0", b"0000000\0", b"%011o\0" % size, b"00000000000\0",
        b"        ", b"0", bytes(100), _USTAR_MAGIC, bytes(64 + 16), prefix.ljust(155, b"\0"), bytes(12)))
    return head[:148] + b"%06o\0 " % sum(head) + head[156:]


def _split_ustar(name: str) -> tuple[bytes, bytes]:
    """tarfile's `_posix_split_name`: the first '/' that leaves a prefix <= 155 bytes and a name <= 100 bytes."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        prefix, rest = "/".join(parts[:i]).encode("utf-8"), "/".join(parts[i:]).encode("utf-8")
        if len(prefix) <= 155 and len(rest) <= 100:
            return prefix, rest
    raise ValueError(f"member name {name[:200]!r} is too long for a ustar header")


class Written(NamedTuple):
    """What a `TarWriter` wrote: the byte count and the hex sha256 (None when not asked for)."""

    size: int
    sha256: str | None


class TarWriter:
    """Members, one `add(name, data)` at a time, written to the binary file object `out` as they come (nothing is
    held); `close()` ends the archive and returns `Written`. `out` is not closed. As a context manager the archive
    is ended on a normal exit only (an exception leaves it unfinished, as tarfile does)."""

    def __init__(self, out: BinaryIO, *, sha256: bool = True):
        self._out = out
        self._digest = hashlib.sha256() if sha256 else None
        self.size = 0
        self.written: Written | None = None

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        if self._digest is not None:
            self._digest.update(data)
        self.size += len(data)

    def add(self, name: str, data: bytes) -> None:
        if self.written is not None:
            raise ValueError("tar already closed")
        size = len(data)
        header, pad = member_header(name, size), _ZEROS[: padded(size) - size]
        if size <= 1 << 16:
            self._write(b"".join((header, data, pad)))
        else:
            self._write(header)
            self._write(data)
            if pad:
                self._write(pad)

    def close(self) -> Written:
        if self.written is None:
            self._write(_ZEROS[: 2 * BLOCK])
            self._write(_ZEROS[: -(self.size % RECORD) % RECORD])
            self.written = Written(self.size, self._digest.hexdigest() if self._digest is not None else None)
        return self.written

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()


def write_tar(out: BinaryIO, members: Iterable[tuple[str, bytes]], *, sha256: bool = True) -> Written:
    """Write (name, data) `members`, in the order given, as one tar to `out`; returns its size and sha256."""
    tar = TarWriter(out, sha256=sha256)
    for name, data in members:
        tar.add(name, data)
    return tar.close()


def sample_members(samples: Iterable[dict[str, Any]], exts: Iterable[str] | None = None
                   ) -> Iterator[tuple[str, bytes]]:
    """WebDataset samples ({"__key__": key, ext: bytes}) as (`key.ext`, bytes) members, sample by sample: the
    extensions `exts` in that order (each sample must hold them all), or by default every extension, sorted."""
    order = None if exts is None else tuple(exts)
    for sample in samples:
        key = sample["__key__"]
        for ext in order if order is not None else sorted(k for k in sample if k != "__key__"):
            yield f"{key}.{ext}", sample[ext]


# ---------------------------------------------------------------- headers (both readers)


def looks_like_tar(head: bytes) -> bool:
    """Do these first bytes of a file start a ustar or GNU tar header (the magic at offset 257)?"""
    return head[_MAGIC_OFFSET:_MAGIC_OFFSET + 5] == b"ustar"


def _number(field_: bytes) -> int:
    """A header number: octal text (up to the first NUL, spaces around), or GNU base-256 (first byte 0x80)."""
    text = field_.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        pass
    if field_[:1] == b"\x80":
        return int.from_bytes(field_[1:], "big")
    raise TarError(f"bad tar header number {field_!r}")


def _header(hdr: bytes) -> tuple[bytes, int, str] | None:
    """(type flag, data size, name) of one 512-byte header block; None for a zero block (the archive's end).

    The checksum is the unsigned byte sum with the checksum field as spaces (or the signed sum of old tars, as
    tarfile accepts); the ustar prefix joins the name where the magic says ustar. Names decode as UTF-8 with bad
    bytes kept as lone surrogates (tarfile's `surrogateescape`). Raises TarError("bad")."""
    if hdr.count(0) == BLOCK:
        return None
    checksum = hdr[148:156]
    stored = _number(checksum)
    # the sum of the non-zero bytes (a header is mostly zeros) is 3x faster than a sum of all 512
    if stored != sum(hdr.translate(None, b"\0")) - sum(checksum) + 256 and stored != _signed_sum(hdr):
        raise TarError("tar header checksum mismatch (corrupt tar)")
    size = _number(hdr[124:136])
    if size < 0:
        raise TarError(f"negative member size {size}")
    name = hdr[:100].split(b"\0", 1)[0]
    if hdr[345] and hdr[257:262] == b"ustar":
        name = hdr[345:500].split(b"\0", 1)[0] + b"/" + name
    return hdr[156:157], size, name.decode("utf-8", "surrogateescape")


def _signed_sum(hdr: bytes) -> int:
    return sum(b - 256 if b > 127 else b for b in hdr[:148] + b"        " + hdr[156:])


def _extended_name(kind: bytes, data: bytes, current: str | None) -> tuple[str | None, int | None]:
    """(name, size) a GNU `L` long name or a pax `x` header gives the member after it; None where it gives none."""
    if kind == b"L":
        return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"), None
    records = _pax_records(data)
    path, size = records.get(b"path"), records.get(b"size")
    try:
        size_value = int(size) if size is not None else None
    except ValueError:
        raise TarError(f"bad pax size {size[:40]!r}") from None
    if size_value is not None and size_value < 0:
        raise TarError(f"bad pax size {size_value}")
    return (path.decode("utf-8", "surrogateescape") if path is not None else current), size_value


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """The `LENGTH KEY=VALUE\\n` records of a pax header (POSIX.1-2001); a malformed one raises TarError."""
    records, pos, end = {}, 0, len(data.rstrip(b"\0"))
    while pos < end:
        space = data.find(b" ", pos, pos + 20)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        stop = pos + length
        if length <= space - pos + 1 or stop > len(data) or data[stop - 1:stop] != b"\n":
            raise TarError("bad pax header record")
        key, eq, value = data[space + 1:stop - 1].partition(b"=")
        if not eq:
            raise TarError("bad pax header record")
        records[key] = value
        pos = stop
    return records


def _read_full(read: Callable[[int], bytes], n: int, first: bytes | None = None) -> bytes:
    """`n` bytes from `read`, fewer only at the end of the stream (streams may return short reads)."""
    data = read(n) if first is None else first
    if len(data) == n or not data:
        return data
    parts, got = [data], len(data)
    while got < n:
        more = read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _drop(read: Callable[[int], bytes], n: int) -> int:
    """Read and forget `n` bytes, at most SKIP_CHUNK held at a time; returns how many there were."""
    done = 0
    while done < n:
        got = len(read(min(SKIP_CHUNK, n - done)))
        if not got:
            break
        done += got
    return done


# ---------------------------------------------------------------- the tolerant reader


class Member(NamedTuple):
    """One tar member: `data` is None for members that are not regular files or are over `max_size` (unread)."""

    name: str          # as tarfile decodes it: UTF-8, undecodable bytes as lone surrogates
    size: int
    type: str          # "file", "dir", "link" (hard or symbolic) or "other" (devices, fifos, unknown flags)
    data: bytes | None

    @property
    def is_file(self) -> bool:
        return self.type == "file"


class Damage(NamedTuple):
    """Why an archive could not be read to its end; always the last item `iter_members` yields.

    `reason`: "empty" (no bytes at all), "truncated" (the stream ends inside a header or member data, or after a
    member without the end-of-archive block), "bad" (bytes that are no tar header: a shorter first block,
    a checksum or number that does not parse). `member`: the member whose data is cut short, or for damage at a
    header the member before it; None when nothing was read. `offset`: where in the archive it was found."""

    reason: str
    detail: str
    member: str | None
    offset: int


def iter_members(stream: BinaryIO, *, max_size: int | Callable[[str], int | None] | None = None
                 ) -> Iterator[Member | Damage]:
    """Every member of the tar read from `stream` (anything with `read(n)`), in order, then at most one `Damage`.

    `max_size` caps the data read per regular member: a number, or a function of the member's name giving its cap
    (None: no cap); bigger members come with `data=None`, skipped a chunk at a time. Only `stream`'s own errors
    (OSError, a decompressor's) raise; bad tar bytes give a `Damage`. Directories, links and other non-regular
    members come with `data=None` too. Memory: one member's data (or `SKIP_CHUNK`) at a time."""
    read = stream.read
    cap = max_size if callable(max_size) else (lambda name: max_size)
    offset, last = 0, None
    long_name, pax_size = None, None
    while True:
        hdr = _read_full(read, BLOCK)
        if len(hdr) < BLOCK:
            if offset == 0:
                yield (Damage("empty", "no bytes", None, 0) if not hdr else
                       Damage("bad", f"{len(hdr)} bytes, shorter than one tar header", None, 0))
            elif hdr:
                yield Damage("truncated", f"ends inside a header at byte {offset}", last, offset)
            else:
                yield Damage("truncated", f"ends at byte {offset} without the end-of-archive block", last, offset)
            return
        try:
            parsed = _header(hdr)
        except TarError as exc:
            yield Damage("bad", f"{exc} at byte {offset}", last, offset)
            return
        if parsed is None:
            return
        kind, size, name = parsed
        start, offset = offset, offset + BLOCK
        if kind in (b"L", b"x"):
            if size > EXTENDED_MAX:
                yield Damage("bad", f"a {size}-byte extended header at byte {start}", last, start)
                return
            data = _read_full(read, padded(size))
            offset += len(data)
            if len(data) < padded(size):
                yield Damage("truncated", f"ends inside an extended header at byte {offset}", last, offset)
                return
            try:
                long_name, size_now = _extended_name(kind, data[:size], long_name)
            except TarError as exc:
                yield Damage("bad", f"{exc} at byte {start}", last, start)
                return
            pax_size = size_now if size_now is not None else pax_size
            continue
        if kind in _SKIPPED_RECORDS:
            skipped = _drop(read, padded(size))
            offset += skipped
            if skipped < padded(size):
                yield Damage("truncated", f"ends inside an extended header at byte {offset}", last, offset)
                return
            continue
        if long_name is not None:
            name = long_name
        if pax_size is not None:
            size = pax_size
        long_name = pax_size = None
        type_ = _TYPES.get(kind, "other")
        if kind == b"\0" and name.endswith("/"):      # an old (v7) tar's directory
            type_ = "dir"
        if type_ == "dir":
            name = name.rstrip("/") or name
        last = name
        limit = cap(name) if type_ == "file" else None
        if type_ == "file" and (limit is None or size <= limit):
            data = _read_full(read, size)
            offset += len(data)
            if len(data) < size:
                yield Damage("truncated", f"ends inside the data of {name!r} at byte {offset}", name, offset)
                return
            yield Member(name, size, type_, data)
            rest = padded(size) - size
        else:
            yield Member(name, size, type_, None)
            rest = padded(size)
        skipped = _drop(read, rest)
        offset += skipped
        if skipped < rest:
            yield Damage("truncated", f"ends inside the data of {name!r} at byte {offset}", name, offset)
            return


def split_member_name(name: str) -> tuple[str, str]:
    """WebDataset's sample key and extension: `dir/000123.jpg` -> (`dir/000123`, `jpg`); the extension is
    everything after the first dot of the base name, lower-cased."""
    directory, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), (ext.lower() if dot else "")


@dataclass
class Sample:
    """Consecutive regular members sharing a key: `files` maps extension -> data (the first member of an extension
    wins), `skipped` holds the members over `max_size`, left unread (in `iter_members` order)."""

    key: str
    files: dict[str, bytes] = field(default_factory=dict)
    skipped: list[Member] = field(default_factory=list)


def group_samples(items: Iterable[Member | Damage]) -> Iterator[Sample | Member | Damage]:
    """`iter_members` output -> WebDataset samples (webdataset's `group_by_keys`): consecutive regular members
    named `KEY.EXT` with one KEY form one `Sample`.

    Directories are dropped. Any other member (links, devices, a regular member whose name has no key or no
    extension) comes through as it is, after the sample before it. A `Damage` comes through last; the sample
    it cuts into (truncation inside or right after one of its members: it may lack members) is dropped, the
    `Damage` standing for it; any other open sample comes first, whole."""
    sample: Sample | None = None
    for item in items:
        if isinstance(item, Damage):
            cut = (sample is not None and item.reason == "truncated" and item.member is not None
                   and split_member_name(item.member)[0] == sample.key)
            if sample is not None and not cut:
                yield sample
            yield item
            return
        if item.type == "dir":
            continue
        key, ext = split_member_name(item.name)
        if not item.is_file or not ext or not key.rpartition("/")[2]:
            if sample is not None:
                yield sample
                sample = None
            yield item
            continue
        if sample is not None and sample.key != key:
            yield sample
            sample = None
        if sample is None:
            sample = Sample(key)
        if item.data is None:
            sample.skipped.append(item)
        else:
            sample.files.setdefault(ext, item.data)
    if sample is not None:
        yield sample


# ---------------------------------------------------------------- the fast path


def iter_tar(f: BinaryIO, where: str, want: str | tuple[str, ...] = ".npy") -> Iterator[tuple[str, bytes | None]]:
    """(member name, bytes) for the regular members of our own shards, fast; bytes only for names ending in
    `want` (a suffix or a tuple of them), else None (their data is skipped, by seeking where `f` can). Other
    members are passed over.

    A tar that ends after a member without its end block is accepted (as GNU tar does, with a warning); a cut
    header or member, or a header that fails its checksum, raises TarError("`where`: ...")."""
    read = f.read
    long_name, pax_size = None, None
    try:
        while True:
            hdr = read(BLOCK)
            if len(hdr) != BLOCK:
                hdr = _read_full(read, BLOCK, hdr)
                if not hdr:
                    return
                if len(hdr) != BLOCK:
                    raise TarError("truncated tar header", "truncated")
            parsed = _header(hdr)
            if parsed is None:
                return  # end-of-archive block
            kind, size, name = parsed
            if kind in (b"L", b"x"):
                if size > EXTENDED_MAX:
                    raise TarError(f"a {size}-byte extended header")
                data = _exact(read, padded(size))[:size]
                long_name, size_now = _extended_name(kind, data, long_name)
                pax_size = size_now if size_now is not None else pax_size
                continue
            if kind not in _REGULAR:
                _skip(f, padded(size))  # directories, links, global pax headers
                if kind not in _SKIPPED_RECORDS:
                    long_name = pax_size = None
                continue
            if long_name is not None:
                name, long_name = long_name, None
            if pax_size is not None:
                size, pax_size = pax_size, None
            if name.endswith(want):
                data = read(size)
                if len(data) != size:
                    data = _exact(read, size, data)
                _skip(f, padded(size) - size)
                yield name, data
            else:
                _skip(f, padded(size))
                yield name, None
    except TarError as exc:
        raise TarError(f"{where}: {exc}", exc.reason) from None


def _exact(read: Callable[[int], bytes], n: int, first: bytes | None = None) -> bytes:
    data = _read_full(read, n, first)
    if len(data) != n:
        raise TarError(f"truncated tar (wanted {n} bytes, got {len(data)})", "truncated")
    return data


def _skip(f: BinaryIO, n: int) -> None:
    """Move `n` bytes on: a seek where the file allows it (a cut file is then found at the next header read)."""
    if n <= 0:
        return
    try:
        f.seek(n, io.SEEK_CUR)
        return
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    got = _drop(f.read, n)
    if got != n:
        raise TarError(f"truncated tar (wanted {n} bytes, got {got})", "truncated")
