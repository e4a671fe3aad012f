"""The embedded image-text sample (pipelines/data/image_sample): rebuilt byte for byte by its script, small, every
record covered by expected.json, and the expectations real: the per-record caption and image checks give the
planted reasons, kept images are perceptually distinct (no accidental dedup) while the planted duplicates are not.
"""
from __future__ import annotations

import importlib.util
import io
import itertools
import json
import sys
import tarfile
from pathlib import Path

import pytest

from cleaners.image.caption import CaptionChecks
from cleaners.image.checks import ImageChecks
from pipelines.readers.image_text import iter_image_text_file

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pipelines" / "data" / "image_sample"
BUILD = REPO / "scripts" / "build_image_sample.py"
EXPECTED = json.loads((SAMPLE / "expected.json").read_text("utf-8"))
CASES = {c["key"]: c for c in EXPECTED["cases"]}
ENCODED = ("shapes-000.tar", "photos.parquet")        # bytes depend on the Pillow / numpy / pyarrow versions
MAX_DISTANCE = 4                                      # the recipe's dedup.max_distance


def load_build():
    spec = importlib.util.spec_from_file_location("build_image_sample", BUILD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module            # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


def shipped_files() -> dict[str, bytes]:
    return {p.relative_to(SAMPLE).as_posix(): p.read_bytes() for p in sorted(SAMPLE.rglob("*"))
            if p.is_file() and p.name != "README.md"}


def same_versions(build) -> bool:
    return EXPECTED["built_with"] == {"pillow": build.PIL.__version__, "numpy": build.np.__version__,
                                      "pyarrow": build.pa.__version__}


@pytest.fixture(scope="module")
def rebuilt(corpus_samples, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("image_sample")
    build = load_build()
    assert build.main(["--samples", str(corpus_samples), "--output", str(out)]) == 0
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def records() -> list:
    """Every input record, read by the project's own reader, keyed "<file name>#<sample key or row>"."""
    items = []
    for name in ("shapes-000.tar", "photos.parquet", "urls.tsv"):
        with open(SAMPLE / name, "rb") as fh:
            items += list(iter_image_text_file(fh, name))
    return items


# ---------------------------------------------------------------- reproducible and small

def test_rebuild_writes_the_same_file_set_and_version_independent_bytes(rebuilt):
    shipped = shipped_files()
    assert sorted(rebuilt) == sorted(shipped)
    expected_rebuilt = json.loads(rebuilt["expected.json"])
    del expected_rebuilt["built_with"]
    assert expected_rebuilt == {k: v for k, v in EXPECTED.items() if k != "built_with"}
    assert rebuilt["urls.tsv"] == shipped["urls.tsv"]
    assert rebuilt["served/images/soft-404.jpg"] == shipped["served/images/soft-404.jpg"]


def test_rebuild_is_byte_identical_with_the_recorded_library_versions(rebuilt):
    if not same_versions(load_build()):
        pytest.skip(f"JPEG/PNG/Parquet bytes were built with {EXPECTED['built_with']}; "
                    "other versions encode differently")
    shipped = shipped_files()
    differing = [name for name in shipped if rebuilt[name] != shipped[name]]
    assert differing == []


def test_two_builds_in_one_process_are_identical(corpus_samples):
    build = load_build()
    assert build.build(corpus_samples) == build.build(corpus_samples)


def test_build_refuses_a_samples_folder_without_the_photos(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        load_build().main(["--samples", str(tmp_path), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()


def test_sample_is_small():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 420_000, total


def test_tar_members_are_reproducible_and_grouped_by_sample():
    with tarfile.open(SAMPLE / "shapes-000.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    keys = [n.split(".", 1)[0] for n in names]
    assert [k for k, _ in itertools.groupby(keys)] == sorted(set(keys))     # each sample's members contiguous
    assert all(sorted(n.split(".", 1)[1] for n in names if n.startswith(k + ".")) in
               (["jpg", "json", "txt"], ["json", "png", "txt"]) for k in set(keys))


# ---------------------------------------------------------------- expected.json covers the inputs

def test_expected_covers_every_record_exactly_once():
    keys = [item.key for item in records()]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(CASES)
    assert len(EXPECTED["cases"]) == len(CASES)
    files = EXPECTED["files"]
    assert sum(k.startswith("shapes-000.tar#") for k in keys) == files["shapes-000.tar"]["samples"] == 24
    assert sum(k.startswith("photos.parquet#") for k in keys) == files["photos.parquet"]["rows"] == 8
    assert sum(k.startswith("urls.tsv#") for k in keys) == files["urls.tsv"]["rows"] == 8


def test_reader_sees_the_captions_expected_json_lists():
    for item in records():
        case = CASES[item.key]
        if item.key.startswith("photos.parquet#"):
            # the reader drops data-juicer's <__dj__image> token already; the caption checks would too
            assert case["caption"].replace("<__dj__image> ", "") == item.caption
        else:
            assert item.caption == case["caption"]


def test_outcome_totals_match_the_cases():
    counts: dict[str, int] = {}
    for c in EXPECTED["cases"]:
        label = c["expect"] if c["expect"] != "dropped" else f"dropped:{c['stage']}"
        counts[label] = counts.get(label, 0) + 1
    assert counts == EXPECTED["outcomes"]
    assert counts == {"kept": 26, "one-kept": 2, "dropped:caption_text": 2, "dropped:caption_language": 1,
                      "dropped:caption_length": 1, "dropped:image": 6, "dropped:download": 1, "dropped:phash_dedup": 1}


def test_url_rows_are_relative_and_served_except_the_planted_404():
    lines = (SAMPLE / "urls.tsv").read_text("utf-8").splitlines()
    assert lines[0] == "url\tcaption"
    for index, line in enumerate(lines[1:]):
        url = line.split("\t")[0]
        assert url.startswith("images/") and "://" not in url
        served = (SAMPLE / "served" / url).is_file()
        case = CASES[f"urls.tsv#{index}"]
        assert served == (case.get("reason") != "http-404"), url


# ---------------------------------------------------------------- the expectations hold under the real checks

@pytest.fixture(scope="module")
def checked():
    """key -> (caption result, image result or None when the image is never reached)."""
    captions, images = CaptionChecks(), ImageChecks()
    captions.setup()
    results = {}
    for item in records():
        image = item.image
        if image is None:
            path = SAMPLE / "served" / item.url
            image = path.read_bytes() if path.is_file() else None
        results[item.key] = (captions.check(item.caption), images.check(image) if image is not None else None)
    return results


def test_caption_stage_outcomes(checked):
    for key, case in CASES.items():
        caption = checked[key][0]
        if case["expect"] == "dropped" and case["stage"].startswith("caption_"):
            assert caption == case["reason"], key
        else:
            assert isinstance(caption, tuple), (key, caption)
            assert caption[1] == case.get("lang", caption[1]), (key, caption)
            assert "lang" in case or case["expect"] == "dropped", key
            if "caption_out" in case:
                assert caption[0] == case["caption_out"], key


def test_image_stage_outcomes(checked):
    for key, case in CASES.items():
        caption, image = checked[key]
        if case.get("stage") == "download":
            assert image is None, key
        elif case["expect"] == "dropped" and case["stage"] == "image":
            assert image == case["reason"], key
        elif case["expect"] == "dropped" and case["stage"].startswith("caption_"):
            continue
        else:
            assert not isinstance(image, str), (key, image)
            facts = image.facts()
            for name, value in case.get("facts", {}).items():
                assert facts[name] == value, (key, name, facts[name])


def test_exif_rotated_sample_is_stored_sideways():
    key = next(k for k, c in CASES.items() if c["case"] == "image-exif-rotated")
    item = next(i for i in records() if i.key == key)
    from PIL import Image
    with Image.open(io.BytesIO(item.image)) as img:
        assert img.size == (320, 240) and img.getexif().get(0x0112) == 6


def test_planted_duplicates_collide_and_nothing_else_does(checked):
    hashes = {k: r[1].phash for k, r in checked.items() if r[1] is not None and not isinstance(r[1], str)
              and isinstance(r[0], tuple)}
    group = next(c["duplicate_group"] for c in EXPECTED["cases"] if c["expect"] == "one-kept")
    near = next(c for c in EXPECTED["cases"] if "duplicate_of" in c)
    assert hashes[group[0]] == hashes[group[1]]
    assert bin(hashes[near["key"]] ^ hashes[near["duplicate_of"]]).count("1") <= MAX_DISTANCE
    planted = {frozenset(group), frozenset((near["key"], near["duplicate_of"]))}
    too_close = [(a, b) for a, b in itertools.combinations(sorted(hashes), 2)
                 if frozenset((a, b)) not in planted and bin(hashes[a] ^ hashes[b]).count("1") <= MAX_DISTANCE]
    assert too_close == []


def test_near_duplicate_original_has_more_pixels(checked):
    near = next(c for c in EXPECTED["cases"] if "duplicate_of" in c)
    small, original = checked[near["key"]][1], checked[near["duplicate_of"]][1]
    assert original.original_width * original.original_height > small.original_width * small.original_height


def test_planted_personal_data_is_invented_and_present():
    pii = next(c for c in EXPECTED["cases"] if c["case"] == "caption-pii")
    assert "13812345678" in pii["caption"] and "shop@example.com" in pii["caption"]
    assert "13812345678" not in pii["caption_out"] and "<PHONE>" in pii["caption_out"]
