"""`manifest.json` beside the shards, and `verify(dir)`: do the shards on disk match what the manifest says?

Manifest: {"shards": [{"name", "split", "samples", "tokens", "bytes", "sha256", "tokens_per_label"}],
"tokens_per_label", "tokenizer_hash", "dtype", "seq_len", "command", "created_with"}. It holds no timestamps, so
the same inputs give the same manifest. `tokens_per_label` is {dataType label: tokens} ("" for samples without
a label), per shard and in total; manifests written before it existed lack it and are still read and verified.
Shard names are data, never commands or paths: only plain file names inside the manifest's folder are read
(`name_problem`); readers and `verify` refuse a manifest naming anything else.
"""
from __future__ import annotations

import io
import json
import os
import platform
import sys
from typing import Any, Iterable

import numpy as np

from shards.index import build_index, index_path, open_index
from shards.sample import label_of
from shards.tar import Damage, Sample, group_samples, iter_members
from shards.writer import SPLITS, file_sha256

MANIFEST = "manifest.json"
ENTRY_FIELDS = ("name", "split", "samples", "tokens", "bytes", "sha256")
_COUNT_FIELDS = ("samples", "tokens", "bytes")
LABELS = "tokens_per_label"


class ManifestError(ValueError):
    """A manifest that is refused: the manifest and the bad entry are in the message."""


def name_problem(name: Any) -> str | None:
    """Why `name` is not a plain file name inside the manifest's folder, or None when it is.

    Refused: non-strings, '', '.', '..', and names holding '/', '\\', ':' or NUL (so no `pipe:` commands, urls,
    absolute paths or paths leaving the folder)."""
    if not isinstance(name, str):
        return f"shard name {name!r:.120} is not a string"
    if name in ("", ".", "..") or any(c in name for c in "/\\:\0"):
        return (f"shard name {name!r:.120} is not a plain file name inside the manifest's folder "
                "(pipe: commands, urls, absolute paths, '..' and path separators are refused)")
    return None


def entry_problems(entry: Any, index: int) -> list[str]:
    """Why a manifest's `shards[index]` is malformed: not an object, missing fields, fields of the wrong type."""
    if not isinstance(entry, dict):
        return [f"manifest entry #{index} is not an object: {entry!r:.80}"]
    missing = [f for f in ENTRY_FIELDS if f not in entry]
    if missing:
        return [f"manifest entry #{index} ({entry.get('name')!r:.80}) lacks {missing}"]
    problems = [f"manifest entry #{index}: {p}" for p in [name_problem(entry["name"])] if p]
    if not isinstance(entry["split"], str) or entry["split"] not in SPLITS:
        problems.append(f"manifest entry #{index}: unknown split {entry['split']!r:.80}")
    for field in _COUNT_FIELDS:
        value = entry[field]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"manifest entry #{index}: {field} {value!r:.80} is not a count")
    if not isinstance(entry["sha256"], str):
        problems.append(f"manifest entry #{index}: sha256 {entry['sha256']!r:.80} is not a string")
    if LABELS in entry:  # optional: older manifests lack it
        labels = entry[LABELS]
        problem = _labels_problem(labels)
        if problem:
            problems.append(f"manifest entry #{index}: {problem}")
        elif isinstance(entry["tokens"], int) and sum(labels.values()) != entry["tokens"]:
            problems.append(f"manifest entry #{index}: {LABELS} sums to {sum(labels.values())}, "
                            f"tokens is {entry['tokens']}")
    return problems


def _labels_problem(labels: Any) -> str | None:
    """Why `labels` is not a {label: token count} object, or None when it is."""
    if not isinstance(labels, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in labels.values()):
        return f"{LABELS} {labels!r:.80} is not an object of token counts"
    return None


def sum_labels(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """The per-label sum of several {label: tokens} dicts, labels sorted."""
    total: dict[str, int] = {}
    for labels in counts:
        for label, tokens in labels.items():
            total[label] = total.get(label, 0) + tokens
    return dict(sorted(total.items()))


def created_with() -> dict[str, str]:
    """Versions that may decide the shard bytes (numpy's npy header; the tar headers are `shards.tar`'s own)."""
    return {"wudao-corpora": _version(), "python": platform.python_version(), "numpy": np.__version__}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("wudao-corpora")
    except Exception:  # running from a source tree that was never installed
        return "unknown"


def build_manifest(entries: Iterable[dict[str, Any]], tokenizer_hash: str, dtype: str, seq_len: int,
                   command: str) -> dict[str, Any]:
    """The manifest dict, shards sorted by name, with the total `tokens_per_label`; an entry missing a field
    (`tokens_per_label` included) raises ValueError."""
    shards = []
    for entry in entries:
        missing = [f for f in ENTRY_FIELDS + (LABELS,) if f not in entry]
        if missing:
            raise ValueError(f"manifest entry {entry.get('name')!r} lacks {missing}")
        shards.append({**{f: entry[f] for f in ENTRY_FIELDS}, LABELS: dict(sorted(entry[LABELS].items()))})
    shards.sort(key=lambda e: e["name"])
    return {"shards": shards, LABELS: sum_labels(e[LABELS] for e in shards), "tokenizer_hash": tokenizer_hash,
            "dtype": dtype, "seq_len": seq_len, "command": command, "created_with": created_with()}


def write_manifest(directory: str, manifest: dict[str, Any]) -> str:
    """Write `directory/manifest.json` atomically (temp file, then rename); returns its path."""
    path = os.path.join(directory, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_manifest(directory: str) -> dict[str, Any] | None:
    """The manifest in `directory`, or None when there is none or it does not parse."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("shards"), list) else None


def _check_samples(path: str, entry: dict[str, Any], dtype: str) -> list[str]:
    """Problems inside one tar: a cut or corrupt archive, members that are no sample file, a sample whose members
    are not together, unpaired members, npy of the wrong dtype, token counts unlike the json, token counts per
    label unlike the entry's `tokens_per_label` (when it has one)."""
    name, problems, members = entry["name"], [], {}
    try:
        with open(path, "rb") as fh:
            for item in group_samples(iter_members(fh)):
                if isinstance(item, Damage):
                    return [f"{name}: unreadable tar ({item.reason}: {item.detail})"]
                if not isinstance(item, Sample):
                    problems.append(f"{name}: member {item.name!r:.120} is not a sample file")
                elif item.key in members:
                    problems.append(f"{name}: sample {item.key} is in the tar twice (its members are not together)")
                else:
                    members[item.key] = item.files
    except OSError as exc:
        return [f"{name}: unreadable tar ({exc})"]
    tokens, labels = 0, {}
    for key, sample in sorted(members.items()):
        if set(sample) != {"npy", "json"}:
            problems.append(f"{name}: sample {key} has members {sorted(sample)}, expected json and npy")
            continue
        try:
            arr = np.load(io.BytesIO(sample["npy"]), allow_pickle=False)
            meta = json.loads(sample["json"])
        except (ValueError, EOFError) as exc:
            problems.append(f"{name}: sample {key} does not decode ({exc})")
            continue
        if not isinstance(meta, dict):
            problems.append(f"{name}: sample {key} json is not an object")
            continue
        if arr.dtype != np.dtype(dtype).newbyteorder("<") or arr.ndim != 1:
            problems.append(f"{name}: sample {key} npy is {arr.dtype}{list(arr.shape)}, expected 1-D {dtype}")
        if meta.get("tokens") != arr.size or meta.get("id") != key:
            problems.append(f"{name}: sample {key} json says {meta.get('tokens')} tokens, npy holds {arr.size}")
        if not isinstance(meta.get("dataType", ""), str):
            problems.append(f"{name}: sample {key} dataType {meta['dataType']!r:.80} is not a string")
        tokens += arr.size
        labels[label_of(meta)] = labels.get(label_of(meta), 0) + arr.size
    if len(members) != entry["samples"]:
        problems.append(f"{name}: {len(members)} samples, manifest says {entry['samples']}")
    if tokens != entry["tokens"]:
        problems.append(f"{name}: {tokens} tokens, manifest says {entry['tokens']}")
    if LABELS in entry and labels != entry[LABELS]:
        problems.append(f"{name}: tokens per label {sum_labels([labels])}, manifest says {entry[LABELS]}")
    return problems


def _check_index(path: str, entry: dict[str, Any]) -> list[str]:
    """A token index beside the shard (shards/index.py) must be the one its tar gives; none is no problem (the
    reader then reads the tar)."""
    name = entry["name"]
    if not os.path.exists(index_path(path)):
        return []
    opened = open_index(path, entry["sha256"])
    if isinstance(opened, str):
        return [f"{name}: token index unusable: {opened}"]
    try:
        _, rows = build_index(path, entry["sha256"])
    except ValueError:
        return []  # the tar's own problems are reported by _check_samples
    stored = np.stack([opened.starts * opened.tokens.itemsize, opened.ends - opened.starts, opened.labels], 1)
    if not np.array_equal(rows, stored):
        return [f"{name}: token index does not match the tar"]
    return []


def _load(directory: str) -> tuple[dict[str, Any] | None, list[str]]:
    """(manifest, problems): the manifest when it is a JSON object with a well-formed `shards` list."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return None, [f"{path}: missing or not a manifest"]
    if not isinstance(manifest, dict):
        return None, [f"{path}: not a manifest (a JSON {type(manifest).__name__}, not an object)"]
    if not isinstance(manifest.get("shards"), list):
        return None, [f"{path}: not a manifest ('shards' is not a list)"]
    problems = [p for i, e in enumerate(manifest["shards"]) for p in entry_problems(e, i)]
    dtype = manifest.get("dtype")
    if dtype not in ("uint16", "uint32"):
        problems.append(f"manifest dtype {dtype!r:.80} is not uint16 or uint32")
    if LABELS in manifest and not problems:
        problem = _labels_problem(manifest[LABELS])
        entries = [e[LABELS] for e in manifest["shards"] if LABELS in e]
        if problem:
            problems.append(f"manifest {problem}")
        elif len(entries) != len(manifest["shards"]):
            problems.append(f"manifest has a total {LABELS} but {len(manifest['shards']) - len(entries)} "
                            "entries lack theirs")
        elif manifest[LABELS] != sum_labels(entries):
            problems.append(f"manifest {LABELS} {manifest[LABELS]} is not the sum over its shards "
                            f"{sum_labels(entries)}")
    return (None if problems else manifest), [f"{path}: {p}" for p in problems]


def verify(directory: str) -> list[str]:
    """Every problem found in `directory` (empty list: all good): a missing or malformed manifest, a missing
    shard, a size or sha256 mismatch, bad samples, counts unlike the manifest, a .tar the manifest does not list.
    A malformed manifest (bad types, names outside the folder) is reported without reading any shard."""
    manifest, problems = _load(directory)
    if manifest is None:
        return problems
    listed = set()
    for entry in manifest["shards"]:
        name = entry["name"]
        listed.add(name)
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            problems.append(f"{name}: missing")
            continue
        digest, size = file_sha256(path)
        if size != entry["bytes"]:
            problems.append(f"{name}: {size} bytes, manifest says {entry['bytes']}")
        if digest != entry["sha256"]:
            problems.append(f"{name}: sha256 {digest}, manifest says {entry['sha256']}")
        problems.extend(_check_samples(path, entry, manifest["dtype"]))
        problems.extend(_check_index(path, entry))
    for extra in sorted(set(n for n in os.listdir(directory) if n.endswith(".tar")) - listed):
        problems.append(f"{extra}: not listed in the manifest")
    return problems


def main_verify(directory: str) -> int:
    """`wudao shards verify DIR`: print each problem; 0 when there are none, 1 otherwise."""
    problems = verify(directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    manifest = read_manifest(directory) or {"shards": []}
    if not problems:
        shards = manifest["shards"]
        print(f"ok: {len(shards)} shards, {sum(e['samples'] for e in shards)} samples, "
              f"{sum(e['tokens'] for e in shards)} tokens")
    return 1 if problems else 0
