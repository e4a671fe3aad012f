"""Records cross the dedup shuffles compressed: `pack` before the shuffle, `unpack` after it.

Every dedup stage moves whole records (or their text) through a shuffle keyed by hash or id. Beam's default
coder writes a dict's strings raw, so the local runner holds every shuffled record at full size in its buffers,
and a remote runner's shuffle service bills for every byte. `pack` turns a JSON value into compact JSON
compressed with zlib level 1 (web text shrinks about 3x, for some 40 µs per 5 KB record here); `unpack` gives the
value back. Values must be JSON values — dicts with string keys, lists (a tuple comes back as a list), strings,
numbers, booleans, None — which every corpus record is, since it is written out as JSON.
"""
from __future__ import annotations

import json
import zlib
from typing import Any


def pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), 1)


def unpack(packed: bytes) -> Any:
    return json.loads(zlib.decompress(packed).decode("utf-8"))
