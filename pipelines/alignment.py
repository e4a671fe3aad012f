"""The `alignment` stage of the image-text pipeline: batched scoring, the `min_score` floor, the percentile floor.

Records are grouped with Beam's `BatchElements` (up to the step's `batch_size`), scored in one forward pass per
batch by the step (`cleaners.image.scoring.AlignmentScore`, model loaded once per worker in `setup`), then run
through the step one by one for its keep/drop and histogram (the usual `RunSteps` accounting). With
`min_percentile`, every kept score goes into a 1000-bin histogram over [-1, 1] (a global combine), its percentile
becomes a side input, and a second stage `alignment_percentile` drops the pairs under it.
"""
from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam

from cleaners.image.scoring import (REASON_PERCENTILE, SCORE_FIELD, AlignmentScore, percentile_threshold,
                                    score_bin)
from pipelines import ledger
from pipelines.steps import RunSteps

PERCENTILE_STAGE = "alignment_percentile"
PERCENTILE_BINS = 1000


class ScoreBatches(RunSteps):
    """A batch of output records -> the alignment step on each, after one batched forward pass (the step's model is
    loaded by `RunSteps.setup`, once per worker)."""

    def __init__(self, step: AlignmentScore):
        super().__init__([step], live_kept=False)

    def process(self, batch: list[dict[str, Any]]) -> Iterable[Any]:
        self.steps[0].score_batch(batch)
        for record in batch:
            yield from super().process(record)


def _keep_above(record: dict[str, Any], threshold: float) -> Iterable[Any]:
    if record[SCORE_FIELD] < threshold:
        yield from ledger.dropped(record, PERCENTILE_STAGE, REASON_PERCENTILE)
    else:
        yield ledger.passed(PERCENTILE_STAGE)
        yield record


class ScoreAlignment(beam.PTransform):
    """records -> kept records, with rejects and counts as tagged outputs (see module docstring)."""

    def __init__(self, step: AlignmentScore):
        super().__init__()
        self.step = step

    def expand(self, records: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        scored = (records
                  | "BatchForScoring" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.step.batch_size)
                  | "ScoreBatches" >> beam.ParDo(ScoreBatches(self.step))
                  .with_outputs(ledger.REJECTS, ledger.COUNTS, main="records"))
        if self.step.min_percentile is None:
            return scored
        percentile = self.step.min_percentile
        threshold = (scored.records
                     | "ScoreBins" >> beam.Map(lambda r: {str(score_bin(r[SCORE_FIELD], PERCENTILE_BINS)): 1})
                     | "BinCounts" >> beam.CombineGlobally(ledger.SumCounts())
                     | "Threshold" >> beam.Map(lambda bins: percentile_threshold(
                         {int(i): n for i, n in bins.items()}, percentile, PERCENTILE_BINS)))
        floor = (scored.records
                 | "PercentileFloor" >> beam.FlatMap(_keep_above, beam.pvalue.AsSingleton(threshold))
                 .with_outputs(ledger.REJECTS, ledger.COUNTS, main="records"))
        return _Merged(scored, floor)


class _Merged:
    """The outputs of both stages under the names `build_image_text_pipeline` reads."""

    def __init__(self, scored: Any, floor: Any):
        self.records = floor.records
        self._tagged = {tag: (scored[tag], floor[tag]) for tag in (ledger.REJECTS, ledger.COUNTS)}

    def __getitem__(self, tag: str) -> beam.PCollection:
        first, second = self._tagged[tag]
        return (first, second) | f"Merge{tag.title()}Alignment" >> beam.Flatten()
