"""Progress of a run: counts from the DoFns, a live line on local runs, Beam counters everywhere.

Reporter side (inside DoFns; plain Python): `count(records_read=1, ...)` adds to this process's totals and
to the Beam counters `wudao/<name>` (what remote runners show in their UI). When `WUDAO_PROGRESS_DIR` is set,
the process also keeps one small JSON file of its totals in that folder, rewritten atomically (temporary
name, then `os.replace`) at most every `INTERVAL` seconds and on `flush()` (finish_bundle). Without the
variable no file is written. Local workers in subprocesses inherit the variable, so every local mode works.

Display side (the CLI): `live(inputs)` makes the folder, exports the variable and shows one tqdm line that
sums the files: files read/total, records read, kept, dropped, MB read of the input's size and an ETA.
Quiet when the stream is not a terminal. Nothing here may fail a run: errors are logged at debug level.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

LOG = logging.getLogger(__name__)
ENV = "WUDAO_PROGRESS_DIR"
NAMESPACE = "wudao"
INTERVAL = 0.5
#: the counts shown on the line, in order; any other count (e.g. `written`) is appended when non-zero
FIELDS = ("files_read", "bytes_read", "records_read", "kept", "dropped")
#: False turns the live line off for this process (`--no-progress`); the counts and counters stay
enabled = True


class Reporter:
    """One process's totals, kept in `directory/<pid>-<token>.json` (throttled, atomic rewrites)."""

    def __init__(self, directory: str, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.directory, self.interval, self.clock = directory, interval, clock
        self.pid = os.getpid()
        self.path = os.path.join(directory, f"{self.pid}-{uuid.uuid4().hex[:12]}.json")
        self.totals: Counter = Counter()
        self._lock = threading.Lock()
        self._written_at: float | None = None
        self._dirty = False

    def add(self, deltas: dict[str, int]) -> None:
        with self._lock:
            self.totals.update(deltas)
            self._dirty = True
            now = self.clock()
            if self._written_at is None or now - self._written_at >= self.interval:
                self._write(now)

    def flush(self) -> None:
        with self._lock:
            if self._dirty:
                self._write(self.clock())

    def _write(self, now: float) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(dict(self.totals), fh)
        os.replace(tmp, self.path)
        self._written_at, self._dirty = now, False


_reporter: Reporter | None = None
_reporter_lock = threading.Lock()
_counters: dict[str, Any] = {}


def _current() -> Reporter | None:
    """This process's reporter for the folder in the environment (a new one after a fork or a new run)."""
    global _reporter
    directory = os.environ.get(ENV)
    if not directory:
        return None
    reporter = _reporter
    if reporter is None or reporter.directory != directory or reporter.pid != os.getpid():
        with _reporter_lock:
            reporter = _reporter
            if reporter is None or reporter.directory != directory or reporter.pid != os.getpid():
                reporter = _reporter = Reporter(directory)
    return reporter


def counter(name: str):
    """The Beam counter `wudao/<name>`, cached per process: the one namespace of every pipeline's counters
    (progress fields here, ledger counts from `ledger.SumPerBundle`, and a few stage facts such as
    `download|ok`)."""
    found = _counters.get(name)
    if found is None:
        from apache_beam.metrics import Metrics

        found = _counters[name] = Metrics.counter(NAMESPACE, name)
    return found


def _beam_counters(deltas: dict[str, int]) -> None:
    for name, n in deltas.items():
        counter(name).inc(n)


def count(**deltas: int) -> None:
    """Add to this run's progress: files_read, bytes_read, records_read, kept, dropped (or another name)."""
    deltas = {name: n for name, n in deltas.items() if n}
    if not deltas:
        return
    try:
        _beam_counters(deltas)
        reporter = _current()
        if reporter is not None:
            reporter.add(deltas)
    except Exception:
        LOG.debug("progress count failed", exc_info=True)


def flush() -> None:
    """Write this process's totals now (DoFn.finish_bundle / teardown)."""
    try:
        reporter = _current()
        if reporter is not None:
            reporter.flush()
    except Exception:
        LOG.debug("progress flush failed", exc_info=True)


def track_file(items: Iterable[Any], stream: Any, size: int, split: int = 0, splits: int = 1) -> Iterator[Any]:
    """Yield `items` (the records read from `stream`), counting each as a record read and the bytes read by the
    stream's position; when the items end (or fail) the file counts as read, with all its `size` bytes.

    When `splits` readers each take every `splits`-th record of the same file (pipelines/text.py), each counts
    its share of the bytes and only split 0 counts the file, so the totals still add up to the input's."""
    share = size // splits + (1 if split < size % splits else 0)
    done = 0
    try:
        for item in items:
            position = done
            with contextlib.suppress(Exception):
                position = min(int(stream.tell()) // splits, share)
            count(records_read=1, bytes_read=max(position - done, 0))
            done = max(done, position)
            yield item
    finally:
        count(files_read=int(split == 0), bytes_read=max(share - done, 0))


def read_totals(directory: str) -> dict[str, int]:
    """The sum of every process's file in `directory`; a file that cannot be read is left out."""
    totals: Counter = Counter()
    for path in glob.glob(os.path.join(directory, "*.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                totals.update({str(k): int(v) for k, v in json.load(fh).items()})
        except (OSError, ValueError, AttributeError, TypeError):
            LOG.debug("progress file %s unreadable", path, exc_info=True)
    return dict(totals)


def input_size(inputs: list[str]) -> tuple[int, int]:
    """(files, bytes) the input globs match, counted as the pipeline's MatchAll reads them; (0, 0) if unknown."""
    try:
        from apache_beam.io.filesystems import FileSystems

        matched = [m for result in FileSystems.match(list(inputs)) for m in result.metadata_list]
        return len(matched), sum(int(m.size_in_bytes) for m in matched)
    except Exception:
        LOG.debug("progress: cannot size the inputs", exc_info=True)
        return 0, 0


def describe(totals: dict[str, int], files_total: int, bytes_total: int) -> str:
    """The counts part of the line: `files 2/6 | records 40 | kept 30 | dropped 10 | 1.2/3.4 MB`."""
    files = f"{totals.get('files_read', 0)}/{files_total}" if files_total else f"{totals.get('files_read', 0)}"
    mb = totals.get("bytes_read", 0) / 1e6
    size = f"{mb:.1f}/{bytes_total / 1e6:.1f} MB" if bytes_total else f"{mb:.1f} MB"
    parts = [f"files {files}", f"records {totals.get('records_read', 0)}", f"kept {totals.get('kept', 0)}",
             f"dropped {totals.get('dropped', 0)}"]
    parts += [f"{name} {n}" for name, n in sorted(totals.items()) if name not in FIELDS and n]
    return " | ".join([*parts, size])


class Display:
    """One tqdm line on `stream`, redrawn from the totals in `directory`; the ETA comes from bytes read."""

    def __init__(self, directory: str, stream: Any, files_total: int, bytes_total: int):
        from tqdm import tqdm

        self.directory, self.files_total, self.bytes_total = directory, files_total, bytes_total
        self.totals: dict[str, int] = {}
        tail = " {percentage:3.0f}% read [{elapsed}<{remaining}]" if bytes_total else " [{elapsed}]"
        sized = _sized(stream)  # tqdm draws nothing on a terminal of unknown size (0 x 0)
        self.bar = tqdm(total=bytes_total or None, file=stream, bar_format="wudao: {desc}" + tail, leave=True,
                        desc=describe({}, files_total, bytes_total),
                        dynamic_ncols=sized, ncols=None if sized else 1000, nrows=None if sized else 1000,
                        mininterval=0)

    def update(self) -> dict[str, int]:
        self.totals = read_totals(self.directory)
        bytes_read = self.totals.get("bytes_read", 0)
        self.bar.set_description_str(describe(self.totals, self.files_total, self.bytes_total), refresh=False)
        self.bar.n = bytes_read  # tqdm takes the rate (and so the ETA) from n over the elapsed time
        self.bar.refresh()
        return self.totals

    def close(self) -> None:
        self.bar.close()


def _sized(stream: Any) -> bool:
    try:
        return min(os.get_terminal_size(stream.fileno())) > 0
    except (OSError, ValueError, AttributeError):
        return False


class Live:
    """What `live()` yields: the final `totals` once the block is over (empty when quiet)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.display: Display | None = None
        self.thread: threading.Thread | None = None


def _loop(display: Display, stop: threading.Event) -> None:
    while not stop.wait(INTERVAL):
        try:
            display.update()
        except Exception:
            LOG.debug("progress display failed", exc_info=True)


@contextlib.contextmanager
def live(inputs: list[str], stream: Any = None, show: bool = True) -> Iterator[Live]:
    """Show the progress line while the block runs, if `show`, `enabled` and `stream` (stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    handle, stop, directory, previous = Live(), threading.Event(), None, os.environ.get(ENV)
    try:
        if show and enabled and stream.isatty():
            directory = tempfile.mkdtemp(prefix="wudao-progress-")
            os.environ[ENV] = directory
            handle.display = Display(directory, stream, *input_size(inputs))
            handle.thread = threading.Thread(target=_loop, args=(handle.display, stop), daemon=True,
                                             name="wudao-progress")
            handle.thread.start()
    except Exception:
        LOG.debug("progress display not started", exc_info=True)
    try:
        yield handle
    finally:
        stop.set()
        try:
            if handle.thread is not None:
                handle.thread.join()
            if handle.display is not None:
                flush()  # in-process workers: this process's last counts
                handle.totals = handle.display.update()
                handle.display.close()
        except Exception:
            LOG.debug("progress display failed to finish", exc_info=True)
        if directory is not None:
            if previous is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = previous
            shutil.rmtree(directory, ignore_errors=True)
