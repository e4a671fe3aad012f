"""A bounded look-ahead buffer over a raw binary stream, undoing gzip member by member.

Record parsers (WARC, ARC, JSON lines) read through `ByteSource` so that
- memory stays bounded by one record plus one read chunk, whatever the file size,
- plain files, per-record gzip (one member per record, the Common Crawl layout) and whole-file gzip are one
  decoded stream, and a gzip member may even end in the middle of a record (warcio's `example-wrong-chunks`),
- positions are stable keys: the byte offset in a plain file; in a gzip file the compressed offset of the member
  (what Common Crawl's CDX index calls `offset`), plus `+N` decoded bytes when the position is inside a member.

Damage (a gzip stream that is cut short or corrupt) never raises: the stream just ends and `damage` says why.
A reader that can go on after damage calls `resume()`: after a corrupt member or non-gzip bytes between members it
skips to the next gzip member that decodes (searching at most the last `KEEP_RAW` raw bytes back, streaming ahead)
and the stream goes on from there, positions still naming compressed member offsets. A cut stream cannot resume.
"""
from __future__ import annotations

import re
import zlib
from collections import deque
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
MEMBER_MAGIC = b"\x1f\x8b\x08"    # a gzip member with deflate data: what a resync looks for
READ_CHUNK = 1 << 18          # raw bytes per read
DECODE_CHUNK = 1 << 18        # decoded bytes per zlib call: bounds memory on decompression bombs
_COMPACT_AT = 1 << 20
KEEP_RAW = 1 << 20            # raw bytes kept behind the decompressor, so a resync can look back into a bad member
PROBE_BYTES = 1 << 12         # raw bytes a resync candidate must decode without error
_PADDING = b"\x00\r\n\t "


class ByteSource:
    """Decoded bytes of `raw` (gunzipped when `gzipped`), with look-ahead, search and position keys.

    `prefix` holds bytes already read from `raw` (format sniffing), which come first.
    """

    def __init__(self, raw: BinaryIO, *, gzipped: bool, prefix: bytes = b"") -> None:
        self._raw = raw
        self._prefix = prefix
        self._gzipped = gzipped
        self._buf = bytearray()
        self._cur = 0                 # index in _buf of the next unread byte
        self._base = 0                # decoded offset of _buf[0]
        self._eof = False
        self._raw_read = 0            # raw bytes taken from the stream so far
        self._pending = b""           # raw bytes not yet given to the decompressor
        self._dec: zlib._Decompress | None = None
        self._members: deque[tuple[int, int]] = deque()   # (decoded offset, compressed offset) of member starts
        self.damage: tuple[str, str] | None = None        # (reason, detail) when the stream ended on damage
        self._recent: deque[bytes] = deque()              # the last raw chunks read (at least KEEP_RAW bytes)
        self._recent_bytes = 0
        self._resync_from: int | None = None              # compressed offset a `resume()` searches from

    # ---- filling -------------------------------------------------------------------------------
    def _read_raw(self) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
        else:
            data = self._raw.read(READ_CHUNK) or b""
        self._raw_read += len(data)
        if self._gzipped and data:
            self._recent.append(data)
            self._recent_bytes += len(data)
            while self._recent_bytes - len(self._recent[0]) >= KEEP_RAW:
                self._recent_bytes -= len(self._recent.popleft())
        return data

    def _fill(self) -> bool:
        """Append decoded bytes to the buffer; False when nothing more will come."""
        if self._eof:
            return False
        if not self._gzipped:
            data = self._read_raw()
            if not data:
                self._eof = True
                return False
            self._buf += data
            return True
        while True:
            data = self._pending or self._read_raw()
            self._pending = b""
            if not data:
                if self._dec is not None:
                    self.damage = ("damaged:truncated", "gzip stream ends inside a member")
                self._eof = True
                return False
            if self._dec is None:
                data = self._member_start(data)
                if not data.startswith(GZIP_MAGIC):
                    return self._not_a_member(data)
                self._dec = zlib.decompressobj(31)
                self._members.append((self._base + len(self._buf), self._raw_read - len(data)))
            try:
                out = self._dec.decompress(data, DECODE_CHUNK)
            except zlib.error as exc:
                member = self._members[-1][1]
                self.damage = ("damaged:bad-gzip", f"{exc} in member at {member}")
                self._resync_from = member + 1
                self._eof = True
                return False
            if self._dec.eof:
                self._pending = self._dec.unused_data
                self._dec = None
            else:
                self._pending = self._dec.unconsumed_tail
            if out:
                self._buf += out
                return True

    def _member_start(self, data: bytes) -> bytes:
        """`data` (raw bytes after a member) with padding dropped and at least enough read to see a magic."""
        while True:
            data = data.lstrip(_PADDING)
            if len(data) >= len(MEMBER_MAGIC):
                return data
            more = self._read_raw()
            if not more:
                return data
            data += more

    def _not_a_member(self, data: bytes) -> bool:
        """Bytes after a complete member that do not start another one: the end, or damage when not padding."""
        if data:
            offset = self._raw_read - len(data)
            self.damage = ("damaged:bad-gzip", f"non-gzip bytes at compressed offset {offset}")
            self._resync_from = offset
        self._eof = True
        return False

    def resume(self) -> bool:
        """After gzip damage, go on at the next gzip member that decodes; False when there is none (or nothing to
        resume: no damage, or a stream cut short). Decoded bytes of the damaged part not read yet are dropped."""
        start, self._resync_from = self._resync_from, None
        if start is None:
            return False
        self._advance(len(self._buf) - self._cur)
        self._dec, self._pending = None, b""
        window = b"".join(self._recent)
        window = window[max(0, start - (self._raw_read - len(window))):]
        while True:
            found = window.find(MEMBER_MAGIC)
            if found < 0:
                more = self._read_raw()
                if not more:
                    return False
                window = window[-(len(MEMBER_MAGIC) - 1):] + more
                continue
            while len(window) - found < PROBE_BYTES and (more := self._read_raw()):
                window += more
            if _decodes(window[found : found + PROBE_BYTES]):
                self._pending = window[found:]
                self.damage, self._eof = None, False
                return True
            window = window[found + 1 :]

    def fill_to(self, n: int) -> int:
        """Buffer at least `n` unread bytes if the stream has them; returns how many are buffered."""
        while len(self._buf) - self._cur < n and self._fill():
            pass
        return len(self._buf) - self._cur

    # ---- reading -------------------------------------------------------------------------------
    def tell(self) -> int:
        """Decoded offset of the next unread byte."""
        return self._base + self._cur

    def at_eof(self) -> bool:
        return self.fill_to(1) == 0

    def position_key(self, pos: int | None = None) -> str:
        """Stable name of decoded offset `pos` (default: here): see the module docstring."""
        pos = self.tell() if pos is None else pos
        if not self._gzipped:
            return str(pos)
        members = self._members
        here = self.tell()
        while len(members) > 1 and members[1][0] <= here:
            members.popleft()           # positions before here are never asked for again
        if not members or members[0][0] > pos:
            return f"0+{pos}"
        start, comp = members[0]
        for member_start, member_comp in members:
            if member_start > pos:
                break
            start, comp = member_start, member_comp
        if pos == start:
            return str(comp)
        return f"{comp}+{pos - start}"

    def peek(self, n: int) -> bytes:
        self.fill_to(n)
        return bytes(self._buf[self._cur : self._cur + n])

    def peek_at(self, offset: int, n: int) -> bytes:
        """Up to `n` already-buffered bytes starting `offset` bytes from here (call `fill_to` first)."""
        start = self._cur + offset
        return bytes(self._buf[start : start + n])

    def take(self, n: int) -> bytes:
        """Read and return up to `n` bytes (fewer only at the end of the stream)."""
        self.fill_to(n)
        out = bytes(self._buf[self._cur : self._cur + n])
        self._advance(len(out))
        return out

    def drop(self, n: int) -> int:
        """Skip up to `n` bytes without holding them all; returns how many were skipped."""
        done = 0
        while done < n:
            have = self.fill_to(1)
            if not have:
                break
            step = min(have, n - done)
            self._advance(step)
            done += step
        return done

    def skip_until(self, pattern: re.Pattern[bytes], n: int, limit: int) -> tuple[int, bool]:
        """Skip up to `n` bytes, holding at most `limit` at a time, but stop at the first match of `pattern` that
        starts within them. Returns (bytes skipped, whether it stopped at a match)."""
        done = 0
        while done < n:
            left = n - done
            window = min(limit, left + 64)                  # 64: a match may start inside and end after
            found = self.search(pattern, window)
            if 0 <= found < left:
                return done + self.drop(found), True
            last = window == left + 64 or self.fill_to(window) < window
            step = left if last else max(window - 64, 1)    # keep an overlap: a match may straddle the cut
            dropped = self.drop(step)
            done += dropped
            if dropped < step:
                break
        return done, False

    def _advance(self, n: int) -> None:
        self._cur += n
        if self._cur >= _COMPACT_AT and self._cur * 2 >= len(self._buf):
            del self._buf[: self._cur]
            self._base += self._cur
            self._cur = 0

    def readline(self, limit: int) -> bytes:
        """Bytes up to and including the next LF; at most `limit` bytes (then without the LF)."""
        scanned = 0
        while True:
            end = self._buf.find(b"\n", self._cur + scanned, self._cur + limit)
            if end >= 0:
                return self.take(end + 1 - self._cur)
            scanned = len(self._buf) - self._cur
            if scanned >= limit or not self._fill():
                return self.take(limit)

    def skip_bytes(self, run: re.Pattern[bytes]) -> None:
        """Skip a run of bytes matching `run` (a pattern like rb"[\\r\\n]*": record separators)."""
        while self.fill_to(1):
            end = run.match(self._buf, self._cur).end()
            more_left = end < len(self._buf)
            self._advance(end - self._cur)
            if more_left:
                return

    def startswith(self, prefix: bytes) -> bool:
        self.fill_to(len(prefix))
        return self._buf.startswith(prefix, self._cur)

    def search(self, pattern: re.Pattern[bytes], limit: int, start: int = 0) -> int:
        """Offset (from here) of the first match of `pattern` starting at or after `start`, looking no further
        than `limit` bytes ahead; -1 if none. Everything looked at stays buffered (so `limit` bounds memory)."""
        scanned = start
        while True:
            have = self.fill_to(min(limit, scanned + READ_CHUNK))
            end = self._cur + min(have, limit)
            m = pattern.search(self._buf, self._cur + max(start, scanned - 64), end)   # 64: a match may straddle fills
            if m:
                return m.start() - self._cur
            if have >= limit or have <= scanned:
                return -1
            scanned = have


def _decodes(head: bytes) -> bool:
    """Do these first raw bytes of a would-be gzip member decompress without error?"""
    try:
        zlib.decompressobj(31).decompress(head, DECODE_CHUNK)
    except zlib.error:
        return False
    return True
