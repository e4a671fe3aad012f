"""Image-text inputs -> `ImageText` / `Skip`: `iter_image_text_file(stream, path, columns)`.

Formats, by file name (plain or gzip; gzip is recognised by its magic bytes, whatever the name says):
- `.csv` / `.tsv`: url lists with a header row (img2dataset's `input_format` csv/tsv). Streamed row by row.
- `.jsonl` / `.ndjson` / `.json`: one JSON object per line, or a top-level JSON array (streamed element by
  element). Rows hold a url, or image bytes, or data-juicer style `images: [path]` relative to the file.
- `.parquet`: url lists or image bytes (a binary column, a list of one binary like data-juicer's `image_bytes`,
  or a Hugging Face `Image` struct `{bytes, path}`); read a batch at a time.
- `.tar` / `.tgz` / `.tar.gz`: WebDataset shards as img2dataset writes them: `KEY.jpg|jpeg|png|webp`, `KEY.txt`
  caption, `KEY.json` metadata (`url`, `caption`, ...); other small members (`KEY.cls`) go to `meta`. Streamed.

Column names follow img2dataset (`url_col="url"`, `caption_col="caption"`, `save_additional_columns`), with
case-insensitive fallbacks (`URL`, `TEXT`, `text`, `image_bytes`, `jpg`, `image`, `images`). `text_cols` names the
image's other texts (a title, an alt text, BriVL-style surrounding text: columns, or `KEY.json` fields in tars): they
travel with the pair as `texts`, and a row without a caption takes the first of them.

Keys: `path#<row from 0>` (CSV/TSV, Parquet, JSON array), `path#<line from 1>` (JSON lines) and
`path#<sample key>` (tars). Every input record gives one item; bad records give a `Skip` and reading goes on:
`no-image` (no url and no image), `bad-json`, `bad-row` (CSV), `multi-image` (a row with several images: not
a pair), `image-missing` (a referenced image file cannot be read), `image-path-outside-root` (a referenced
image path leads out of the input file's folder and the `image_roots`), `image-path-invalid` (a NUL in it),
`too-large`, `bad-member` (a tar member that is no sample file). File damage gives `damaged:*` (`truncated-tar`,
`bad-tar`, `bad-parquet`, `truncated`, `bad-gzip`, `no-image-column`); a truncated last record's one item is its
damage Skip. Nothing raises on bad data; I/O errors of `stream` do.
"""
from __future__ import annotations

import csv
import io
import math
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, BinaryIO, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from cleaners.document import encodable
from cleaners.image.record import ImageText
from pipelines.readers import jsonrecords
from pipelines.readers.bytesource import GZIP_MAGIC, ByteSource
from pipelines.readers.skip import Skip
from shards.tar import Damage, Sample, group_samples, iter_members, looks_like_tar, split_member_name

MAX_IMAGE_BYTES = 20_000_000
MAX_LINE_BYTES = 50_000_000       # one JSON line may carry base64 image data
MAX_SIDE_MEMBER_BYTES = 1 << 16   # small non-image tar members (cls, id) kept in meta as text
PARQUET_BATCH_ROWS = 256
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")   # img2dataset's output formats, in order of preference
URL_FALLBACKS = ("url",)
CAPTION_FALLBACKS = ("caption", "text")
IMAGE_FALLBACKS = ("image_bytes", "jpg", "image", "images", "png", "webp")
# data-juicer's special tokens (its `SpecialTokens.image` and `eoc`): markers, not caption text
_DJ_TOKENS = re.compile(r"<__dj__image>|<\|__dj__eoc\|>")
_COMPRESSION_SUFFIX = re.compile(r"\.(?:gz|gzip)$", re.IGNORECASE)
_SNIFF_BYTES = 262                 # enough for a tar header's magic (offset 257)

Opener = Callable[[str], BinaryIO]


@dataclass
class ImageTextColumns:
    """Where a row keeps its url, caption and image (img2dataset's option names); `from_dict` checks keys."""

    url_col: str = "url"
    caption_col: str = "caption"
    image_col: str | None = None                 # None: the first of IMAGE_FALLBACKS present
    save_additional_columns: list[str] = field(default_factory=list)
    text_cols: list[str] = field(default_factory=list)     # more texts of the image (title, alt, surrounding text)
    max_image_bytes: int = MAX_IMAGE_BYTES
    image_roots: list[str] = field(default_factory=list)   # folders image paths may lead to, beside the file's own

    @classmethod
    def from_dict(cls, params: dict[str, Any] | ImageTextColumns | None) -> ImageTextColumns:
        if isinstance(params, ImageTextColumns):
            return params
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown reader option(s) {sorted(unknown)}; known: {sorted(known)}")
        for name in ("save_additional_columns", "text_cols", "image_roots"):
            value = params.get(name) or []
            params[name] = [value] if isinstance(value, str) else list(value)
        params["image_roots"] = [root if "://" in root else os.path.abspath(root) for root in params["image_roots"]]
        return cls(**params)


def iter_image_text_file(stream: BinaryIO, path: str, columns: dict | ImageTextColumns | None = None, *,
                         opener: Opener | None = None) -> Iterator[ImageText | Skip]:
    """Every record of one image-text input file (see the module docstring).

    `opener(path) -> binary stream` reads image files that JSON/Parquet rows name by path (default: `open`);
    the Beam layer passes one built on `FileSystems.open` so that gs:// and s3:// work.
    """
    cols = ImageTextColumns.from_dict(columns)
    ctx = _Context(path, cols, opener or _open_local)
    head = stream.read(2) or b""
    src = ByteSource(stream, gzipped=head.startswith(GZIP_MAGIC), prefix=head)
    fmt = _format(path, src)
    if fmt is None:
        if not src.at_eof():
            yield Skip(f"{path}#0", path, "unknown-format", detail=repr(src.peek(16)))
        elif src.damage:
            yield Skip(f"{path}#0", path, src.damage[0], detail=src.damage[1])
        return
    reader = {"csv": _iter_csv, "tsv": _iter_csv, "jsonl": _iter_json, "parquet": _iter_parquet,
              "tar": _iter_tar}[fmt]
    yield from reader(src, ctx, fmt)


# ---- format --------------------------------------------------------------------------------------
def _format(path: str, src: ByteSource) -> str | None:
    name = path.lower()
    if name.endswith(".tgz"):
        return "tar"
    name = _COMPRESSION_SUFFIX.sub("", name)
    for fmt, suffixes in (("csv", (".csv",)), ("tsv", (".tsv",)), ("jsonl", (".jsonl", ".ndjson", ".json")),
                          ("parquet", (".parquet",)), ("tar", (".tar",))):
        if name.endswith(suffixes):
            return fmt
    head = src.peek(_SNIFF_BYTES)
    if head.startswith(b"PAR1"):
        return "parquet"
    if looks_like_tar(head):
        return "tar"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return "jsonl"
    return None


# ---- one row -> one item -------------------------------------------------------------------------
@dataclass
class _Context:
    path: str
    cols: ImageTextColumns
    opener: Opener

    def row_item(self, row: dict[str, Any], names: _Names, key: str) -> ImageText | Skip:
        """A url-list or image-bytes row (CSV, JSON, Parquet) -> a pair, or why it is none."""
        url = _as_text(row.get(names.url)) if names.url else ""
        caption = clean_caption(row.get(names.caption)) if names.caption else ""
        caption, texts = with_texts(caption, [row.get(name) for name in names.texts])
        meta = {name: _jsonable(row.get(name)) for name in names.extra}
        image, reason, detail = None, "", ""
        if names.image:
            image, image_url, reason, detail = self.resolve_image(row.get(names.image))
            url = url or image_url
        if reason:
            return Skip(key, self.path, reason, url, detail)
        if image is None and not url:
            return Skip(key, self.path, "no-image", detail="no url and no image in the row")
        return ImageText(key=key, source=self.path, caption=caption, url=url, image=image, meta=meta, texts=texts)

    def resolve_image(self, value: Any) -> tuple[bytes | None, str, str, str]:
        """(image bytes, url, skip reason, detail) from a cell: bytes, `{bytes, path}`, [one], a url or a path."""
        if isinstance(value, (list, tuple)):
            if len(value) > 1:
                return None, "", "multi-image", f"{len(value)} images in one row"
            value = value[0] if value else None
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if len(data) > self.cols.max_image_bytes:
                return None, "", "too-large", f"{len(data)} image bytes"
            return (data or None), "", "", ""
        if not isinstance(value, str) or not value.strip():
            return None, "", "", ""
        value = value.strip()
        if value.lower().startswith(("http://", "https://")):
            return None, value, "", ""
        return self.read_image_file(value)

    @cached_property
    def roots(self) -> list[str]:
        """The folders image paths may lead to, normalised once per file."""
        return image_roots(self.path, self.cols.image_roots)

    def read_image_file(self, relative: str) -> tuple[bytes | None, str, str, str]:
        if "\0" in relative:
            return None, "", "image-path-invalid", repr(relative[:200])
        target = inside_roots(resolve_path(self.path, relative), self.roots)
        if target is None:
            return None, "", "image-path-outside-root", relative[:200]
        try:
            with self.opener(target) as fh:
                data = fh.read(self.cols.max_image_bytes + 1)
        except (OSError, ValueError) as exc:
            return None, "", "image-missing", f"{target}: {type(exc).__name__}"
        if len(data) > self.cols.max_image_bytes:
            return None, "", "too-large", f"{target}: more than {self.cols.max_image_bytes} bytes"
        return data, "", "", ""


@dataclass
class _Names:
    """The actual column names of one file (or JSON row) for url, caption, image and the saved extras."""

    url: str | None
    caption: str | None
    image: str | None
    extra: list[str]
    texts: list[str]

    @classmethod
    def find(cls, available: list[str], cols: ImageTextColumns) -> _Names:
        lower = {}
        for name in available:
            lower.setdefault(name.lower(), name)

        def pick(candidates: tuple[str, ...]) -> str | None:
            for candidate in candidates:
                if candidate in available:
                    return candidate
                if candidate.lower() in lower:
                    return lower[candidate.lower()]
            return None

        image_candidates = (cols.image_col,) if cols.image_col else IMAGE_FALLBACKS
        extra = [name for name in cols.save_additional_columns if name in available]
        texts = [found for name in cols.text_cols if (found := pick((name,)))]
        return cls(pick((cols.url_col,) + URL_FALLBACKS), pick((cols.caption_col,) + CAPTION_FALLBACKS),
                   pick(image_candidates), extra, texts)


def clean_caption(value: Any) -> str:
    """A caption cell as text: None/NaN -> "", data-juicer's `<__dj__image>` markers removed, ends stripped."""
    return _DJ_TOKENS.sub("", _as_text(value)).strip()


def with_texts(caption: str, cells: list[Any]) -> tuple[str, list[tuple[str, str]]]:
    """The caption and the image's other texts (`text_cols` cells, cleaned like captions; empty ones and repeats
    left out). A row without a caption takes its first other text as the caption."""
    texts: list[str] = []
    for cell in cells:
        text = clean_caption(cell)
        if text and text != caption and text not in texts:
            texts.append(text)
    if not caption and texts:
        caption = texts.pop(0)
    return caption, [(text, "") for text in texts]


def resolve_path(file_path: str, relative: str) -> str:
    """`relative` (a path named inside `file_path`) as a path or URL; `gs://b/d/x.jsonl` + `../i.png` -> `gs://b/i.png`."""
    scheme, sep, rest = file_path.partition("://")
    if not sep:
        scheme, rest = "", file_path
    if relative.startswith("/") or "://" in relative:
        return relative
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rest), relative))
    return f"{scheme}://{joined}" if sep else joined


def image_roots(file_path: str, extra: list[str]) -> list[str]:
    """The folder of `file_path` and the `extra` roots: local ones with symlinks resolved, remote ones normalised."""
    folder = posixpath.dirname(file_path) if "://" in file_path else (os.path.dirname(file_path) or ".")
    return [_normal_url(root) if "://" in root else os.path.realpath(root) for root in (folder, *extra)]


def inside_roots(target: str, roots: list[str]) -> str | None:
    """`target` with `..` and (local) symlinks resolved, if it lies under one of `roots`; else None."""
    if "://" in target:
        target, sep = _normal_url(target), "/"
        roots = [root for root in roots if "://" in root]
    else:
        target, sep = os.path.realpath(target), os.sep
        roots = [root for root in roots if "://" not in root]
    return target if any(target.startswith(root.rstrip(sep) + sep) for root in roots) else None


def _normal_url(url: str) -> str:
    """`gs://b/d/../x` -> `gs://b/x`; a `..` above the bucket stays in (`gs://../x`) and so matches no root."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{posixpath.normpath(rest)}"


def _open_local(path: str) -> BinaryIO:
    return open(path, "rb")


def _as_text(value: Any) -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return value.strip() if isinstance(value, str) else str(value)


def _jsonable(value: Any) -> Any:
    """A value json.dumps can write: bytes dropped (None), NaN -> None, containers converted."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return None if isinstance(value, (bytes, bytearray, memoryview)) else str(value)


def _damage_item(src: ByteSource, ctx: _Context, key: str) -> Iterator[Skip]:
    if src.damage:
        yield Skip(key, ctx.path, src.damage[0], detail=src.damage[1])


# ---- CSV / TSV -----------------------------------------------------------------------------------
class _SourceStream(io.RawIOBase):
    """A ByteSource as a raw binary stream, for csv (through TextIOWrapper), Parquet's spool and tar members."""

    def __init__(self, src: ByteSource) -> None:
        self._src = src

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._src.take(size) if size is not None and size >= 0 else self.readall()

    def readinto(self, buffer) -> int:
        data = self._src.take(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _iter_csv(src: ByteSource, ctx: _Context, fmt: str) -> Iterator[ImageText | Skip]:
    text = io.TextIOWrapper(io.BufferedReader(_SourceStream(src)), encoding="utf-8-sig", errors="replace",
                            newline="")
    lines = _CappedLines(text, MAX_LINE_BYTES)
    rows = csv.reader(lines, delimiter="\t" if fmt == "tsv" else ",")
    header = _next_row(rows)
    if not isinstance(header, list) or not header:
        yield Skip(f"{ctx.path}#0", ctx.path, "damaged:no-header", detail=str(header or "empty file")[:200])
        yield from _damage_item(src, ctx, f"{ctx.path}#0")
        return
    names = _Names.find(header, ctx.cols)
    if names.url is None and names.image is None:
        yield Skip(f"{ctx.path}#0", ctx.path, "damaged:no-image-column", detail=f"columns: {header[:20]}")
        return
    index, cut = 0, 0
    while True:
        row = _next_row(rows)
        while cut < lines.cut:            # over-long lines reach csv as blank lines: each is a counted drop here
            cut += 1
            yield Skip(f"{ctx.path}#{index}", ctx.path, "too-large", detail=f"line longer than {MAX_LINE_BYTES}")
            index += 1
        if row is None:
            break
        key = f"{ctx.path}#{index}"
        index += 1
        if isinstance(row, str):
            yield Skip(key, ctx.path, "bad-row", detail=row)
        elif len(row) != len(header):
            yield Skip(key, ctx.path, "bad-row", detail=f"{len(row)} fields, header has {len(header)}")
        else:
            yield ctx.row_item(dict(zip(header, row)), names, key)
    yield from _damage_item(src, ctx, f"{ctx.path}#{index}")


class _CappedLines:
    """The lines of a text stream for csv, each at most `limit` characters: the rest of a longer line is skipped
    without being held, the line becomes blank, and `cut` counts it."""

    def __init__(self, text: io.TextIOBase, limit: int) -> None:
        self.text, self.limit, self.cut = text, limit, 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.limit)
        if not line:
            raise StopIteration
        if len(line) >= self.limit and not line.endswith("\n"):
            while (rest := self.text.readline(1 << 20)) and not rest.endswith("\n"):
                pass
            self.cut += 1
            return "\n"
        return line


def _next_row(rows) -> list[str] | str | None:
    """The next non-empty row, a csv error message, or None at the end."""
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return None
        except csv.Error as exc:
            return f"csv: {exc}"[:200]
        if row:
            return row


# ---- JSON lines / JSON array ---------------------------------------------------------------------
def _iter_json(src: ByteSource, ctx: _Context, fmt: str) -> Iterator[ImageText | Skip]:
    """JSON lines, or a top-level JSON array streamed element by element (`jsonrecords`)."""
    if src.peek(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        items = ((key, value) for key, _, value in jsonrecords.iter_json_document(src, ctx.path, MAX_LINE_BYTES))
    else:
        items = jsonrecords.iter_json_lines(src, ctx.path, MAX_LINE_BYTES)
    for key, value in items:
        yield value if isinstance(value, Skip) else _json_item(value, ctx, key)


def _json_item(record: Any, ctx: _Context, key: str) -> ImageText | Skip:
    if not isinstance(record, dict):
        return Skip(key, ctx.path, "bad-json", detail=f"a JSON {type(record).__name__}, not an object")
    return ctx.row_item(record, _Names.find(list(record), ctx.cols), key)


# ---- Parquet -------------------------------------------------------------------------------------
def _iter_parquet(src: ByteSource, ctx: _Context, fmt: str) -> Iterator[ImageText | Skip]:
    """Parquet needs random access (its footer is at the end): the decoded bytes are spooled to a temp file."""
    with tempfile.TemporaryFile(prefix="wudao-image-parquet-") as spool:
        shutil.copyfileobj(_SourceStream(src), spool, 1 << 20)
        if src.damage:
            yield Skip(f"{ctx.path}#0", ctx.path, src.damage[0], detail=src.damage[1])
            return
        spool.seek(0)
        yield from _parquet_rows(spool, ctx)


def _parquet_rows(handle: BinaryIO, ctx: _Context) -> Iterator[ImageText | Skip]:
    row = 0
    try:
        pf = pq.ParquetFile(handle)
        names = _Names.find(list(pf.schema_arrow.names), ctx.cols)
        if names.url is None and names.image is None:
            yield Skip(f"{ctx.path}#0", ctx.path, "damaged:no-image-column",
                       detail=f"columns: {pf.schema_arrow.names[:20]}")
            return
        wanted = list(dict.fromkeys(n for n in (names.url, names.caption, names.image, *names.extra) if n))
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
            values = {name: batch.column(name).to_pylist() for name in wanted}
            for i in range(batch.num_rows):
                yield ctx.row_item({name: col[i] for name, col in values.items()}, names, f"{ctx.path}#{row}")
                row += 1
    except (pa.ArrowException, OSError, ValueError) as exc:
        yield Skip(f"{ctx.path}#{row}", ctx.path, "damaged:bad-parquet", detail=str(exc)[:200])


# ---- WebDataset tar ------------------------------------------------------------------------------
def _iter_tar(src: ByteSource, ctx: _Context, fmt: str) -> Iterator[ImageText | Skip]:
    """Members grouped into samples by key (consecutive members with one key, as WebDataset does), read by
    `shards.tar`: images over `max_image_bytes` and other members over MAX_SIDE_MEMBER_BYTES stay unread."""
    def cap(name: str) -> int:
        return ctx.cols.max_image_bytes if split_member_name(name)[1] in IMAGE_EXTENSIONS else MAX_SIDE_MEMBER_BYTES

    for item in group_samples(iter_members(_SourceStream(src), max_size=cap)):
        if isinstance(item, Sample):
            yield _sample_item(item, ctx)
        elif isinstance(item, Damage):
            yield _tar_damage(src, ctx, item)
        else:
            name = encodable(item.name)       # tar names decode bad bytes to lone surrogates
            detail = "member name has no key.extension" if item.is_file else "not a regular file"
            yield Skip(f"{ctx.path}#{name}", ctx.path, "bad-member", detail=detail)


def _tar_damage(src: ByteSource, ctx: _Context, damage: Damage) -> Skip:
    """The Skip of a cut or corrupt tar. Keyed by the sample it cuts (whose one item it is), `<member>+` after
    the last whole member for a corrupt header, `0` at the start; gzip damage under the tar names the reason."""
    if damage.member is None:
        where = "0"
    elif damage.reason == "bad":
        where = encodable(damage.member) + "+"    # the sample before the bad header is whole
    else:
        where = encodable(split_member_name(damage.member)[0])
    if src.damage and src.damage[0] != "damaged:truncated":
        return Skip(f"{ctx.path}#{where}", ctx.path, src.damage[0], detail=src.damage[1])
    reason = "truncated" if src.damage else damage.reason
    return Skip(f"{ctx.path}#{where}", ctx.path, f"damaged:{reason}-tar", detail=damage.detail[:200])


def _sample_item(sample: Sample, ctx: _Context) -> ImageText | Skip:
    key = f"{ctx.path}#{encodable(sample.key)}"
    info: dict[str, Any] = {}
    if "json" in sample.files:
        try:
            parsed = jsonrecords.parse_json(sample.files["json"])
            info = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            info = {}
    url = _as_text(info.get("url"))
    image_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in sample.files), None)
    if image_ext is None:
        too_large = next((m for m in sample.skipped if split_member_name(m.name)[1] in IMAGE_EXTENSIONS), None)
        if too_large is not None:
            return Skip(key, ctx.path, "too-large", url, f"{encodable(too_large.name)}: {too_large.size} bytes")
        return Skip(key, ctx.path, "no-image", url, f"members: {sorted(sample.files)}")
    caption = sample.files.get("txt")
    caption = clean_caption(caption) if caption is not None else clean_caption(info.get("caption"))
    caption, texts = with_texts(caption, [info.get(name) for name in ctx.cols.text_cols])
    meta = {k: _jsonable(v) for k, v in info.items() if k not in ("url", "caption", *ctx.cols.text_cols)}
    for ext, data in sample.files.items():
        if ext not in IMAGE_EXTENSIONS and ext not in ("txt", "json"):
            meta.setdefault(ext, data.decode("utf-8", "replace").strip())
    return ImageText(key=key, source=ctx.path, caption=caption, url=url, image=sample.files[image_ext], meta=meta,
                     texts=texts)
