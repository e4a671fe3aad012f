"""The design's rooms: `cleaners/`, `tokenizer/`, `shards/` and `train/` never import Apache Beam (DESIGN.md), so
every rule and model can be used and tested without it. Each of their modules is imported in a fresh interpreter in
which `apache_beam` cannot be imported."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAM_FREE = ("cleaners", "tokenizer", "shards", "train")

PROBE = """
import importlib, importlib.abc, pkgutil, sys

class NoBeam(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "apache_beam" or name.startswith("apache_beam."):
            raise ImportError(f"{name} is not allowed in this room")
        return None

sys.meta_path.insert(0, NoBeam())
imported = []
for package in sys.argv[1:]:
    module = importlib.import_module(package)
    imported.append(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
assert not any(name.startswith("apache_beam") for name in sys.modules), "apache_beam was imported"
print(len(imported))
"""


def test_beam_free_rooms_import_without_apache_beam():
    done = subprocess.run([sys.executable, "-c", PROBE, *BEAM_FREE], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = sum(1 for package in BEAM_FREE for _ in (ROOT / package).rglob("*.py"))
    assert int(done.stdout.split()[-1]) == modules
