"""`tune_malloc`: glibc malloc settings for this process and, through the environment, for the worker
processes a run starts; a value the user set wins."""
from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = ("import json, subprocess, sys; from pipelines.memory import tune_malloc; applied = tune_malloc(); "
         "child = subprocess.run([sys.executable, '-c', 'import os, json; print(json.dumps({k: os.environ.get(k) "
         "for k in (\"MALLOC_ARENA_MAX\", \"MALLOC_TRIM_THRESHOLD_\")}))'], capture_output=True, text=True).stdout; "
         "print(json.dumps([applied, json.loads(child), tune_malloc()]))")


def _probe(**env: str) -> list:
    clean = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_")}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env},
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_tunes_this_process_and_its_children():
    applied, child, again = _probe()
    assert applied == {"MALLOC_ARENA_MAX": True, "MALLOC_TRIM_THRESHOLD_": True}  # glibc here: mallopt took them
    assert child == {"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "65536"}  # a worker inherits them
    assert again == {"MALLOC_ARENA_MAX": False, "MALLOC_TRIM_THRESHOLD_": False}  # a second call changes nothing


def test_a_users_value_wins():
    applied, child, _ = _probe(MALLOC_ARENA_MAX="7")
    assert applied == {"MALLOC_ARENA_MAX": False, "MALLOC_TRIM_THRESHOLD_": True}
    assert child == {"MALLOC_ARENA_MAX": "7", "MALLOC_TRIM_THRESHOLD_": "65536"}
