#!/usr/bin/env python
"""Build the embedded image-text sample (`pipelines/data/image_sample/`) that `wudao demo` and the end-to-end
tests run on.

    python scripts/build_image_sample.py [--samples ../shared/corpus-samples] [--output DIR]

Procedural pictures (shapes, colours, stripes, rings drawn with Pillow, with a gradient and a little noise so the
JPEGs behave like photos) with matching English, Chinese and bilingual captions, four real photos (data-juicer's
demo images, Apache-2.0, downscaled to <= 320 px; Pillow's hopper.jpg, HPND, unchanged), and one planted case for
every image, caption, download and dedup rule. `expected.json` says what must happen to every record.

Deterministic: fixed seeds, tar members with mtime 0 / uid 0 / mode 0644 sorted by name, parquet without
compression or statistics. The bytes depend on the Pillow (libjpeg, zlib), numpy and pyarrow versions, which
`expected.json` records under `built_with`. README.md is written by hand, not by this script.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SEED = 20240617
TAR, PARQUET, TSV = "shapes-000.tar", "photos.parquet", "urls.tsv"
SERVED = "served"
JPEG_QUALITY = 80                   # procedural pictures
PHOTO_QUALITY = 85
SUPERSAMPLE = 2                     # draw at 2x, then downscale: anti-aliased edges like a real picture
PHOTO_MAX_SIDE = 320
DJ_DATA = "image_text/data-juicer_demo/tests/ops/data"
DJ_COMMIT = "c07c2d793cd85f7d5151ddc560fe92a0b6a0ba4b"
HOPPER = "image_text/odd_images_pillow/hopper.jpg"

# name -> (Chinese name, RGB)
COLOURS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "red": ("红色", (206, 38, 42)), "blue": ("蓝色", (38, 78, 196)), "green": ("绿色", (46, 150, 62)),
    "yellow": ("黄色", (240, 206, 36)), "white": ("白色", (242, 242, 238)), "black": ("黑色", (22, 22, 26)),
    "orange": ("橙色", (240, 132, 28)), "purple": ("紫色", (120, 48, 160)), "pink": ("粉色", (236, 128, 176)),
    "gray": ("灰色", (128, 128, 128)), "dark blue": ("深蓝色", (18, 30, 92)), "cyan": ("青色", (0, 176, 214)),
    "magenta": ("品红色", (196, 0, 136)), "light blue": ("浅蓝色", (150, 196, 236)),
}
SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "五角星", "hexagon": "六边形",
          "diamond": "菱形", "cross": "十字", "rings": "同心圆环", "stripes": "条纹", "two circles": "两个圆形"}


@dataclass(frozen=True)
class Drawing:
    """One procedural picture: `shape` in colour `fg` on a `bg` background, `width` x `height` pixels."""

    shape: str
    fg: str
    bg: str
    width: int
    height: int
    seed: int
    vertical: bool = True          # stripes only


@dataclass
class Sample:
    """One input record of the sample and what must happen to it."""

    file: str
    name: str                      # tar sample key, or the served file name for url rows
    caption: str
    image: bytes | None            # None: a url row whose file is not served (404)
    ext: str = "jpg"
    url: str = ""
    case: str = ""
    expect: dict[str, Any] | None = None


# ---------------------------------------------------------------- drawing

def _polygon(cx: float, cy: float, radius: float, points: int, inner: float | None,
             turn: float) -> list[tuple[float, float]]:
    """Regular polygon (or star when `inner` is set) around (cx, cy), first vertex at angle `turn` degrees."""
    vertices, count = [], points * 2 if inner else points
    for i in range(count):
        r = radius if not inner or i % 2 == 0 else radius * inner
        a = math.radians(turn + 360.0 * i / count)
        vertices.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return vertices


def _draw_shape(draw: ImageDraw.ImageDraw, d: Drawing, w: int, h: int, rng: random.Random) -> None:
    fg, bg = COLOURS[d.fg][1], COLOURS[d.bg][1]
    side = min(w, h)
    cx = w / 2 + rng.uniform(-0.12, 0.12) * w
    cy = h / 2 + rng.uniform(-0.12, 0.12) * h
    r = side * rng.uniform(0.26, 0.36)
    if d.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif d.shape == "two circles":
        for dx in (-0.25, 0.25):
            x, y, rr = w / 2 + dx * w, h / 2 + rng.uniform(-0.2, 0.2) * h, side * 0.18
            draw.ellipse((x - rr, y - rr, x + rr, y + rr), fill=fg)
    elif d.shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif d.shape == "triangle":
        draw.polygon(_polygon(cx, cy + r * 0.2, r * 1.1, 3, None, -90), fill=fg)
    elif d.shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.15, 5, 0.45, -90), fill=fg)
    elif d.shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, None, 0), fill=fg)
    elif d.shape == "diamond":
        draw.polygon([(cx, cy - r * 1.2), (cx + r * 0.75, cy), (cx, cy + r * 1.2), (cx - r * 0.75, cy)], fill=fg)
    elif d.shape == "cross":
        arm = r * 0.32
        draw.rectangle((cx - r, cy - arm, cx + r, cy + arm), fill=fg)
        draw.rectangle((cx - arm, cy - r, cx + arm, cy + r), fill=fg)
    elif d.shape == "rings":
        step = r / 4
        for i in range(4, 0, -1):
            rr = step * i
            draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=fg if i % 2 == 0 else bg)
    elif d.shape == "stripes":
        period = side * rng.uniform(0.12, 0.2)
        extent = w if d.vertical else h
        k = 0
        while k * period < extent:
            a, b = k * period, k * period + period / 2
            draw.rectangle((a, 0, b, h) if d.vertical else (0, a, w, b), fill=fg)
            k += 1
    else:
        raise ValueError(f"unknown shape {d.shape!r}")


def render(d: Drawing, noise: float = 2.0) -> Image.Image:
    """The RGB picture of `d`: a vertical background gradient, the shape, anti-aliasing and Gaussian noise."""
    rng = random.Random(d.seed)
    w, h = d.width * SUPERSAMPLE, d.height * SUPERSAMPLE
    bg = np.array(COLOURS[d.bg][1], dtype=np.float64)
    shade = np.linspace(1.06, 0.88, h)[:, None, None]          # lighter at the top, like a lit backdrop
    canvas = Image.fromarray(np.clip(bg[None, None, :] * shade * np.ones((h, w, 1)), 0, 255).astype(np.uint8), "RGB")
    _draw_shape(ImageDraw.Draw(canvas), d, w, h, rng)
    small = canvas.resize((d.width, d.height), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    pixels = pixels + np.random.default_rng(d.seed).normal(0.0, noise, pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def jpeg(img: Image.Image, quality: int = JPEG_QUALITY, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, **params)
    return out.getvalue()


def png(img: Image.Image, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG", **params)
    return out.getvalue()


# ---------------------------------------------------------------- captions

def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def en(d: Drawing) -> str:
    if d.shape == "stripes":
        return f"{d.fg} and {d.bg} {'vertical' if d.vertical else 'horizontal'} stripes"
    if d.shape == "rings":
        return f"{d.fg} concentric rings on {_a(d.bg)} background"
    if d.shape == "two circles":
        return f"two {d.fg} circles on {_a(d.bg)} background"
    return f"{_a(d.fg)} {d.shape} on {_a(d.bg)} background"


def zh(d: Drawing) -> str:
    fg, bg = COLOURS[d.fg][0], COLOURS[d.bg][0]
    if d.shape == "stripes":
        return f"{fg[:-1]}{bg[:-1]}相间的{'竖' if d.vertical else '横'}条纹"
    if d.shape == "two circles":
        return f"{bg}背景上的两个{fg}圆形"
    return f"{bg}背景上的{fg}{SHAPES[d.shape]}"


def bilingual(d: Drawing) -> str:
    """"红色圆形 a red circle": Chinese name first, then at least three English words (the caption minimum)."""
    return f"{COLOURS[d.fg][0]}{SHAPES[d.shape]} {_a(d.fg)} {d.shape}"


# ---------------------------------------------------------------- planted images

def cmyk_jpeg(img: Image.Image) -> bytes:
    return jpeg(img.convert("CMYK"))


def exif_rotated_jpeg(upright: Image.Image) -> bytes:
    """Pixels stored turned a quarter to the left, with EXIF orientation 6 ("rotate 90 CW to display")."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())


def palette_png(d: Drawing) -> bytes:
    """A palette PNG whose background index is fully transparent (tRNS), the shape opaque."""
    img = Image.new("P", (d.width, d.height), 0)
    palette = [0, 0, 0, *COLOURS[d.fg][1], *COLOURS["black"][1]]
    img.putpalette(palette + [0] * (768 - len(palette)))
    draw, rng = ImageDraw.Draw(img), random.Random(d.seed)
    cx, cy, r = d.width / 2, d.height / 2, min(d.width, d.height) * rng.uniform(0.3, 0.36)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1, outline=2, width=3)
    return png(img, transparency=0)


def gray16_png(size: int) -> bytes:
    """A 16-bit grayscale PNG (mode I;16): white concentric rings on black with a faint 16-bit ramp."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dist = np.hypot(xx - size / 2, yy - size / 2) / (size / 2)
    ring = (np.floor(dist * 5) % 2 == 0) & (dist < 0.9)
    values = np.where(ring, 60000.0, 3000.0) + xx * 8.0
    return png(Image.fromarray(np.clip(np.rint(values), 0, 65535).astype("<u2")))


def near_duplicate(original: bytes) -> bytes:
    """The same picture shown smaller elsewhere: decoded, resized to 90 % and re-encoded at JPEG quality 70."""
    img = Image.open(io.BytesIO(original)).convert("RGB")
    smaller = img.resize((round(img.width * 0.9), round(img.height * 0.9)), Image.Resampling.LANCZOS)
    return jpeg(smaller, quality=70)


def downscaled_photo(path: Path) -> bytes:
    img = Image.open(path).convert("RGB")
    scale = min(1.0, PHOTO_MAX_SIDE / max(img.size))
    if scale < 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return jpeg(img, PHOTO_QUALITY)


SOFT_404 = (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
            b"<body><h1>Not Found</h1><p>The image you requested has moved.</p></body></html>\n")


# ---------------------------------------------------------------- expectations

def kept(lang: str, why: str, caption_out: str | None = None, **facts: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"expect": "kept", "lang": lang, "why": why}
    if caption_out is not None:
        spec["caption_out"] = caption_out
    if facts:
        spec["facts"] = facts
    return spec


def dropped(stage: str, reason: str, why: str) -> dict[str, Any]:
    return {"expect": "dropped", "stage": stage, "reason": reason, "why": why}


def good(caption: str, lang: str) -> dict[str, Any]:
    return kept(lang, "a plain good pair", caption)


# ---------------------------------------------------------------- the three inputs

def tar_samples(rng: random.Random) -> list[Sample]:
    def size() -> tuple[int, int]:
        return rng.randint(256, 400), rng.randint(256, 400)

    def drawing(shape: str, fg: str, bg: str, **kw: Any) -> Drawing:
        w, h = kw.pop("wh", None) or size()
        return Drawing(shape, fg, bg, w, h, rng.randrange(1 << 30), **kw)

    out: list[Sample] = []

    def add(case: str, caption: str, image: bytes, expect: dict[str, Any], ext: str = "jpg") -> None:
        key = f"{len(out):09d}"                                  # img2dataset's zero-padded sample keys
        out.append(Sample(TAR, key, caption, image, ext, f"https://shapes.example/img/{key}.{ext}", case, expect))

    plain = [drawing("circle", "red", "blue"), drawing("star", "blue", "white"), drawing("triangle", "green", "yellow"),
             drawing("stripes", "yellow", "black"), drawing("rings", "orange", "black"),
             drawing("hexagon", "purple", "gray"), drawing("square", "green", "pink"), drawing("cross", "white", "red"),
             drawing("diamond", "blue", "orange")]
    captions = [en, zh, bilingual, en, zh, en, zh, en, bilingual]
    first_jpeg = b""
    for i, (d, make) in enumerate(zip(plain, captions)):
        data = jpeg(render(d))
        first_jpeg = first_jpeg or data
        lang = "zh" if make is zh else "en"    # bilingual captions here are mostly Latin letters: the majority script
        add("exact-duplicate-original" if i == 0 else f"good-{make.__name__}", make(d), data,
            good(make(d), lang))

    add("caption-empty", "", jpeg(render(drawing("circle", "yellow", "purple"))),
        dropped("caption_text", "empty", "an empty .txt member"))
    add("caption-filename", "IMG_2041.JPG", jpeg(render(drawing("square", "black", "white"))),
        dropped("caption_text", "caption-is-filename", "a camera file name is no caption"))
    add("caption-japanese", "青い背景の赤い丸", jpeg(render(drawing("circle", "red", "light blue"))),
        dropped("caption_language", "lang:ja", "kana: Japanese is outside languages [zh, en]"))
    pii = "Prints of this green star: call 13812345678 or mail shop@example.com"
    add("caption-pii", pii, jpeg(render(drawing("star", "green", "white"))),
        kept("en", "mainland mobile number and email scrubbed to placeholders",
             "Prints of this green star: call <PHONE> or mail <EMAIL>"))
    add("caption-html", "<p><b>Red triangle</b> on a white background &amp; a thin frame</p>",
        jpeg(render(drawing("triangle", "red", "white"))),
        kept("en", "HTML tags removed, entities decoded", "Red triangle on a white background & a thin frame"))
    add("caption-traditional", "藍色背景上的黃色正方形", jpeg(render(drawing("square", "yellow", "blue"))),
        kept("zh", "traditional characters converted to simplified", "蓝色背景上的黄色正方形"))

    whole = jpeg(render(drawing("circle", "black", "yellow")))
    add("image-truncated", "a black circle on a yellow background", whole[: len(whole) // 2],
        dropped("image", "truncated", "the JPEG is cut in half"))
    add("image-random-bytes", "a blue triangle on a pink background", random.Random(SEED).randbytes(6000),
        dropped("image", "unidentified", "random bytes named .jpg: no decoder recognises them"))
    add("image-tiny", "a red square on a green background",
        jpeg(render(drawing("square", "red", "green", wh=(64, 64)))),
        dropped("image", "too-small:64", "64x64 is below min_side 200 (DataComp basic filter)"))
    add("image-banner", "红色横幅上的白色圆形 a white circle on a wide red banner",
        jpeg(render(drawing("circle", "white", "red", wh=(900, 200)))),
        dropped("image", "aspect-ratio", "900x200 is 4.5:1, above max_aspect 3.0 (DataComp basic filter)"))
    add("image-palette-transparent", "a green circle on a white background",
        palette_png(drawing("circle", "green", "white")),
        kept("en", "palette PNG with a transparent index: composited over white, converted to RGB",
             "a green circle on a white background", original_format="PNG", original_mode="P"), ext="png")
    add("image-exif-rotated", "a blue triangle pointing up on a white background",
        exif_rotated_jpeg(render(drawing("triangle", "blue", "white", wh=(240, 320)))),
        kept("en", "stored 320x240 with EXIF orientation 6: turned upright to 240x320",
             "a blue triangle pointing up on a white background", original_width=240, original_height=320))
    add("exact-duplicate", zh(plain[0]), first_jpeg,
        {"expect": "one-kept", "why": "the same bytes as the first sample, another caption"})
    star = drawing("star", "orange", "dark blue")
    add("near-duplicate-original", en(star), jpeg(render(star)), good(en(star), "en"))
    two = drawing("two circles", "yellow", "green")
    add("good-two", en(two), jpeg(render(two)), good(en(two), "en"))
    return out


def parquet_samples(rng: random.Random, samples_dir: Path, near_original: bytes) -> list[Sample]:
    dj = samples_dir / DJ_DATA
    raw = f"https://github.com/modelscope/data-juicer/raw/{DJ_COMMIT}/tests/ops/data"
    rows = [
        Sample(PARQUET, "0", "<__dj__image> A comfortable bed.", downscaled_photo(dj / "img1.png"),
               url=f"{raw}/img1.png", case="photo-bed",
               expect=kept("en", "real photo; data-juicer's <__dj__image> token removed", "A comfortable bed.")),
        Sample(PARQUET, "1", "<__dj__image> A bus.", downscaled_photo(dj / "img2.jpg"), url=f"{raw}/img2.jpg",
               case="photo-bus",
               expect=dropped("caption_length", "too-short", "real caption of two words; min_words 3")),
        Sample(PARQUET, "2", "<__dj__image> Black and white photograph of a woman holding an umbrella.",
               downscaled_photo(dj / "img3.jpg"), url=f"{raw}/img3.jpg", case="photo-umbrella",
               expect=kept("en", "real photo, portrait orientation",
                           "Black and white photograph of a woman holding an umbrella.")),
        Sample(PARQUET, "3", "Portrait of Grace Hopper in uniform", (samples_dir / HOPPER).read_bytes(),
               url="https://github.com/python-pillow/Pillow/raw/main/Tests/images/hopper.jpg", case="photo-hopper",
               expect=dropped("image", "too-small:128", "real 128x128 photo, below min_side 200")),
    ]

    def drawing(shape: str, fg: str, bg: str) -> Drawing:
        return Drawing(shape, fg, bg, rng.randint(256, 400), rng.randint(256, 400), rng.randrange(1 << 30))

    cyan = drawing("circle", "cyan", "magenta")
    rows.append(Sample(PARQUET, "4", en(cyan), cmyk_jpeg(render(cyan)), case="image-cmyk",
                       expect=kept("en", "CMYK JPEG converted to RGB", en(cyan), original_mode="CMYK")))
    rows.append(Sample(PARQUET, "5", "white concentric rings on a black background", gray16_png(300),
                       case="image-16bit", expect=kept("en", "16-bit grayscale PNG scaled to 8 bits",
                                                       "white concentric rings on a black background",
                                                       original_mode="I;16")))
    rows.append(Sample(PARQUET, "6", "橙色五角星 an orange star on dark blue", near_duplicate(near_original),
                       case="near-duplicate", expect={"expect": "dropped", "stage": "phash_dedup",
                                                      "reason_prefix": "phash-duplicate-of:",
                                                      "duplicate_of": f"{TAR}#{{near}}",
                                                      "why": "the tar's orange star at 90 % size, JPEG q70: "
                                                             "perceptual hash within 4 bits; "
                                                             "the original has more pixels"}))
    purple = drawing("diamond", "purple", "gray")
    rows.append(Sample(PARQUET, "7", zh(purple), jpeg(render(purple)), case="good-zh", expect=good(zh(purple), "zh")))
    for row in rows:
        row.url = row.url or f"https://shapes.example/parquet/{row.name}.jpg"
    return rows


def url_samples(rng: random.Random) -> list[Sample]:
    def drawing(shape: str, fg: str, bg: str, **kw: Any) -> Drawing:
        return Drawing(shape, fg, bg, rng.randint(256, 400), rng.randint(256, 400), rng.randrange(1 << 30), **kw)

    rows: list[Sample] = []

    def add(name: str, caption: str, image: bytes | None, case: str, expect: dict[str, Any]) -> None:
        rows.append(Sample(TSV, name, caption, image, url=f"images/{name}", case=case, expect=expect))

    for name, d, make in [("black-star.jpg", drawing("star", "black", "orange"), en),
                          ("blue-rings.jpg", drawing("rings", "blue", "white"), zh)]:
        add(name, make(d), jpeg(render(d)), f"good-{make.__name__}", good(make(d), "zh" if make is zh else "en"))
    add("missing.jpg", "a green hexagon on a gray background", None, "download-404",
        dropped("download", "http-404", "the url names no served file"))
    cross = drawing("cross", "yellow", "purple")
    add("yellow-cross.jpg", bilingual(cross) + " on purple", jpeg(render(cross)), "good-bilingual",
        good(bilingual(cross) + " on purple", "en"))
    add("soft-404.jpg", "a white circle on a black background", SOFT_404, "served-not-image",
        dropped("image", "unidentified", "an HTML error page served under a .jpg name (a static server sends "
                                         "image/jpeg for it; one that sends text/html makes it download:not-image)"))
    for name, d, make in [("green-stripes.jpg", drawing("stripes", "green", "white", vertical=False), en),
                          ("pink-triangle.jpg", drawing("triangle", "pink", "black"), zh),
                          ("gray-diamond.jpg", drawing("diamond", "gray", "yellow"), en)]:
        add(name, make(d), jpeg(render(d)), f"good-{make.__name__}", good(make(d), "zh" if make is zh else "en"))
    return rows


# ---------------------------------------------------------------- writers

def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, 0, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def image_size(data: bytes) -> tuple[int | None, int | None]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - planted broken images have no size
        return None, None


def write_tar(samples: list[Sample]) -> bytes:
    """img2dataset's layout: KEY.jpg (or .png), KEY.txt caption, KEY.json metadata, sorted by member name."""
    members: dict[str, bytes] = {}
    for s in samples:
        assert s.image is not None
        width, height = image_size(s.image)
        meta = {"key": s.name, "caption": s.caption, "url": s.url, "status": "success", "error_message": None,
                "width": width, "height": height, "sha256": hashlib.sha256(s.image).hexdigest()}
        members[f"{s.name}.{s.ext}"] = s.image
        members[f"{s.name}.txt"] = s.caption.encode("utf-8")
        members[f"{s.name}.json"] = (json.dumps(meta, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            tar.addfile(_member(name, len(members[name])), io.BytesIO(members[name]))
    return out.getvalue()


def write_parquet(rows: list[Sample]) -> bytes:
    table = pa.table({"caption": pa.array([r.caption for r in rows], pa.string()),
                      "image": pa.array([r.image for r in rows], pa.binary()),
                      "url": pa.array([r.url for r in rows], pa.string())})
    out = io.BytesIO()
    pq.write_table(table, out, compression="NONE", use_dictionary=False, write_statistics=False,
                   row_group_size=len(rows), version="2.6", data_page_version="1.0")
    return out.getvalue()


def write_tsv(rows: list[Sample]) -> bytes:
    for r in rows:
        assert not any(c in r.caption + r.url for c in '\t\n\r"'), r.caption
    return ("url\tcaption\n" + "".join(f"{r.url}\t{r.caption}\n" for r in rows)).encode("utf-8")


def expected(tar: list[Sample], parquet: list[Sample], urls: list[Sample]) -> dict[str, Any]:
    cases = []
    near = next(s.name for s in tar if s.case == "near-duplicate-original")
    dup_group = [f"{TAR}#{tar[0].name}", f"{TAR}#{next(s.name for s in tar if s.case == 'exact-duplicate')}"]
    for index, s in enumerate(tar + parquet + urls):
        row = s.name if s.file == TAR else str(index - (len(tar) if s.file == PARQUET else len(tar) + len(parquet)))
        spec = dict(s.expect or {})
        key = f"{s.file}#{row}"
        if key in dup_group:
            spec = {"expect": "one-kept", "duplicate_group": dup_group, "stage": "phash_dedup",
                    "reason_prefix": "phash-duplicate-of:", "lang": spec.get("lang", "zh"),
                    "why": "the same bytes under two captions: exactly one is kept (the dedup rule picks it)"}
        if "duplicate_of" in spec:
            spec["duplicate_of"] = spec["duplicate_of"].format(near=near)
        case = {"key": key, "case": s.case, "caption": s.caption}
        if s.file == TSV:
            case["url"] = s.url
        case.update(spec)
        cases.append(case)
    outcomes: dict[str, int] = {}
    for c in cases:
        label = c["expect"] if c["expect"] != "dropped" else f"dropped:{c['stage']}"
        outcomes[label] = outcomes.get(label, 0) + 1
    return {
        "about": "What must happen to every record of the embedded image-text sample under the default recipe "
                 "(cleaners/data/image_text_recipe.yaml). Written by scripts/build_image_sample.py; see README.md.",
        "built_with": {"pillow": PIL.__version__, "numpy": np.__version__, "pyarrow": pa.__version__},
        "files": {
            TAR: {"format": "WebDataset tar (img2dataset layout: KEY.jpg|png, KEY.txt, KEY.json)", "samples": len(tar)},
            PARQUET: {"format": "Parquet, columns caption (string), image (binary), url (string)",
                      "rows": len(parquet)},
            TSV: {"format": "img2dataset url list, tab-separated, header url\tcaption; urls relative to served/",
                  "rows": len(urls), "served": SERVED},
        },
        "outcomes": dict(sorted(outcomes.items())),
        "cases": cases,
    }


def build(samples_dir: Path) -> dict[str, bytes]:
    """Every generated file, relative path -> bytes (README.md is hand-written and not among them)."""
    rng = random.Random(SEED)
    tar = tar_samples(rng)
    near_original = next(s.image for s in tar if s.case == "near-duplicate-original")
    parquet = parquet_samples(rng, samples_dir, near_original)
    urls = url_samples(rng)
    files = {TAR: write_tar(tar), PARQUET: write_parquet(parquet), TSV: write_tsv(urls)}
    for s in urls:
        if s.image is not None:
            files[f"{SERVED}/{s.url}"] = s.image
    files["expected.json"] = (json.dumps(expected(tar, parquet, urls), ensure_ascii=False, indent=1)
                              + "\n").encode("utf-8")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", default=str(REPO.parent / "shared" / "corpus-samples"))
    parser.add_argument("--output", default=str(REPO / "pipelines" / "data" / "image_sample"))
    args = parser.parse_args(argv)
    samples_dir = Path(args.samples)
    if not (samples_dir / DJ_DATA).is_dir():
        parser.error(f"{samples_dir / DJ_DATA} not found: pass --samples pointing at corpus-samples")
    out = Path(args.output)
    files = build(samples_dir)
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    print(f"wrote {len(files)} files, {sum(map(len, files.values()))} bytes, to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
