"""Hostile inputs: manifests naming commands or paths outside their folder, malformed manifests given to
`wudao shards verify`, and checkpoints holding pickled objects given to `wudao train --resume` / `wudao sample`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from pipelines.cli import main
from shards.manifest import ManifestError, build_manifest, verify, write_manifest
from shards.reader import StreamingShards, resolve_source
from shards.writer import encode_sample, write_shard
from tokenizer.vocab import Vocab
from tokenizer.vq import CheckpointError, VQVAE
from train.loop import load_checkpoint

TINY = dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, seq_len=32, batch_size=2, warmup_steps=1)


class RunsCode:
    """Pickles as `open(marker, "w")`: loading it with plain pickle would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _shard_dir(folder: Path) -> Path:
    """One real train shard + manifest + vocab.json, as `wudao shards` leaves them."""
    folder.mkdir(parents=True, exist_ok=True)
    Vocab.build(200, image_codes=64).write(str(folder))
    samples = [encode_sample({"id": f"d{i:03d}"}, list(range(3, 40)), "uint16") for i in range(4)]
    info = write_shard(samples, str(folder / "train-000000.tar"))
    write_manifest(str(folder), build_manifest([{**info.to_dict(), "split": "train"}], "h", "uint16", 32, "t"))
    return folder


def _with_name(folder: Path, name, split: str = "train") -> None:
    """Add an entry named `name` (otherwise well-formed) to the folder's manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"].append({**manifest["shards"][0], "name": name, "split": split})
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _config(tmp_path: Path) -> str:
    path = tmp_path / "c.yaml"
    path.write_text("base: tiny\n" + "".join(f"{k}: {v}\n" for k, v in TINY.items()))
    return str(path)


# ---------------------------------------------------------------- manifest names


BAD_NAMES = ["pipe:touch {marker}", "pipe:cat x.tar", "../outside.tar", "/etc/passwd", "{marker}",
             "http://example.com/x.tar", "file:///etc/passwd", "memory://h/x.tar", "sub/x.tar", "a\\b.tar",
             "x\0.tar", "..", ".", "", 7, None]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_manifest_names_must_be_plain_file_names(tmp_path, name):
    marker = tmp_path / "x"
    name = name.format(marker=marker) if isinstance(name, str) else name
    folder = _shard_dir(tmp_path / "s")
    _with_name(folder, name)
    where = re.escape(str(folder / "manifest.json"))
    with pytest.raises(ManifestError, match=where + ".*" + re.escape(repr(name)[:40])):
        resolve_source(folder)
    with pytest.raises(ManifestError, match=where):
        StreamingShards(str(folder), seed=0, shuffle_buffer=0, seq_len=8)
    assert not marker.exists()


def test_bad_name_in_another_split_still_refuses_the_manifest(tmp_path):
    marker = tmp_path / "x"
    folder = _shard_dir(tmp_path / "s")
    _with_name(folder, f"pipe:touch {marker}", split="val")
    with pytest.raises(ManifestError, match="pipe:touch"):
        resolve_source(folder, split="train")
    assert not marker.exists()


@pytest.mark.parametrize("text", ["{not json", "[]", '"shards"', '{"shards": "x"}', '{"shards": [1]}'])
def test_malformed_manifest_is_a_manifest_error(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match=re.escape(str(tmp_path / "manifest.json"))):
        resolve_source(tmp_path)


def test_user_given_pipe_and_plain_names_still_read(tmp_path):
    folder = _shard_dir(tmp_path / "s")
    kw = dict(seed=0, shuffle_buffer=0, seq_len=8)
    want = [s.tolist() for s in StreamingShards(str(folder), **kw)]
    assert want and [s.tolist() for s in StreamingShards([f"pipe:cat {folder}/train-000000.tar"], **kw)] == want


def test_remote_manifest_joins_plain_names_and_refuses_others(tmp_path):
    import fsspec

    folder = _shard_dir(tmp_path / "s")
    fs = fsspec.filesystem("memory")
    fs.pipe("/hostile17/ok/train-000000.tar", (folder / "train-000000.tar").read_bytes())
    fs.pipe("/hostile17/ok/manifest.json", (folder / "manifest.json").read_bytes())
    assert resolve_source("memory://hostile17/ok") == ["memory://hostile17/ok/train-000000.tar"]
    assert len(list(StreamingShards("memory://hostile17/ok", seed=0, shuffle_buffer=0, seq_len=8))) > 0
    bad = {"shards": [{"name": "../other/train-000000.tar", "split": "train"}]}
    fs.pipe("/hostile17/bad/manifest.json", json.dumps(bad).encode())
    with pytest.raises(ManifestError, match=r"memory://hostile17/bad/manifest.json.*\.\./other"):
        resolve_source("memory://hostile17/bad/manifest.json")


def test_train_command_refuses_a_pipe_manifest_before_reading(tmp_path, capsys):
    marker = tmp_path / "x"
    folder = _shard_dir(tmp_path / "s")
    _with_name(folder, f"pipe:touch {marker}")
    args = ["train", "--shards", str(folder), "--model", "glm", "--config", _config(tmp_path), "--steps", "1",
            "--out", str(tmp_path / "run")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "wudao train:" in err and "pipe:touch" in err and "manifest.json" in err and "Traceback" not in err
    assert not marker.exists()


# ---------------------------------------------------------------- verify


def test_verify_does_not_follow_names_outside_the_folder(tmp_path, monkeypatch, capsys):
    import shards.manifest as manifest_module

    folder = _shard_dir(tmp_path / "s")
    (tmp_path / "outside.tar").write_bytes((folder / "train-000000.tar").read_bytes())  # a valid, matching shard
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"][0]["name"] = "../outside.tar"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "train-000000.tar").unlink()
    opened = []
    monkeypatch.setattr(manifest_module, "file_sha256", lambda path: opened.append(path) or ("", 0))
    problems = verify(str(folder))
    assert any("'../outside.tar'" in p and "not a plain file name" in p for p in problems)
    assert opened == []
    assert main(["shards", "verify", str(folder)]) == 1
    assert "../outside.tar" in capsys.readouterr().err


def _entry_with(field, value):
    def change(manifest):
        if value is KeyError:
            del manifest["shards"][0][field]
        else:
            manifest["shards"][0][field] = value
    return change


MALFORMED = {
    "not json": "{not json",
    "not an object": "[1, 2]",
    "a string": '"manifest"',
    "shards not a list": lambda m: m.update(shards={"name": "train-000000.tar"}),
    "shards missing": lambda m: m.pop("shards"),
    "entry not a dict": lambda m: m["shards"].append("train-000000.tar"),
    "entry a list": lambda m: m["shards"].append([1, 2]),
    "name not a string": _entry_with("name", ["train-000000.tar"]),
    "name missing": _entry_with("name", KeyError),
    "sha256 not a string": _entry_with("sha256", 12345),
    "samples a string": _entry_with("samples", "4"),
    "samples a bool": _entry_with("samples", True),
    "samples negative": _entry_with("samples", -1),
    "bytes a float": _entry_with("bytes", 1.5),
    "tokens null": _entry_with("tokens", None),
    "split a list": _entry_with("split", ["train"]),
    "split unknown": _entry_with("split", "test"),
    "dtype a list": lambda m: m.update(dtype=["uint16"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_verify_reports_malformed_manifests_without_traceback(tmp_path, capsys, case):
    folder = _shard_dir(tmp_path / "s")
    change = MALFORMED[case]
    if isinstance(change, str):
        (folder / "manifest.json").write_text(change)
    else:
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    problems = verify(str(folder))
    assert problems and all(isinstance(p, str) for p in problems)
    assert main(["shards", "verify", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "manifest" in err and "Traceback" not in err


# ---------------------------------------------------------------- checkpoints


def _evil_checkpoint(path: Path, marker: Path) -> None:
    torch.save({"model": {}, "optimizer": {}, "reader": {}, "step": 0, "batches": 0, "config": {},
                "kind": "cogview", "payload": RunsCode(str(marker))}, path)


BROKEN = {"garbage": b"not a checkpoint at all " * 20, "empty": b"", "text": b"hello"}


def _broken_checkpoint(path: Path, kind: str) -> None:
    if kind == "truncated":
        torch.save({"model": {"w": torch.zeros(64)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(BROKEN[kind])


def test_load_checkpoint_refuses_pickled_objects(tmp_path):
    marker, path = tmp_path / "executed", tmp_path / "ckpt.pt"
    _evil_checkpoint(path, marker)
    for load in (lambda: load_checkpoint(str(path)), lambda: VQVAE.load(str(path))):
        with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*could run code when loaded"):
            load()
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["garbage", "empty", "text", "truncated"])
def test_load_checkpoint_reports_non_torch_files(tmp_path, kind):
    path = tmp_path / "ckpt.pt"
    _broken_checkpoint(path, kind)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*cannot be read as a torch checkpoint"):
        load_checkpoint(str(path))


def test_load_checkpoint_needs_a_training_dict(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="not a wudao training checkpoint"):
        load_checkpoint(str(path))


@pytest.mark.parametrize("kind", ["evil", "garbage", "truncated"])
def test_train_resume_refuses_bad_checkpoint(tmp_path, capsys, kind):
    marker, run = tmp_path / "executed", tmp_path / "run"
    folder = _shard_dir(tmp_path / "s")
    run.mkdir()
    if kind == "evil":
        _evil_checkpoint(run / "ckpt.pt", marker)
    else:
        _broken_checkpoint(run / "ckpt.pt", kind)
    args = ["train", "--shards", str(folder), "--model", "glm", "--config", _config(tmp_path), "--steps", "1",
            "--out", str(run), "--resume"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("wudao train: ") and str(run / "ckpt.pt") in err and "Traceback" not in err
    assert "weights_only=False" not in err and len(err.strip().splitlines()) == 1
    if kind == "evil":
        assert "could run code when loaded" in err and "wudao train" in err
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["evil", "garbage", "empty"])
def test_sample_refuses_bad_checkpoint(tmp_path, capsys, kind):
    marker, ckpt, out = tmp_path / "executed", tmp_path / "ckpt.pt", tmp_path / "out.png"
    if kind == "evil":
        _evil_checkpoint(ckpt, marker)
    else:
        _broken_checkpoint(ckpt, kind)
    args = ["sample", "--checkpoint", str(ckpt), "--tokenizer", str(tmp_path), "--vq", str(tmp_path / "vq.pt"),
            "--caption", "a cat", "--output", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("wudao sample: ") and str(ckpt) in err and "Traceback" not in err
    assert "weights_only=False" not in err and len(err.strip().splitlines()) == 1
    if kind == "evil":
        assert "could run code when loaded" in err and "Only checkpoints written by `wudao train`" in err
    assert not marker.exists() and not out.exists()
