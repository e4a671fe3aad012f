#!/usr/bin/env python
"""Image checks per core: ours (`cleaners.image.checks.ImageChecks`) vs img2dataset 1.47.0's Resizer.

    .venv/bin/python bench/image_throughput.py               # 300 images, median of 3, about 1-2 minutes
    .venv/bin/python bench/image_throughput.py --images 100 --repeat 1

Steps: (1) make bench/.venv-img2dataset if it is missing (python3 -m venv; pip install img2dataset==1.47.0:
img2dataset pins its own OpenCV and albumentations); (2) write a deterministic set of web-sized images to
bench/work/images: crops of the real photos in corpus-samples/image_text, resized to 400-1600 px on the long
side with varied aspect ratios, JPEG q90, every 20th a PNG; (3) per repeat, interleaved: ours in this process,
then the reference as a subprocess (bench/img2dataset_resize.py), each timing one pass over the images held
in memory with time.process_time (CPU, all threads of one process) and time.perf_counter (wall), after one
untimed warm-up call; then each side's step-by-step breakdown pass; (4) print a Markdown report and write it
to bench/results/image_throughput.md.

Both sides do the same job: min side 200 and max aspect 3.0 (DataComp's basic filter), scale the short side to
256 and centre-crop 256x256, JPEG quality 95. Ours also applies EXIF orientation, converts every mode to RGB
(alpha over white) and computes a 64-bit DCT perceptual hash; the reference composites alpha over white too.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
from cleaners.image.checks import ImageChecks  # noqa: E402

WORK = BENCH / "work"
IMAGES = WORK / "images"
REF_OUT = WORK / "image_throughput_ref"
RESULTS = BENCH / "results" / "image_throughput.md"
REF_VENV = BENCH / ".venv-img2dataset"
REF_REQUIREMENTS = ["img2dataset==1.47.0"]
REF_SCRIPT = BENCH / "img2dataset_resize.py"
DEFAULT_SAMPLES = REPO.parent / "shared" / "corpus-samples"
SETTINGS = dict(min_side=200, max_aspect=3.0, resolution=256, jpeg_quality=95)   # ImageChecks' defaults

#: Real photos the inputs are cut from (path under corpus-samples/image_text; "tar#member" inside a tar).
SOURCE_PHOTOS = [
    "data-juicer_demo/tests/ops/data/img1.png",
    "data-juicer_demo/tests/ops/data/img2.jpg",
    "data-juicer_demo/tests/ops/data/img3.jpg",
    "nemo-curator_wds/00000.tar#0.jpg",
    "odd_images_pillow/flower.jpg",
    "odd_images_pillow/flower2.jpg",
    "odd_images_pillow/sugarshack_bad_mpo_header.jpg",
    "odd_images_pillow/hopper.jpg",
]
STEPS_OURS = ["decode+load", "orientation+RGB", "phash", "resize+crop", "encode"]
STEPS_REF = ["decode", "alpha", "resize", "crop", "encode"]


# ---------------------------------------------------------------- inputs

def load_photo(samples: Path, spec: str) -> Image.Image:
    """One source photo as RGB."""
    path, _, member = spec.partition("#")
    full = samples / "image_text" / path
    if member:
        with tarfile.open(full) as tar:
            data = tar.extractfile(member).read()
    else:
        data = full.read_bytes()
    with warnings.catch_warnings():   # sugarshack's MPO header is broken on purpose; Pillow warns and reads it
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")


def crop_box(width: int, height: int, aspect: float, rng: random.Random) -> tuple[int, int, int, int]:
    """A random box of width/height `aspect` covering 60-100% of the largest such box inside the photo."""
    box_w, box_h = (width, width / aspect) if width / aspect <= height else (height * aspect, height)
    scale = rng.uniform(0.6, 1.0)
    box_w, box_h = max(1, round(box_w * scale)), max(1, round(box_h * scale))
    left, top = rng.randint(0, width - box_w), rng.randint(0, height - box_h)
    return left, top, left + box_w, top + box_h


def build_images(out: Path, count: int, seed: int, samples: Path) -> list[Path]:
    """Write `count` images to `out` (reused when its manifest matches); their paths, in order.

    Long side log-uniform in 400-1600 px (web image sizes), long/short aspect log-uniform in 1-3.5, landscape
    or portrait at random, so some fall below 200 px or above aspect 3 and are dropped by both sides.
    """
    manifest = {"count": count, "seed": seed, "sources": SOURCE_PHOTOS, "pillow": Image.__version__}
    manifest_path = out / "manifest.json"
    names = [f"img-{i:04d}.{'png' if i % 20 == 19 else 'jpg'}" for i in range(count)]
    if manifest_path.exists() and json.loads(manifest_path.read_text("utf-8")) == manifest \
            and all((out / name).exists() for name in names):
        return [out / name for name in names]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    photos = [load_photo(samples, spec) for spec in SOURCE_PHOTOS]
    rng = random.Random(seed)
    for name in names:
        photo = photos[rng.randrange(len(photos))]
        long_side = round(math.exp(rng.uniform(math.log(400), math.log(1600))))
        aspect = math.exp(rng.uniform(0.0, math.log(3.5)))
        portrait = rng.random() < 0.35
        w, h = (round(long_side / aspect), long_side) if portrait else (long_side, round(long_side / aspect))
        box = crop_box(photo.width, photo.height, w / h, rng)
        img = photo.crop(box).resize((w, h), Image.Resampling.LANCZOS)
        if name.endswith(".png"):
            img.save(out / name, "PNG")
        else:
            img.save(out / name, "JPEG", quality=90)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
    return [out / name for name in names]


# ---------------------------------------------------------------- the reference venv

def ensure_img2dataset_venv(venv: Path = REF_VENV) -> Path:
    """The reference venv's python, creating it and installing REF_REQUIREMENTS if img2dataset is missing."""
    python = venv / "bin" / "python"
    wanted = REF_REQUIREMENTS[0].split("==")[1]
    if python.exists() and installed_version(python, "img2dataset") == wanted:
        return python
    print(f"creating {venv} (python3 -m venv; pip install {' '.join(REF_REQUIREMENTS)})", file=sys.stderr)
    subprocess.run([shutil.which("python3") or "python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REF_REQUIREMENTS], check=True)
    return python


def installed_version(python: str | Path, name: str) -> str:
    """`name`'s installed version for `python`, 'missing' or 'unknown'."""
    code = ("import importlib.metadata as m, sys\n"
            "try: print(m.version(sys.argv[1]))\n"
            "except m.PackageNotFoundError: print('missing')\n")
    try:
        out = subprocess.run([str(python), "-c", code, name], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


# ---------------------------------------------------------------- measuring

@dataclass
class SideRun:
    """One timed pass of one side: CPU and wall seconds, per image outcome, the step breakdown."""

    cpu_s: float
    wall_s: float
    images: list[dict]                 # name, kept, reason, bytes (one per input, in order)
    breakdown: dict[str, float] = field(default_factory=dict)   # CPU s per step over the whole set
    mismatched: int = 0                # images whose breakdown output differed from the timed pass's
    jpegs: dict[str, bytes] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # the reference's OpenCV thread count and package versions

    def per_core(self) -> float:
        return len(self.images) / self.cpu_s if self.cpu_s > 0 else 0.0

    def per_wall(self) -> float:
        return len(self.images) / self.wall_s if self.wall_s > 0 else 0.0


def measure_ours(paths: list[Path], breakdown: bool) -> SideRun:
    """`ImageChecks().check(data)` over every image: one untimed warm-up call, then one timed pass."""
    blobs = [p.read_bytes() for p in paths]
    checks = ImageChecks(**SETTINGS)
    checks.check(blobs[0])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = [checks.check(data) for data in blobs]
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    images, jpegs = [], {}
    for path, result in zip(paths, results):
        kept = not isinstance(result, str)
        images.append({"name": path.name, "kept": kept, "reason": None if kept else result,
                       "bytes": len(result.jpeg) if kept else 0})
        if kept:
            jpegs[path.name] = result.jpeg
    run = SideRun(cpu_s, wall_s, images, jpegs=jpegs)
    if breakdown:
        run.breakdown, run.mismatched = breakdown_ours(blobs, checks, results)
    return run


def breakdown_ours(blobs: list[bytes], checks: ImageChecks, results: list) -> tuple[dict[str, float], int]:
    """CPU s per step of `ImageChecks.check`, by calling the steps it calls, in its order, one at a time.

    Uses the module's own helpers (no re-implementation), so the output must be byte-identical to `check`'s;
    the count of images where it is not comes back with the times. The step list follows `_check_open`.
    """
    from cleaners.image import checks as mod
    from cleaners.image.phash import phash

    spent = dict.fromkeys(STEPS_OURS, 0.0)
    mismatched = 0
    for data, expected in zip(blobs, results):
        t0 = time.process_time()
        img = Image.open(io.BytesIO(data))
        img.load()
        spent["decode+load"] += (t1 := time.process_time()) - t0
        upright = mod._exif_transpose(img, {})
        ow, oh = upright.size
        if min(ow, oh) < checks.min_side or max(ow, oh) > checks.max_aspect * min(ow, oh):
            spent["orientation+RGB"] += time.process_time() - t1
            img.close()
            mismatched += not isinstance(expected, str)
            continue
        rgb = mod.to_rgb(upright)
        spent["orientation+RGB"] += (t2 := time.process_time()) - t1
        hash_value = phash(rgb)
        spent["phash"] += (t3 := time.process_time()) - t2
        small = mod._resize_crop(rgb, checks.resolution, mod.RESAMPLE[checks.resample])
        spent["resize+crop"] += (t4 := time.process_time()) - t3
        out = io.BytesIO()
        small.save(out, "JPEG", quality=int(checks.jpeg_quality))
        spent["encode"] += time.process_time() - t4
        img.close()
        mismatched += isinstance(expected, str) or expected.jpeg != out.getvalue() or expected.phash != hash_value
    return spent, mismatched


def measure_reference(python: Path, paths: list[Path], breakdown: bool, timeout_s: float) -> SideRun:
    """bench/img2dataset_resize.py in the reference venv, one process; its JSON report as a SideRun."""
    WORK.mkdir(parents=True, exist_ok=True)
    listing = WORK / "image_throughput_list.txt"
    listing.write_text("".join(f"{p}\n" for p in paths), "utf-8")
    shutil.rmtree(REF_OUT, ignore_errors=True)
    cmd = [str(python), str(REF_SCRIPT), "--list", str(listing), "--out-dir", str(REF_OUT)]
    cmd += ["--breakdown"] if breakdown else []
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise SystemExit(f"reference failed (exit {proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    jpegs = {p.name[:-len(".jpg")]: p.read_bytes() for p in REF_OUT.glob("*.jpg")}
    return SideRun(report["cpu_s"], report["wall_s"], report["images"], report.get("breakdown_cpu_s", {}),
                   report.get("breakdown_mismatched", 0), jpegs,
                   {"opencv_threads": report["opencv_threads"], "versions": report["versions"]})


# ---------------------------------------------------------------- comparing

def agreement(ours: list[dict], ref: list[dict]) -> dict:
    """Counts of images kept by both, by one side only, by neither; drop reasons per side."""
    counts = {"both kept": 0, "ours only": 0, "reference only": 0, "both dropped": 0}
    reasons: dict[str, dict[str, int]] = {"ours": {}, "reference": {}}
    for a, b in zip(ours, ref, strict=True):
        key = {(True, True): "both kept", (True, False): "ours only", (False, True): "reference only",
               (False, False): "both dropped"}[(a["kept"], b["kept"])]
        counts[key] += 1
        for side, row in (("ours", a), ("reference", b)):
            if not row["kept"]:
                reason = row["reason"].split(":")[0]   # "too-small:123" -> "too-small"
                reasons[side][reason] = reasons[side].get(reason, 0) + 1
    return {"counts": counts, "reasons": reasons}


def psnr(a: bytes, b: bytes) -> float:
    """PSNR in dB between two encoded images of the same size, decoded to RGB (inf when identical)."""
    with Image.open(io.BytesIO(a)) as ia, Image.open(io.BytesIO(b)) as ib:
        x = np.asarray(ia.convert("RGB"), dtype=np.float64)
        y = np.asarray(ib.convert("RGB"), dtype=np.float64)
    if x.shape != y.shape:
        return float("nan")
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def output_comparison(ours: SideRun, ref: SideRun) -> dict:
    """Mean JPEG bytes of each side's outputs and the median PSNR between them, over images both kept."""
    names = sorted(set(ours.jpegs) & set(ref.jpegs))
    if not names:
        return {"n": 0}
    sizes_ok = sum(1 for n in names if Image.open(io.BytesIO(ours.jpegs[n])).size
                   == Image.open(io.BytesIO(ref.jpegs[n])).size == (SETTINGS["resolution"],) * 2)
    return {"n": len(names), "ours_mean_bytes": statistics.fmean(len(ours.jpegs[n]) for n in names),
            "ref_mean_bytes": statistics.fmean(len(ref.jpegs[n]) for n in names),
            "median_psnr": statistics.median(psnr(ours.jpegs[n], ref.jpegs[n]) for n in names),
            "both_256": sizes_ok}


def median_run(runs: list[SideRun]) -> SideRun:
    """The run with the median CPU time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r.cpu_s)[(len(runs) - 1) // 2]


def median_breakdown(runs: list[SideRun], steps: list[str]) -> dict[str, float]:
    return {s: statistics.median(r.breakdown.get(s, 0.0) for r in runs) for s in steps}


# ---------------------------------------------------------------- report

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def input_summary(paths: list[Path]) -> str:
    sizes, pixels, jpg = [], [], 0
    for p in paths:
        with Image.open(p) as img:
            pixels.append(img.width * img.height)
        sizes.append(p.stat().st_size)
        jpg += p.suffix == ".jpg"
    return (f"{len(paths)} images ({jpg} JPEG q90, {len(paths) - jpg} PNG), {sum(sizes) / 1e6:.1f} MB, "
            f"median {statistics.median(pixels) / 1e6:.2f} MP, mean {statistics.fmean(sizes) / 1e3:.0f} KB per file")


def breakdown_table(title: str, spent: dict[str, float], total_cpu: float, n: int, mismatched: int) -> list[str]:
    total = sum(spent.values())
    lines = [f"{title} (CPU ms per image, share of the step sum; the timed full pass took "
             f"{1000 * total_cpu / n:.2f} ms per image):", "", "| step | ms per image | share |", "|---|---:|---:|"]
    for step, seconds in spent.items():
        lines.append(f"| {step} | {1000 * seconds / n:.2f} | {100 * seconds / total:.1f}% |" if total else
                     f"| {step} | n/a | n/a |")
    lines.append(f"| sum | {1000 * total / n:.2f} | 100% |")
    lines += ["", f"Outputs differing from the timed pass: {mismatched} of {n}.", ""]
    return lines


def render(ours_runs: list[SideRun], ref_runs: list[SideRun], paths: list[Path], command: str,
           versions: list[str], notes: list[str]) -> str:
    ours, ref = median_run(ours_runs), median_run(ref_runs)
    agree = agreement(ours.images, ref.images)
    outputs = output_comparison(ours_runs[-1], ref_runs[-1])
    n = len(paths)
    ratio = ours.per_core() / ref.per_core() if ref.per_core() else float("nan")
    lines = [
        "# Image checks per core: `ImageChecks` vs img2dataset's Resizer",
        "",
        "```", command, "```", "",
        f"Input: {input_summary(paths)}; crops of the real photos in corpus-samples/image_text "
        "(data-juicer img1-3, NeMo-Curator 0.jpg, Pillow's flower, flower2, sugarshack, hopper).",
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, {platform.system()}, Python {platform.python_version()}.",
        "Both sides: min side 200, max aspect 3.0, short side to 256 + centre crop 256x256, JPEG q95; one process, "
        "one thread (OpenCV pinned with cv2.setNumThreads(1)). Images are read into memory first; the timed "
        f"pass excludes imports and one warm-up call. Median of {len(ours_runs)} interleaved runs by CPU s.",
        "",
        "| side | images | kept | CPU s | wall s | images/s per core | wall images/s | ratio (per core) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| img2dataset 1.47.0 `Resizer` (OpenCV) | {n} | {sum(i['kept'] for i in ref.images)} | {ref.cpu_s:.2f} | "
        f"{ref.wall_s:.2f} | {ref.per_core():.1f} | {ref.per_wall():.1f} | 1.00x |",
        f"| ours: `ImageChecks().check` (Pillow, + EXIF, RGB, pHash) | {n} | {sum(i['kept'] for i in ours.images)} | "
        f"{ours.cpu_s:.2f} | {ours.wall_s:.2f} | {ours.per_core():.1f} | {ours.per_wall():.1f} | **{ratio:.2f}x** |",
        "",
        "CPU s of all runs: ours " + ", ".join(f"{r.cpu_s:.2f}" for r in ours_runs)
        + "; reference " + ", ".join(f"{r.cpu_s:.2f}" for r in ref_runs) + ".",
        "",
        "Agreement (per image): " + ", ".join(f"{k} {v}" for k, v in agree["counts"].items()) + ". Drop reasons: "
        + "; ".join(f"{side} " + (", ".join(f"{r} {c}" for r, c in sorted(rs.items())) or "none")
        for side, rs in agree["reasons"].items()) + ".",
        "",
    ]
    if outputs["n"]:
        lines += [f"Outputs over the {outputs['n']} images both kept ({outputs['both_256']} of them 256x256 on both "
                  f"sides): mean JPEG bytes ours {outputs['ours_mean_bytes']:,.0f}, reference "
                  f"{outputs['ref_mean_bytes']:,.0f} ({outputs['ours_mean_bytes'] / outputs['ref_mean_bytes']:.2f}x); "
                  f"median PSNR between the two sides' outputs {outputs['median_psnr']:.1f} dB (ours resamples "
                  "bicubic, the reference INTER_AREA when shrinking and Lanczos when enlarging).", ""]
    if ours_runs[0].breakdown:
        lines += breakdown_table("Ours, step by step (median per step over runs)",
                                 median_breakdown(ours_runs, STEPS_OURS), ours.cpu_s, n,
                                 max(r.mismatched for r in ours_runs))
    if ref_runs[0].breakdown:
        lines += breakdown_table("Reference, step by step (median per step over runs)",
                                 median_breakdown(ref_runs, STEPS_REF), ref.cpu_s, n,
                                 max(r.mismatched for r in ref_runs))
    lines += ["Versions: " + "; ".join(versions), ""]
    if notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="images in the input set (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per side, interleaved; medians (default 3)")
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--no-breakdown", action="store_true", help="skip the step-by-step passes")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per reference run")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to write")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeat < 1:
        parser.error("--images and --repeat must be at least 1")
    if not (args.samples / "image_text").is_dir():
        parser.error(f"{args.samples / 'image_text'} does not exist (--samples)")

    ref_python = ensure_img2dataset_venv()
    paths = build_images(IMAGES, args.images, args.seed, args.samples)
    ours_runs, ref_runs = [], []
    for i in range(args.repeat):   # interleaved, so drifts in machine load hit both sides alike
        ours_runs.append(measure_ours(paths, breakdown=not args.no_breakdown))
        ref_runs.append(measure_reference(ref_python, paths, not args.no_breakdown, args.timeout))
        print(f"run {i + 1}: ours {ours_runs[-1].cpu_s:.2f} CPU s, reference {ref_runs[-1].cpu_s:.2f} CPU s",
              file=sys.stderr)
    ref_extra = ref_runs[-1].extra
    versions = [f"ours: Pillow {Image.__version__}, numpy {np.__version__}",
                "reference: img2dataset " + installed_version(ref_python, "img2dataset") + ", "
                + ", ".join(f"{k} {v}" for k, v in ref_extra["versions"].items())
                + f" (cv2.getNumThreads() = {ref_extra['opencv_threads']})"]
    notes = [
        "the reference decodes with cv2.IMREAD_UNCHANGED, which ignores EXIF orientation; ours applies it "
        "(these inputs carry no EXIF, so both see the same pixels)",
        "ours does work the reference does not: the 64-bit DCT perceptual hash of the full image (its own row "
        "in the breakdown) and a checked conversion of every pixel mode to RGB",
        "inputs are upscaled from photos of at most 800 px, so they are smoother and compress smaller than "
        "typical web JPEGs of the same size; decode cost per pixel is what matters here and is alike",
        "the breakdown passes call each side's steps in the order the library does (ours: the helpers of "
        "cleaners/image/checks.py; reference: the calls Resizer.__call__ makes) and check the bytes match",
    ]
    command = shlex.join([".venv/bin/python", "bench/image_throughput.py",
                          *(argv if argv is not None else sys.argv[1:])])
    report = render(ours_runs, ref_runs, paths, command, versions, notes)
    print(report)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(report, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
