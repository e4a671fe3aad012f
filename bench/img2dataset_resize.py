"""The reference side of bench/image_throughput.py: img2dataset 1.47.0's Resizer on a list of image files.

Runs in bench/.venv-img2dataset (img2dataset pins its own OpenCV, albumentations and numpy), never in the
project's venv. Called by image_throughput.py, one process per repeat:

    bench/.venv-img2dataset/bin/python bench/img2dataset_resize.py --list FILES.txt [--out-dir DIR] [--breakdown]

Reads every file into memory first (not timed), warms the resizer up on the first image (not timed), then
times one pass of `Resizer(...)(io.BytesIO(data))` over all images with time.process_time (CPU of this
process, all threads) and time.perf_counter (wall). OpenCV is pinned to one thread (`cv2.setNumThreads(1)`;
the Resizer also sets it on every call). With --breakdown, a second pass times the Resizer's own steps one
by one (imdecode, alpha matting, SmallestMaxSize, CenterCrop, imencode: the calls Resizer.__call__ makes, in
its order) and checks that it produced the same bytes. Prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")   # albumentations checks PyPI for updates on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from img2dataset.resizer import Resizer  # noqa: E402

cv2.setNumThreads(1)

#: The configuration compared: DataComp's basic size/aspect filter and CogView's 256 px, as on our side.
RESIZER_ARGS = dict(image_size=256, resize_mode="center_crop", resize_only_if_bigger=False, encode_quality=95,
                    encode_format="jpg", min_image_size=200, max_aspect_ratio=3.0)
STEPS = ["decode", "alpha", "resize", "crop", "encode"]


def timed_pass(resizer: Resizer, blobs: list[bytes]) -> tuple[float, float, list]:
    """CPU s, wall s and the resizer's return tuples for one pass over `blobs`."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = [resizer(io.BytesIO(data)) for data in blobs]
    return time.process_time() - cpu0, time.perf_counter() - wall0, results


def breakdown_one(resizer: Resizer, data: bytes, spent: dict[str, float]) -> bytes | None:
    """The Resizer's steps for center_crop without blurring, each timed into `spent`; the JPEG or None."""
    t = time.process_time()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    spent["decode"] += (t1 := time.process_time()) - t
    if img is None:
        return None
    if img.ndim == 3 and img.shape[-1] == 4:
        alpha = img[:, :, 3, np.newaxis]
        img = np.rint((alpha / 255 * img[..., :3] + 255 - alpha).clip(0, 255)).astype(np.uint8)
    spent["alpha"] += (t2 := time.process_time()) - t1
    h, w = img.shape[:2]
    if min(h, w) < resizer.min_image_size or max(h, w) / min(h, w) > resizer.max_aspect_ratio:
        return None
    downscale = min(w, h) > resizer.image_size
    interpolation = resizer.downscale_interpolation if downscale else resizer.upscale_interpolation
    img = A.SmallestMaxSize(max_size=resizer.image_size, interpolation=interpolation, p=1.0)(image=img)["image"]
    spent["resize"] += (t3 := time.process_time()) - t2
    img = A.CenterCrop(height=resizer.image_size, width=resizer.image_size)(image=img)["image"]
    spent["crop"] += (t4 := time.process_time()) - t3
    out = cv2.imencode(".jpg", img, params=resizer.encode_params)[1].tobytes()
    spent["encode"] += time.process_time() - t4
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", type=Path, required=True, help="text file, one image path per line")
    parser.add_argument("--out-dir", type=Path, help="write each kept 256x256 JPEG here as <name>.jpg")
    parser.add_argument("--breakdown", action="store_true", help="also time the Resizer's steps one by one")
    args = parser.parse_args(argv)

    paths = [Path(line) for line in args.list.read_text("utf-8").splitlines() if line.strip()]
    blobs = [p.read_bytes() for p in paths]
    resizer = Resizer(**RESIZER_ARGS)
    resizer(io.BytesIO(blobs[0]))                      # warm-up: lazy imports and first-call setup, not timed
    cpu_s, wall_s, results = timed_pass(resizer, blobs)
    images = []
    for path, (jpeg, width, height, ow, oh, err) in zip(paths, results):
        images.append({"name": path.name, "kept": err is None, "reason": err, "bytes": len(jpeg) if jpeg else 0,
                       "width": width, "height": height, "original_width": ow, "original_height": oh})
        if args.out_dir is not None and jpeg:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            (args.out_dir / f"{path.name}.jpg").write_bytes(jpeg)
    report = {"cpu_s": cpu_s, "wall_s": wall_s, "images": images, "opencv_threads": cv2.getNumThreads(),
              "versions": {"opencv": cv2.__version__, "albumentations": A.__version__, "numpy": np.__version__}}
    if args.breakdown:
        spent = dict.fromkeys(STEPS, 0.0)
        mismatched = 0
        for data, (jpeg, *_rest) in zip(blobs, results):
            mismatched += breakdown_one(resizer, data, spent) != jpeg
        report["breakdown_cpu_s"] = spent
        report["breakdown_mismatched"] = mismatched
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
