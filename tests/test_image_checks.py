"""Image checks and the perceptual hash (cleaners/image/checks.py, cleaners/image/phash.py), on Pillow's own
odd and broken test images and on images made here."""
from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from cleaners.image import checks as checks_module
from cleaners.image.checks import CheckedImage, ImageChecks, to_rgb
from cleaners.image.phash import dct_matrix, hamming, phash

ODD = "image_text/odd_images_pillow"

# file -> outcome with the defaults (min_side 200) and with min_side=1: a reason, or
# (original_width, original_height, original_format, original_mode, n_frames) of a kept image.
TABLE = {
    "1_trns.png": ("too-small:64", (64, 64, "PNG", "1", 1)),
    "broken.png": ("unidentified", "unidentified"),
    "broken_data_stream.png": ("corrupt:OSError", "corrupt:OSError"),
    "chi.gif": ((320, 240, "GIF", "P", 31), (320, 240, "GIF", "P", 31)),
    "decompression_bomb.gif": ("decompression-bomb", "decompression-bomb"),
    # frame 1 is a bomb (Pillow raises on seek(1)); only frame 0 (100x100) is ever decoded
    "decompression_bomb_extents.gif": ("too-small:100", (100, 100, "GIF", "P", 2)),
    "exif-dpi-zerodivision.jpg": ((200, 200, "JPEG", "RGB", 1), (200, 200, "JPEG", "RGB", 1)),
    "flower.jpg": ((480, 360, "JPEG", "RGB", 1), (480, 360, "JPEG", "RGB", 1)),
    "flower.webp": ((480, 360, "WEBP", "RGB", 1), (480, 360, "WEBP", "RGB", 1)),
    "flower2.jpg": ((300, 225, "JPEG", "RGB", 1), (300, 225, "JPEG", "RGB", 1)),
    "hopper.avif": ("too-small:128", (128, 128, "AVIF", "RGB", 1)),
    "hopper.gif": ("too-small:128", (128, 128, "GIF", "P", 1)),
    "hopper.jpg": ("too-small:128", (128, 128, "JPEG", "RGB", 1)),
    "hopper.png": ("too-small:128", (128, 128, "PNG", "RGB", 1)),
    "hopper.webp": ("too-small:128", (128, 128, "WEBP", "RGB", 1)),
    "hopper_16bit_qtables.jpg": ("too-small:128", (128, 128, "JPEG", "RGB", 1)),
    "hopper_bad_exif.jpg": ((500, 500, "JPEG", "L", 1), (500, 500, "JPEG", "L", 1)),
    "hopper_gray.jpg": ("too-small:128", (128, 128, "JPEG", "L", 1)),
    "hopper_orientation_6.jpg": ("too-small:128", (128, 128, "JPEG", "RGB", 1)),
    "icc-after-SOF.jpg": ("too-small:10", (10, 10, "JPEG", "L", 1)),
    "invalid-exif.jpg": ((200, 200, "JPEG", "RGB", 1), (200, 200, "JPEG", "RGB", 1)),
    "iss634.apng": ((245, 245, "PNG", "RGBA", 41), (245, 245, "PNG", "RGBA", 41)),
    "negative_size.ppm": ("unidentified", "unidentified"),
    "pil_sample_cmyk.jpg": ("too-small:100", (100, 100, "JPEG", "CMYK", 1)),
    "sugarshack_bad_mpo_header.jpg": ((640, 480, "JPEG", "RGB", 1), (640, 480, "JPEG", "RGB", 1)),
    "transparent.webp": ("too-small:150", (200, 150, "WEBP", "RGBA", 1)),
    "truncated_app14.jpg": ("too-small:100", (100, 100, "JPEG", "RGB", 1)),   # only the APP14 marker is cut
    "truncated_end_chunk.png": ("truncated", "truncated"),
    "truncated_exif_dpi.jpg": ((480, 640, "JPEG", "RGB", 1), (480, 640, "JPEG", "RGB", 1)),
    "truncated_image.png": ("truncated", "truncated"),
    "truncated_jpeg.jpg": ("truncated", "truncated"),
}


def _outcome(result: CheckedImage | str):
    if isinstance(result, str):
        return result
    return (result.original_width, result.original_height, result.original_format, result.original_mode,
            result.n_frames)


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _decode(result: CheckedImage) -> Image.Image:
    img = Image.open(io.BytesIO(result.jpeg))
    img.load()
    assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (result.width, result.height))
    return img


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


@pytest.fixture(scope="module")
def odd(corpus_samples):
    folder = corpus_samples / ODD
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_every_odd_image_has_its_exact_outcome(odd):
    assert sorted(odd) == sorted(TABLE)
    default, small_ok = ImageChecks(), ImageChecks(min_side=1)
    for name, data in odd.items():
        got = (_outcome(default.check(data)), _outcome(small_ok.check(data)))
        assert got == TABLE[name], name
        kept = small_ok.check(data)
        if isinstance(kept, CheckedImage):
            assert (kept.width, kept.height) == (256, 256)
            _decode(kept)


def test_pillow_globals_are_left_alone(odd):
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    checks = ImageChecks(min_side=1, max_pixels=10**12)
    for data in odd.values():
        checks.check(data)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before == (89_478_485, False)


def test_exif_orientation_6_is_applied(odd):
    data = odd["hopper_orientation_6.jpg"]
    raw = Image.open(io.BytesIO(data)).convert("RGB")
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
    result = ImageChecks(min_side=1, resolution=0).check(data)
    out = _pixels(_decode(result))
    upright = _pixels(raw.transpose(Image.Transpose.ROTATE_270))
    assert np.abs(out - upright).mean() < 4          # only JPEG re-encoding noise
    assert np.abs(out - _pixels(raw)).mean() > 20    # the unrotated image differs a lot
    assert result.phash == phash(raw.transpose(Image.Transpose.ROTATE_270))


def test_exif_orientation_swaps_width_and_height():
    img = Image.new("RGB", (300, 220), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    result = ImageChecks(resolution=0).check(out.getvalue())
    assert (result.original_width, result.original_height, result.width, result.height) == (220, 300, 220, 300)


def test_bad_exif_falls_back_to_no_transpose(monkeypatch):
    def broken(img, **kwargs):
        raise SyntaxError("bad EXIF")
    monkeypatch.setattr(checks_module.ImageOps, "exif_transpose", broken)
    result = ImageChecks(resolution=0).check(_png(Image.new("RGB", (300, 220), (1, 2, 3))))
    assert (result.width, result.height) == (300, 220)
    assert result.facts()["exif_error"] == "SyntaxError"


def test_cmyk_colours_match_pillow(odd):
    data = odd["pil_sample_cmyk.jpg"]
    expected = Image.open(io.BytesIO(data)).convert("RGB")
    out = _decode(ImageChecks(min_side=1, resolution=0).check(data))
    assert np.abs(_pixels(out).mean(axis=(0, 1)) - _pixels(expected).mean(axis=(0, 1))).max() < 2
    r, g, b = out.getpixel((2, 1))              # the red bar in the top-left corner
    assert r > 200 and g < 60 and b < 60


def test_animated_gif_uses_the_first_frame(odd):
    data = odd["chi.gif"]
    first = Image.open(io.BytesIO(data)).convert("RGB")
    out = _decode(ImageChecks(resolution=0).check(data))
    assert np.abs(_pixels(out) - _pixels(first)).mean() < 4


def test_sixteen_bit_gradient_is_scaled_not_clipped():
    gradient = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (256, 1))
    data = _png(Image.fromarray(gradient))
    result = ImageChecks(resolution=0).check(data)
    assert result.original_mode.startswith("I")
    row = _pixels(_decode(result))[128, :, 0]
    assert row[:4].max() < 6 and row[-4:].min() > 249
    assert abs(row.mean() - 127.5) < 3               # clipping at 255 would give a mean near 255


@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", [0, 65535], [0, 255]),
    ("I", [0, 255], [0, 255]),             # 8-bit data in a 32-bit image stays as it is
    ("I", [0, 65535], [0, 255]),           # 16-bit PNG data
    ("I", [-1000, 1000], [0, 255]),        # anything else is stretched min..max
    ("F", [0.0, 1.0], [0, 255]),
    ("F", [-2.0, 2.0], [0, 255]),
])
def test_high_bit_depth_to_rgb(mode, values, expected):
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    img = Image.fromarray(np.array([values], dtype=dtype))
    assert img.mode == mode
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == expected


def test_palette_with_transparency_goes_over_white():
    img = Image.new("P", (300, 300), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (150, 0, 300, 300))
    out = io.BytesIO()
    img.save(out, "PNG", transparency=0)
    result = ImageChecks(resolution=0).check(out.getvalue())
    assert result.original_mode == "P"
    pixels = _pixels(_decode(result))
    assert np.abs(pixels[150, 40] - [255, 255, 255]).max() < 8    # transparent red -> white
    assert np.abs(pixels[150, 260] - [0, 0, 255]).max() < 8


@pytest.mark.parametrize("mode, clear, solid, solid_rgb", [
    ("RGBA", (0, 0, 0, 0), (0, 128, 0, 255), (0, 128, 0)),
    ("LA", (0, 0), (50, 255), (50, 50, 50)),
])
def test_alpha_goes_over_white(mode, clear, solid, solid_rgb):
    img = Image.new(mode, (300, 300), clear)
    img.paste(Image.new(mode, (150, 300), solid), (150, 0))
    pixels = _pixels(_decode(ImageChecks(resolution=0).check(_png(img))))
    assert np.abs(pixels[150, 40] - [255, 255, 255]).max() < 8
    assert np.abs(pixels[150, 260] - solid_rgb).max() < 8


def test_one_bit_and_half_transparent():
    img = Image.new("1", (4, 1))
    img.putpixel((1, 0), 1)
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 255, 0, 0]
    half = Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    assert to_rgb(half).getpixel((0, 0)) == (127, 127, 127)


def test_size_and_shape_rules():
    checks = ImageChecks()
    assert checks.check(_png(Image.new("RGB", (10, 12)))) == "too-small:10"
    assert checks.check(_png(Image.new("RGB", (900, 200)))) == "aspect-ratio"
    assert checks.check(_png(Image.new("RGB", (200, 601)))) == "aspect-ratio"
    kept = checks.check(_png(Image.new("RGB", (600, 200))))          # exactly 3:1 is allowed
    assert (kept.width, kept.height, kept.original_width) == (256, 256, 600)


def test_resize_and_centre_crop():
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    img.paste((0, 0, 255), (100, 0, 300, 200))               # blue centre square, red sides
    result = ImageChecks(resolution=64).check(_png(img))
    pixels = _pixels(_decode(result))
    assert pixels.shape == (64, 64, 3)
    assert np.abs(pixels[32, 32] - [0, 0, 255]).max() < 12
    assert np.abs(pixels[:, 2:62].mean(axis=(0, 1)) - [0, 0, 255]).max() < 12
    kept = ImageChecks(resolution=0).check(_png(img))
    assert (kept.width, kept.height) == (400, 200)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels and holds none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bombs_are_dropped_before_decoding():
    checks = ImageChecks()
    assert checks.check(_png_header(100_000, 100_000)) == "decompression-bomb"   # Pillow's own error
    with pytest.warns(Image.DecompressionBombWarning):
        assert checks.check(_png_header(10_000, 10_000)) == "decompression-bomb"  # our header guard
    assert ImageChecks(max_pixels=250 * 250 - 1).check(_png(Image.new("RGB", (250, 250)))) == "decompression-bomb"
    assert ImageChecks(max_pixels=250 * 250).check(_png(Image.new("RGB", (250, 250)))).width == 256


def test_header_without_pixels_is_corrupt():
    assert ImageChecks(min_side=1).check(_png_header(300, 300)) == "corrupt:OSError"


def test_bad_input():
    checks = ImageChecks()
    assert checks.check(b"") == "empty"
    assert checks.check(None) == "not-bytes"
    assert checks.check("a string") == "not-bytes"
    assert checks.check(random.Random(7).randbytes(5000)) == "unidentified"
    assert checks.check(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40) == "unidentified"
    big = _png(Image.new("RGB", (300, 300)))
    assert ImageChecks(max_bytes=len(big) - 1).check(big) == "too-large-bytes"
    assert ImageChecks(allowed_formats=["jpeg"]).check(big) == "format:PNG"
    assert isinstance(ImageChecks(allowed_formats=["PNG"]).check(bytearray(big)), CheckedImage)


@pytest.mark.parametrize("kwargs", [{"min_side": -1}, {"max_aspect": 0.5}, {"resample": "cubic"},
                                    {"jpeg_quality": 0}, {"allowed_formats": "JPEG"}, {"resolution": 1.5}])
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        ImageChecks(**kwargs)


def test_facts_are_json_ready():
    result = ImageChecks().check(_png(Image.new("RGB", (300, 240), (9, 9, 9))))
    facts = result.facts()
    assert facts == {"width": 256, "height": 256, "original_width": 300, "original_height": 240,
                     "original_format": "PNG", "original_mode": "RGB", "phash": f"{result.phash:016x}",
                     "n_frames": 1, "jpeg_bytes": len(result.jpeg)}
    assert len(facts["phash"]) == 16 and int(facts["phash"], 16) == result.phash


# --- perceptual hash ---------------------------------------------------------------------------------

def _photo(seed: int, size: int = 256) -> Image.Image:
    """A smooth random 'photo': a few large blurred shapes, different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for _ in range(6):
        cx, cy, r = rng.random(3)
        img += rng.random(3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.02 + 0.1 * r))[..., None]
    img = 255 * img / img.max()
    return Image.fromarray(img.astype(np.uint8), "RGB")


def test_dct_matrix_is_orthonormal():
    c = dct_matrix(32)
    assert np.allclose(c @ c.T, np.eye(32))
    assert np.allclose(c @ np.ones(32), [np.sqrt(32)] + [0] * 31)


def test_phash_identical_resized_reencoded_and_unrelated(odd):
    photo = Image.open(io.BytesIO(odd["flower.jpg"])).convert("RGB")
    base = phash(photo)
    assert 0 <= base < 2**64
    assert hamming(base, phash(photo.copy())) == 0
    out = io.BytesIO()
    photo.resize((240, 180), Image.Resampling.BICUBIC).save(out, "JPEG", quality=60)
    assert hamming(base, phash(Image.open(out))) <= 6
    others = [Image.open(io.BytesIO(odd[name])).convert("RGB") for name in ("sugarshack_bad_mpo_header.jpg",
                                                                              "hopper.png", "chi.gif")]
    for other in others:
        assert hamming(base, phash(other)) > 20


def test_phash_synthetic_images():
    a, b = _photo(1), _photo(2)
    out = io.BytesIO()
    a.resize((180, 180)).save(out, "JPEG", quality=70)
    assert hamming(phash(a), phash(Image.open(out))) <= 6
    assert hamming(phash(a), phash(b)) > 20
    assert phash(a) == phash(a.convert("L"))   # hashes the luminance only


def test_hamming():
    assert hamming(0, 0) == 0
    assert hamming(0, 2**64 - 1) == 64
    assert hamming(0b1011, 0b0110) == 3
