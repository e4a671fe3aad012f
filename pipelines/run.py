"""The run facade: one call per pipeline (`run_text`, `run_dedup`, `run_dialogue`, `run_image_text`) that loads the
recipe, clears what an earlier run left in the output folder, runs the Beam graph and returns the stats.json it
wrote; plus `pipeline_options` (Beam options from the command line's extra flags, with the offline local runner as
default), `format_summary` (the lines `wudao` prints after a run) and `sample_inputs` (the embedded samples).

The command line (pipelines/cli.py) parses arguments and prints; the demo (pipelines/demo.py), the shard job
(`pipeline_options`), tests and benches call this module directly. It imports neither of those nor any graph at
module level (each `run_*` imports its graph when called), so importing it is cheap and makes no import cycle.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import time
from importlib import resources
from typing import Any

LOG = logging.getLogger("wudao")

#: DirectRunner first tries to download the Prism runner binary, which cannot work offline; FnApiRunner is
#: the engine DirectRunner falls back to, and honours --direct_running_mode / --direct_num_workers.
LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(beam_args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if standard.runner in (None, "DirectRunner", "direct"):
        standard.runner = LOCAL_RUNNER
    return options


def _absolute(path: str) -> str:
    """A local path made absolute against the submitter's working directory (workers of portable runners run
    elsewhere); URLs (gs://, s3://, hdfs://, http://) stay as they are."""
    return path if "://" in path else os.path.abspath(path)


def _run(build, inputs: list[str], output: str, config: dict[str, Any], beam_args: list[str]) -> dict[str, Any]:
    """Run one pipeline (`build(pipeline, inputs, output, config)`) and return the stats.json it wrote."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import StandardOptions

    from pipelines import progress

    inputs, output = [_absolute(path) for path in inputs], _absolute(output)
    _clear_previous_outputs(output)
    started = time.time()
    options = pipeline_options(beam_args)
    local = options.view_as(StandardOptions).runner == LOCAL_RUNNER  # remote runners show the Beam counters
    with progress.live(inputs, show=local), beam.Pipeline(options=options) as pipeline:
        build(pipeline, inputs, output, config)
    with FileSystems.open(FileSystems.join(output, "stats.json")) as fh:
        stats = json.loads(fh.read().decode("utf-8"))
    stats["wall_seconds"] = round(time.time() - started, 2)
    return stats


def run_text(inputs: list[str], output: str, config_path: str | None, beam_args: list[str]) -> dict[str, Any]:
    """The web-text pipeline with the default recipe merged with `config_path`."""
    from cleaners.recipe import load_recipe
    from pipelines.text import build_text_pipeline

    return _run(build_text_pipeline, inputs, output, load_recipe(config_path), beam_args)


def run_dedup(inputs: list[str], output: str, config_path: str | None, threshold: float | None,
              beam_args: list[str]) -> dict[str, Any]:
    """The dedup stages alone on an existing corpus; `threshold` overrides the recipe's MinHash threshold."""
    from cleaners.recipe import load_recipe
    from pipelines.dedup.corpus import build_dedup_pipeline

    config = load_recipe(config_path)
    if threshold is not None:
        config.setdefault("dedup", {}).setdefault("minhash", {})["threshold"] = threshold
    return _run(build_dedup_pipeline, inputs, output, config, beam_args)


def run_dialogue(inputs: list[str], output: str, config_path: str | None, beam_args: list[str]) -> dict[str, Any]:
    """The dialogue pipeline with the default dialogue recipe merged with `config_path`."""
    from cleaners.recipe import load_recipe
    from pipelines.dialogue import build_dialogue_pipeline

    return _run(build_dialogue_pipeline, inputs, output, load_recipe(config_path, kind="dialogue"), beam_args)


def run_image_text(inputs: list[str], output: str, config_path: str | None, beam_args: list[str]) -> dict[str, Any]:
    """The image-text pipeline with the default image-text recipe merged with `config_path`."""
    from cleaners.recipe import load_recipe
    from pipelines.image_text import build_image_text_pipeline

    return _run(build_image_text_pipeline, inputs, output, load_recipe(config_path, kind="image_text"), beam_args)


def _clear_previous_outputs(output: str) -> None:
    """Remove what an earlier run left in the same output folder, so stale or partial files never mix in.

    stats.json (the completion marker, written last) goes first, then the part files, the image shards and their
    index, Beam's `beam-temp-*` folders and any `*.tmp` of a run that was killed while writing."""
    from apache_beam.io.filesystems import FileSystems

    def matches(patterns: list[str]) -> list[str]:
        return [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]

    marker = FileSystems.join(output, "stats.json")
    if FileSystems.exists(marker):
        FileSystems.delete([marker])
    folders = [FileSystems.join(output, sub) for sub in ("corpus", "rejects", "images")]
    patterns = [FileSystems.join(folder, name) for folder in folders for name in ("part-*", "*.tmp")]
    patterns += [FileSystems.join(output, "images", "*.tar"), FileSystems.join(output, "images", "shards.json"),
                 FileSystems.join(output, "*.tmp"), FileSystems.join(output, "report.html")]
    stale = matches(patterns)
    # a killed run's Beam temp folders (`beam-temp-part-<uuid>/`): their files, then (local disks) the folders
    temp_roots = [FileSystems.join(folder, "beam-temp-*") for folder in [output, *folders]]
    stale += matches([FileSystems.join(root, "*") for root in temp_roots])
    if stale:
        LOG.info("removing %d files of a previous run in %s", len(stale), output)
        FileSystems.delete(stale)
    if "://" not in output:
        for folder in sorted(path for root in temp_roots for path in glob.glob(root) if os.path.isdir(path)):
            shutil.rmtree(folder, ignore_errors=True)


def format_summary(stats: dict[str, Any], output: str) -> str:
    """What `wudao text|dedup|dialogue|image-text` prints after a run: totals, drops by stage and reason, paths."""
    totals = stats["totals"]
    lines = [
        f"records in: {totals['records_in']}",
        f"kept:       {totals['kept']}",
        f"dropped:    {totals['dropped']}",
    ]
    if totals.get("created"):
        lines.append(f"created:    {totals['created']} (records made by a stage: split sessions, thread paths)")
    for stage in stats["stages"]:
        if stage.get("created"):
            lines.append(f"  {stage['stage']}: {stage['in']} in, {stage['created']} created, {stage['out']} out")
        if stage["dropped"]:
            lines.append(f"  {stage['stage']}: {stage['dropped']} dropped")
            for reason, n in stage["dropped_by_reason"].items():
                lines.append(f"      {n:6d}  {reason}")
        if stage.get("counts"):
            counted = ", ".join(f"{name} {n}" for name, n in stage["counts"].items())
            lines.append(f"  {stage['stage']}: counted {counted}")
    lines += [
        f"images:  {os.path.join(output, 'images')} (WebDataset tars)" if stats.get("format") == "webdataset"
        else f"corpus:  {os.path.join(output, 'corpus')}",
        f"rejects: {os.path.join(output, 'rejects')}",
        f"stats:   {os.path.join(output, 'stats.json')}",
    ]
    if "wall_seconds" in stats:
        lines.append(f"time:    {stats['wall_seconds']} s")
    return "\n".join(lines)


def sample_inputs(folder: str = "sample") -> list[str]:
    """Paths of an embedded sample shipped inside the package (`sample`: the crawl; `dialogue_sample`)."""
    root = resources.files("pipelines").joinpath(f"data/{folder}")
    return [os.path.join(str(root), name) for name in sorted(os.listdir(str(root)))
            if name not in ("README.md", "expected.json")]
