"""datatrove's FineWeb-style pipeline, run inside bench/.venv-datatrove (never in the project's venv).

The steps and their settings follow datatrove's own FineWeb recipe (huggingface/datatrove
examples/fineweb.py): WarcReader -> Trafilatura(favour_precision=True) -> LanguageFilter ->
GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter(filter_no_terminal_punct=False) ->
FineWebQualityFilter -> JsonlWriter, all other parameters at datatrove 0.10.1 defaults. Differences, all
forced by running offline or chosen to match the wudao side:
  * no URLFilter (the wudao text pipeline has none either) and no exclusion writers (drops are still
    counted per reason in datatrove's stats);
  * Trafilatura(deduplicate=False) unless `--trafilatura-deduplicate`: datatrove's default True keeps an
    in-process cache of paragraphs already seen and blanks them; on the benchmark input, where every real page
    recurs about 11 times, it emptied 1062 of 1989 pages with 1 worker and 379 with 2 (each worker sees fewer
    copies), so the later steps did different amounts of work per column. trafilatura's own default, which
    the wudao side uses, is False;
  * LanguageFilter keeps `--languages` (default en,zh, the wudao recipe's languages) instead of FineWeb's
    English; its fastText model is not lid.176 (no download possible here) but the model file given with
    `--lid-model`, placed where datatrove's asset cache expects lid.176, so datatrove's own code loads it.
    Unless `--lid-raw-text`, the model is fed the normalised line it was trained on
    (bench/datatrove_project_lid.py explains why); threshold and label handling stay datatrove's;
  * word/sentence splitting uses datatrove's default for English, spaCy's blank "en" pipeline (needs the
    spacy package, no model download). The Gopher/C4/FineWeb filters are English-configured, as in FineWeb:
    Chinese documents pass through them with English rules.

Prints one JSON object on the last line of stdout: documents read, kept, and datatrove's per-step stats.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import sys
from pathlib import Path


def install_lid_model(model: Path) -> str:
    """Put `model` where datatrove's FT176LID looks for lid.176.bin, marked as downloaded; return that path."""
    from datatrove.io import strip_protocol
    from datatrove.utils.lid import FT176LID
    from huggingface_hub import cached_assets_path

    folder = cached_assets_path(library_name="datatrove", namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER)
    target = os.path.join(folder, strip_protocol(FT176LID.MODEL_URL).replace("/", "_"))
    if not (os.path.exists(target + ".completed") and os.path.exists(target)
            and filecmp.cmp(model, target, shallow=False)):
        shutil.copyfile(model, target + ".tmp")
        os.replace(target + ".tmp", target)
        Path(target + ".completed").touch()
    return target


def build_pipeline(input_dir: str, output_dir: str, languages: list[str], deduplicate: bool = False,
                   lid_raw_text: bool = False) -> list:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    language_filter = LanguageFilter(languages=languages)
    if not lid_raw_text:
        from datatrove_project_lid import ProjectModelLID

        language_filter.model = ProjectModelLID(languages)
    return [
        WarcReader(input_dir, glob_pattern="*.warc.gz"),
        Trafilatura(favour_precision=True, deduplicate=deduplicate),
        language_filter,
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
        JsonlWriter(output_dir),
    ]


def summarize(stats: list[dict]) -> dict:
    """Documents read and written, from datatrove's merged stats (one entry per pipeline step).

    The reader counts under `documents`, every later step (the writer included) under `total`.
    """
    def count(entry: dict, key: str) -> int:
        return int(total((entry.get("stats") or {}).get(key, 0)))

    def total(value) -> float:   # datatrove writes a bare 0 for a step that saw no documents
        return value.get("total", 0) if isinstance(value, dict) else value

    steps = [{"name": entry.get("name", "?"), "time_s": round(total(entry.get("time_stats", 0)), 3),
              "stats": {key: total(val) for key, val in (entry.get("stats") or {}).items()}}
             for entry in stats]
    return {"docs_read": count(stats[0], "documents") if stats else 0,
            "docs_written": count(stats[-1], "total") if stats else 0,
            "steps": steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="datatrove FineWeb-style pipeline for bench/throughput.py")
    parser.add_argument("--input", required=True, help="folder of *.warc.gz files")
    parser.add_argument("--output", required=True, help="folder for JSONL.gz output (emptied first)")
    parser.add_argument("--logs", required=True, help="datatrove logging folder (emptied first)")
    parser.add_argument("--lid-model", required=True, type=Path, help="fastText language-ID model (.bin/.ftz)")
    parser.add_argument("--languages", default="en,zh")
    parser.add_argument("--trafilatura-deduplicate", action="store_true",
                        help="datatrove's default; blanks repeated paragraphs, so repeated input pages come out empty")
    parser.add_argument("--lid-raw-text", action="store_true",
                        help="feed the LID model datatrove's raw text (right for lid.176, not for our model)")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.lid_model.is_file():
        parser.error(f"no language-ID model at {args.lid_model}")
    for folder in (args.output, args.logs):
        shutil.rmtree(folder, ignore_errors=True)

    from datatrove.executor import LocalPipelineExecutor

    install_lid_model(args.lid_model)
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    executor = LocalPipelineExecutor(
        pipeline=build_pipeline(args.input, args.output, languages, args.trafilatura_deduplicate,
                                args.lid_raw_text),
        tasks=args.tasks, workers=args.workers, logging_dir=args.logs,
    )
    executor.run()
    with open(os.path.join(args.logs, "stats.json"), encoding="utf-8") as fh:
        merged = json.load(fh)
    print(json.dumps(summarize(merged)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
