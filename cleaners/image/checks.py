"""Per-image checks: decode safely, orient, convert to RGB, filter by size and shape, hash, resize, re-encode.

`ImageChecks.check(data)` returns a `CheckedImage` or a short drop reason:

- `not-bytes`, `empty`, `too-large-bytes` (more than `max_bytes` encoded bytes),
- `unidentified` (no Pillow plugin recognises it), `format:<FMT>` (not in `allowed_formats`),
- `bad-size` (zero or negative declared size), `decompression-bomb` (declared size over `max_pixels`, read
  from the header before any pixel is decoded; Pillow's own DecompressionBombError/Warning map here too),
- `truncated` (the data ends early), `corrupt:<ExceptionName>` (anything else the decoder rejects),
- `mode:<MODE>` (a pixel mode with no RGB conversion),
- `too-small:<side>` (the shorter oriented side, below `min_side`), `aspect-ratio` (long/short above `max_aspect`).

Defaults: `min_side` 200 and `max_aspect` 3.0 are DataComp's basic filter (Gadre et al. 2023); `max_pixels`
89,478,485 is Pillow's own decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`); `resolution` 256 is CogView's
training size. Pillow's globals `MAX_IMAGE_PIXELS` and `ImageFile.LOAD_TRUNCATED_IMAGES` are never changed:
a truncated image is dropped, not half loaded.
"""
from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cleaners.image.phash import phash
from cleaners.image.record import ImageText
from cleaners.step import Step, register

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING,
}


@dataclass
class CheckedImage:
    """A kept image: the re-encoded JPEG and what was learnt about the original."""

    jpeg: bytes
    width: int
    height: int
    original_width: int          # after EXIF orientation, before resizing
    original_height: int
    original_format: str
    original_mode: str
    phash: int                   # 64-bit DCT hash of the oriented RGB image (cleaners/image/phash.py)
    n_frames: int = 1
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. {"exif_error": "SyntaxError"}

    def facts(self) -> dict[str, Any]:
        """JSON-able facts for `ImageText.facts`; the hash as 16 hex digits (JSON numbers lose 64-bit ints)."""
        facts: dict[str, Any] = {
            "width": self.width, "height": self.height,
            "original_width": self.original_width, "original_height": self.original_height,
            "original_format": self.original_format, "original_mode": self.original_mode,
            "phash": f"{self.phash:016x}", "n_frames": self.n_frames, "jpeg_bytes": len(self.jpeg),
        }
        facts.update(self.notes)
        return facts


WHITE = (255, 255, 255)


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    """An "L" image from a 16-bit, 32-bit integer or float grayscale one, scaled (not clipped) to 0..255.

    I;16* is full-range 16-bit (v * 255 / 65535). "I" holds 8-bit or 16-bit data in most files (16-bit PNG
    and TIFF): values within 0..255 are kept, within 0..65535 scaled as 16-bit, anything wider stretched
    from its own min..max. "F" in 0..1 is multiplied by 255, otherwise stretched min..max.
    """
    values = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        scaled = values * (255.0 / 65535.0)
    else:
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
            scaled = values * 255.0
        elif img.mode == "I" and lo >= 0 and hi <= 255:
            scaled = values
        elif img.mode == "I" and lo >= 0 and hi <= 65535:
            scaled = values * (255.0 / 65535.0)
        elif hi > lo:
            scaled = (values - lo) * (255.0 / (hi - lo))
        else:
            scaled = np.zeros_like(values)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _over_white(img: Image.Image) -> Image.Image:
    """An image with alpha composited over white, as RGB."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image | str:
    """`img` as an 8-bit RGB image: transparency composited over white (RGBA, LA, PA, palette or
    grayscale/RGB with a tRNS colour), 16/32-bit and float grayscale scaled to 8 bits, CMYK, 1-bit, L,
    YCbCr and others by Pillow's conversion. `mode:<MODE>` when Pillow has no conversion."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return _scale_to_8bit(img).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return _over_white(img)
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except (ValueError, OSError):
        return f"mode:{mode}"


def _load_reason(exc: BaseException) -> str:
    """Drop reason for an exception raised while opening or decoding."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "decompression-bomb"
    if isinstance(exc, UnidentifiedImageError):
        return "unidentified"
    message = str(exc).lower()
    if "truncated" in message or "premature end" in message or isinstance(exc, EOFError):
        return "truncated"
    return f"corrupt:{type(exc).__name__}"


def _exif_transpose(img: Image.Image, notes: dict[str, Any]) -> Image.Image:
    """`img` turned upright by its EXIF orientation; bad EXIF leaves it as it is, noted in `notes`."""
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception as exc:  # noqa: BLE001 - any EXIF parser failure means "no usable orientation"
        notes["exif_error"] = type(exc).__name__
        return img
    return img if upright is None else upright


def _resize_crop(img: Image.Image, resolution: int, resample: Image.Resampling) -> Image.Image:
    """The centred square of side min(w, h), scaled to `resolution` x `resolution` in one resample (the same
    picture as scaling the shorter side then cropping, without resampling the pixels the crop throws away)."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    if side == resolution and w == h:
        return img
    return img.resize((resolution, resolution), resample, box=(left, top, left + side, top + side),
                      reducing_gap=3.0)   # Pillow: a gap of 3.0 is indistinguishable from none


@register("image")
@dataclass(kw_only=True)
class ImageChecks(Step):
    """The image step of the image-text recipe (keyword arguments straight from the recipe's `image:` section):
    `apply(pair)` gives the pair with its checked, re-encoded JPEG and the image facts, or the reason to drop it."""

    kind: ClassVar[str] = "image_text"

    min_side: int = 200
    max_aspect: float = 3.0
    max_pixels: int = 89_478_485
    max_bytes: int = 20_000_000
    resolution: int = 256
    resample: str = "bicubic"
    jpeg_quality: int = 95
    allowed_formats: list[str] | None = None   # Pillow format names ("JPEG", "PNG", ...); None = any

    def __post_init__(self) -> None:
        for name in ("min_side", "max_pixels", "max_bytes", "resolution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"image: {name} must be a non-negative integer, got {value!r}")
        if not isinstance(self.max_aspect, (int, float)) or self.max_aspect < 1:
            raise ValueError(f"image: max_aspect must be a number >= 1, got {self.max_aspect!r}")
        if self.resample not in RESAMPLE:
            raise ValueError(f"image: resample must be one of {sorted(RESAMPLE)}, got {self.resample!r}")
        if not 1 <= int(self.jpeg_quality) <= 95:
            raise ValueError(f"image: jpeg_quality must be in 1..95, got {self.jpeg_quality!r}")
        if self.allowed_formats is not None:
            if isinstance(self.allowed_formats, str):
                raise ValueError("image: allowed_formats must be a list of format names")
            self.allowed_formats = [str(f).upper() for f in self.allowed_formats]

    def apply(self, pair: ImageText) -> ImageText | str:
        original = pair.image or b""
        checked = self.check(original)
        if isinstance(checked, str):
            return checked
        facts = {**pair.facts, **checked.facts(), "original_bytes": len(original)}
        return dataclasses.replace(pair, image=checked.jpeg, facts=facts)   # never mutate an input element

    def check(self, data: Any) -> CheckedImage | str:
        """The checked, re-encoded image, or the reason to drop `data` (see the module docstring)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return "not-bytes"
        if len(data) == 0:
            return "empty"
        if len(data) > self.max_bytes:
            return "too-large-bytes"
        try:
            img = Image.open(io.BytesIO(bytes(data)))
        except Exception as exc:  # noqa: BLE001 - every decoder failure becomes a reason
            return _load_reason(exc)
        try:
            return self._check_open(img)
        except Exception as exc:  # noqa: BLE001
            return _load_reason(exc)
        finally:
            img.close()

    def _check_open(self, img: Image.Image) -> CheckedImage | str:
        fmt = img.format or "unknown"
        if self.allowed_formats is not None and fmt.upper() not in self.allowed_formats:
            return f"format:{fmt}"
        w, h = img.size
        if w <= 0 or h <= 0:
            return "bad-size"
        if w * h > self.max_pixels:
            return "decompression-bomb"
        notes: dict[str, Any] = {}
        try:
            n_frames = int(getattr(img, "n_frames", 1) or 1)
        except Exception as exc:  # noqa: BLE001 - a broken later frame; the first one may still be fine
            n_frames, notes["frames_error"] = 1, type(exc).__name__
        if n_frames > 1 or notes:
            img.seek(0)
        if fmt == "JPEG" and self.resolution and min(w, h) > 2 * self.resolution:
            # JPEG DCT scaling: decode at 1/2..1/8 size, still no smaller than twice the training resolution;
            # the whole entropy-coded stream is still read, so truncation is still found
            factor = 2 * self.resolution / min(w, h)
            img.draft(img.mode, (max(1, int(w * factor)), max(1, int(h * factor))))
        img.load()
        if img.size[0] * img.size[1] > self.max_pixels:   # a frame may grow the canvas (GIF extents)
            return "decompression-bomb"
        mode = img.mode
        loaded = img.size
        upright = _exif_transpose(img, notes)
        ow, oh = (w, h) if upright.size == loaded else (h, w)   # sizes of the upright original, before any draft
        if min(ow, oh) < self.min_side:
            return f"too-small:{min(ow, oh)}"
        if max(ow, oh) > self.max_aspect * min(ow, oh):
            return "aspect-ratio"
        rgb = to_rgb(upright)
        if isinstance(rgb, str):
            return rgb
        hash_value = phash(rgb)
        if self.resolution:
            rgb = _resize_crop(rgb, self.resolution, RESAMPLE[self.resample])
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=int(self.jpeg_quality))
        return CheckedImage(jpeg=out.getvalue(), width=rgb.width, height=rgb.height, original_width=ow,
                            original_height=oh, original_format=fmt, original_mode=mode, phash=hash_value,
                            n_frames=n_frames, notes=notes)
