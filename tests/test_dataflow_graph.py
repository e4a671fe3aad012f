"""Dataflow readiness without submitting: the text, dialogue and image-text graphs build under DataflowRunner's
options, serialize to the portable proto and back (every DoFn pickles), carry no path of this checkout, and the
wheel a remote worker installs carries the package data."""
from __future__ import annotations

import base64
import bz2
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.portability.api import beam_runner_api_pb2

from pipelines.run import pipeline_options

REPO = Path(__file__).resolve().parents[1]
BUCKET = "gs://wudao-test-bucket"
COMMON = ["--runner=DataflowRunner", "--project=wudao-test-123", "--region=us-central1",
          f"--temp_location={BUCKET}/tmp"]
SHIPPING = {"setup_file": ["--setup_file=./setup.py"],
            "container": ["--sdk_container_image=us-docker.pkg.dev/wudao-test-123/wudao/wudao:0.1.0"]}


def _builders():
    from functools import partial

    from cleaners.recipe import load_recipe
    from pipelines.dialogue import build_dialogue_pipeline
    from pipelines.image_text import build_image_text_pipeline
    from pipelines.text import build_text_pipeline

    return {"text": (build_text_pipeline, load_recipe),
            "dialogue": (build_dialogue_pipeline, partial(load_recipe, kind="dialogue")),
            "image-text": (build_image_text_pipeline, partial(load_recipe, kind="image_text"))}


def _gcs_available() -> bool:
    try:
        FileSystems.get_filesystem(f"{BUCKET}/x")
        return True
    except ValueError:
        return False


def _dofn_pickles(proto: beam_runner_api_pb2.Pipeline) -> list[bytes]:
    """The raw pickled bytes of every ParDo's DoFn (Beam stores them bz2-compressed, base64-encoded)."""
    out = []
    for transform in proto.components.transforms.values():
        if transform.spec.urn == "beam:transform:pardo:v1":
            payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn.payload
            out.append(bz2.decompress(base64.b64decode(payload)))
    return out


def _without_source_names(pickled: bytes) -> bytes:
    """Drop `co_filename`s (`/.../x.py`) of functions cloudpickle pickled by value: debug info, never opened."""
    return re.sub(rb"/[\w./-]+\.py", b"", pickled)


@pytest.mark.parametrize("shipping", sorted(SHIPPING))
@pytest.mark.parametrize("name", ["text", "dialogue", "image-text"])
def test_graph_builds_and_serializes_under_dataflow_options(name, shipping):
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    build, load = _builders()[name]
    options = pipeline_options(COMMON + SHIPPING[shipping])
    pipeline = beam.Pipeline(options=options)
    assert isinstance(pipeline.runner, DataflowRunner)
    inputs = [f"{BUCKET}/in/{name}/*"]  # gs:// inputs are only matched when the job runs
    if _gcs_available():
        output = f"{BUCKET}/out/{name}"
    else:  # without apache-beam[gcp] a gs:// output fails at graph build, saying what to install
        with pytest.raises(ValueError, match=r"apache-beam\[gcp\]"):
            build(beam.Pipeline(options=options), inputs, f"{BUCKET}/out/{name}", load(None))
        output = f"out/{name}"  # relative: no path of this machine may end up in the graph
    build(pipeline, inputs, output, load(None))

    proto = pipeline.to_runner_api()
    assert len(proto.SerializeToString()) > 1000
    pickles = _dofn_pickles(proto)
    assert len(pickles) >= 10
    for local in (str(REPO), "/tmp/", str(Path.home())):
        found = [p for p in map(_without_source_names, pickles) if local.encode() in p]
        assert not found, f"{local} is pickled into a DoFn"
    assert any(output.encode() in p for p in pickles)  # the sink paths are in the graph, as given
    again = beam.Pipeline.from_runner_api(proto, pipeline.runner, options)  # unpickles every DoFn
    assert again.to_runner_api().components.transforms.keys() == proto.components.transforms.keys()


@pytest.mark.slow
def test_wheel_carries_package_data(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for package in ("pipelines", "cleaners", "tokenizer", "shards", "train"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("wudao_corpora-0.1.0-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cleaners/data/lid/lid_zh_en.ftz" in names
    assert "pipelines/cli.py" in names and "shards/writer.py" in names
    for folder, pattern in (("cleaners/data", ".yaml"), ("pipelines/data/sample", ""),
                            ("pipelines/data/image_sample", "")):
        expected = {str(p.relative_to(REPO)) for p in (REPO / folder).glob(f"*{pattern}") if p.is_file()}
        assert expected and expected <= names, sorted(expected - names)
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
