"""`MatchInputs`: input globs -> one `FileMetadata` per matched file, broken links included.

Beam's `fileio.MatchAll` leaves out what it cannot stat: a dangling symlink or a symlink loop inside a glob is
skipped without a trace, and one named directly is an empty match that fails the run with a traceback. Here such
an entry is matched like a file of size 0; opening it then fails in the pipeline's reader, which counts it as a
dropped `unreadable-file:<error>` record, like any other file it cannot open. A pattern that matches nothing at
all is still an error, as with `EmptyMatchTreatment.DISALLOW`.
"""
from __future__ import annotations

import glob
import os

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError, FileMetadata
from apache_beam.io.filesystems import FileSystems


def match_pattern(pattern: str) -> list[FileMetadata]:
    """The files `pattern` matches, plus (on local disks) the broken symlinks it names, sorted by path."""
    found = {m.path: m for result in FileSystems.match([pattern]) for m in result.metadata_list}
    if FileSystems.get_scheme(pattern) in (None, "file"):
        local = pattern.removeprefix("file://")
        for path in glob.glob(local, recursive="**" in local):
            if path not in found and os.path.islink(path) and not os.path.exists(path):
                found[path] = FileMetadata(path, 0)
    if not found:
        raise BeamIOError(f"no input file matches {pattern!r}")
    return [found[path] for path in sorted(found)]


class MatchInputs(beam.PTransform):
    """PCollection of glob patterns -> PCollection of `FileMetadata` (see the module docstring)."""

    def expand(self, patterns: beam.PCollection) -> beam.PCollection:
        return patterns | "MatchPattern" >> beam.FlatMap(match_pattern)
