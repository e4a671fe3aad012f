"""Shared fixtures. `corpus_samples` is ../shared/corpus-samples: skipped with a reason on a fresh clone
without it, a failure when the CI environment variable is set (CI always has it)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "corpus-samples"


@pytest.fixture(scope="session")
def corpus_samples() -> Path:
    if not SAMPLES.is_dir():
        message = f"real corpus samples not found at {SAMPLES} (they live beside the repository in ../shared)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SAMPLES
