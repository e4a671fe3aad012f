"""Where the local run's memory goes: run `wudao text` in this process with FnApiRunner's bundle execution
wrapped, and print, at every stage start, the runner's RSS and the bytes it holds in PCollection buffers
(the stage's own input, `pcoll_buffers` and the queued inputs of later stages; data shared by two consumers
counts once); at every stage end, the peaks during the stage (polled every 0.2 s) of the whole process tree and
of the largest process below the runner (an SDK worker or an extraction child).

    python bench/runner_buffers.py --input 'bench/work/scale/crawl-300MB/*.warc.gz' --output /tmp/probe

It reads private FnApiRunner attributes (Beam 2.77), so it is a measuring probe, not part of the product.
Findings: bench/RESULTS.md, "Scale".
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # dedup_scaling: the process-tree polling


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _buffer_bytes(buffer, seen: set[int]) -> int:
    """Bytes in `buffer` not yet counted in `seen` (ids of chunks: a copied ListBuffer shares its chunks)."""
    from apache_beam.runners.portability.fn_api_runner import execution

    if id(buffer) in seen:
        return 0
    seen.add(id(buffer))
    if isinstance(buffer, execution.ListBuffer):
        fresh = [chunk for chunk in buffer._inputs if id(chunk) not in seen]
        seen.update(id(chunk) for chunk in fresh)
        return sum(len(chunk) for chunk in fresh)
    if isinstance(buffer, execution.GroupingBuffer):
        if buffer._grouped_output:
            return sum(len(chunk) for part in buffer._grouped_output for chunk in part)
        return sum(len(key) + sum(len(v) if isinstance(v, (bytes, str)) else 64 for v in values)
                   for key, values in buffer._table.items())
    return 0


def held_buffers(context, bundle_input=None) -> dict[str, int]:
    """{buffer name: bytes} for the buffers the runner holds, the starting stage's input (`bundle_input`) first;
    data shared by two buffers counts once."""
    seen: set[int] = set()
    held: dict[str, int] = {}
    named = [(f"input:{name}", buffer) for name, buffer in (bundle_input.data.items() if bundle_input else ())]
    named += list(context.pcoll_buffers.items())
    for queue in (context.queues.ready_inputs, context.queues.watermark_pending_inputs):
        for _, data_input in list(queue._q):
            named += [(f"queued:{name}", buffer) for name, buffer in data_input.data.items()]
    for name, buffer in named:
        held[str(name)] = held.get(str(name), 0) + _buffer_bytes(buffer, seen)
    return held


class TreePeaks:
    """Peaks of this process tree's RSS since the last `reset()`, polled in a daemon thread."""

    def __init__(self, poll_s: float = 0.2):
        import threading

        self.poll_s, self.tree_mb, self.child_mb = poll_s, 0.0, 0.0
        threading.Thread(target=self._poll, daemon=True).start()

    def reset(self) -> None:
        self.tree_mb = self.child_mb = 0.0

    def sample(self) -> None:
        from dedup_scaling import descendants, rss_by_pid

        sizes = rss_by_pid(descendants(os.getpid()))
        self.tree_mb = max(self.tree_mb, sum(sizes.values()) / 2**20)
        self.child_mb = max([self.child_mb] + [size / 2**20 for pid, size in sizes.items() if pid != os.getpid()])

    def _poll(self) -> None:
        while True:
            self.sample()
            time.sleep(self.poll_s)


def install_probe(out=sys.stdout) -> None:
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    original = fn_runner.FnApiRunner._execute_bundle
    started = time.time()
    peaks = TreePeaks()

    def probed(self, context, bundle_manager, bundle_input, *args, **kwargs):
        held = held_buffers(context, bundle_input)
        top = sorted(held.items(), key=lambda kv: -kv[1])[:3]
        out.write(f"{time.time() - started:7.1f}s rss {_rss_mb():6.0f} MB held {sum(held.values()) / 1e6:6.1f} MB"
                  f"  {bundle_manager.stage.name[:90]}\n"
                  + "".join(f"{'':30}{size / 1e6:6.1f} MB {name[-80:]}\n" for name, size in top if size))
        out.flush()
        peaks.reset()
        try:
            return original(self, context, bundle_manager, bundle_input, *args, **kwargs)
        finally:
            peaks.sample()   # a stage shorter than one poll still gets a figure
            out.write(f"{time.time() - started:7.1f}s end: peak tree {peaks.tree_mb:6.0f} MB, "
                      f"largest child {peaks.child_mb:6.0f} MB  {bundle_manager.stage.name[:60]}\n")
            out.flush()

    fn_runner.FnApiRunner._execute_bundle = probed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    install_probe()
    from pipelines import cli

    return cli.main(["text", "--input", args.input, "--output", args.output, "--no-progress",
                     "--direct_running_mode=multi_processing", "--direct_num_workers=2"])


if __name__ == "__main__":
    raise SystemExit(main())
