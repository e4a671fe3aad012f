"""`limit_malloc_arenas`: sets MALLOC_ARENA_MAX for the processes a run starts, unless the user chose a value."""
from __future__ import annotations

import subprocess
import sys

from pipelines.memory import limit_malloc_arenas

PROBE = ("import os, sys; from pipelines.memory import limit_malloc_arenas; capped = limit_malloc_arenas(); "
         "import subprocess; child = subprocess.run([sys.executable, '-c', "
         "'import os; print(os.environ.get(\"MALLOC_ARENA_MAX\"))'], capture_output=True, text=True).stdout.strip(); "
         "print(capped, child)")


def _probe(env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_caps_this_process_and_its_children(monkeypatch):
    env = {k: v for k, v in __import__("os").environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _probe(env) == "True 2"  # glibc here: mallopt succeeded; a worker process inherits the cap


def test_a_users_value_wins():
    env = {**__import__("os").environ, "MALLOC_ARENA_MAX": "7"}
    assert _probe(env) == "False 7"


def test_idempotent(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    limit_malloc_arenas()
    assert limit_malloc_arenas() is False  # the second call sees the variable the first one set
