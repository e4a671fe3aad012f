"""`RunSteps`: a recipe's per-record steps fused into one DoFn, for every record kind.

The steps (`cleaners.step`) are built from the recipe on the launcher, so a bad parameter fails before anything
runs, pickled to the workers, and set up once per worker (`DoFn.setup`: models, automata). `cleaners.runner`
runs them; `pipelines.ledger` does all the accounting. `prepare` (before the steps) and `finish` (input record,
kept record -> output record) are plain functions for what belongs to the pipeline, not to a step.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam

from cleaners.runner import StepRunner
from cleaners.step import Step
from pipelines import ledger, progress


class RunSteps(beam.DoFn):
    def __init__(self, steps: Sequence[Step], prepare: Callable[[Any], Any] | None = None,
                 finish: Callable[[Any, Any], Any] | None = None, live_kept: bool = True):
        self.steps, self.prepare, self.finish, self.live_kept = list(steps), prepare, finish, live_kept
        self.runner: Any = None     # a StepRunner (RunRecipe: a RecipeRunner), built in setup

    def setup(self) -> None:
        self.runner = StepRunner(self.steps)
        self.runner.setup()

    def teardown(self) -> None:
        progress.flush()
        if self.runner is not None:
            self.runner.teardown()

    def process(self, item: Any) -> Iterable[Any]:
        assert self.runner is not None
        if self.prepare is not None:
            item = self.prepare(item)
        outcome = self.runner.run(item)
        if self.finish is not None:
            outcome.kept = [self.finish(item, kept) for kept in outcome.kept]
        yield from ledger.outcome(outcome, self.live_kept)

    def finish_bundle(self) -> None:
        progress.flush()
