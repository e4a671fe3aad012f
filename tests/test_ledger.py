"""The ledger turns flat counts into per-stage stats and refuses counts that lose records."""
import pytest

from pipelines.ledger import build_stats


def test_stats_per_stage_in_order_with_reasons():
    counts = {
        "read|in": 10, "read|out": 8, "read|drop|request": 2,
        "extract|in": 8, "extract|out": 7, "extract|drop|extract-empty": 1,
        "pii|in": 7, "pii|out": 7, "pii|count|phone": 3,
        "language|in": 7, "language|out": 5, "language|drop|lang:ja": 1, "language|drop|lang:other": 1,
        "write|in": 5, "write|out": 5,
    }
    stats = build_stats(counts, ["read", "extract", "pii", "language", "write"])
    assert [s["stage"] for s in stats["stages"]] == ["read", "extract", "pii", "language", "write"]
    assert stats["totals"] == {"records_in": 10, "kept": 5, "dropped": 5}
    language = stats["stages"][3]
    assert language["dropped_by_reason"] == {"lang:ja": 1, "lang:other": 1}
    assert stats["stages"][2]["counts"] == {"phone": 3}


def test_stage_that_loses_records_is_an_error():
    with pytest.raises(AssertionError, match="stage extract"):
        build_stats({"read|in": 2, "read|out": 2, "extract|in": 2, "extract|out": 1, "write|in": 1,
                     "write|out": 1}, ["read", "extract", "write"])


def test_overall_loss_is_an_error():
    # every stage balances, but a record vanished between stages
    with pytest.raises(AssertionError, match="overall"):
        build_stats({"read|in": 2, "read|out": 2, "write|in": 1, "write|out": 1}, ["read", "write"])


def test_empty_run():
    assert build_stats({}, ["read", "write"])["totals"] == {"records_in": 0, "kept": 0, "dropped": 0}


def test_created_records_balance_a_stage_that_splits():
    counts = {"read|in": 2, "read|out": 2, "split|in": 2, "split|out": 3, "split|created": 2, "split|drop|empty": 1,
              "write|in": 3, "write|out": 3}
    stats = build_stats(counts, ["read", "split", "write"])
    assert stats["totals"] == {"records_in": 2, "kept": 3, "dropped": 1, "created": 2}
    with pytest.raises(AssertionError, match="stage split"):
        build_stats({**counts, "split|created": 1}, ["read", "split", "write"])


def test_histograms_stand_apart_from_the_balance_in_stable_order():
    counts = {"read|in": 3, "read|out": 3, "extract|in": 3, "extract|out": 3, "write|in": 3, "write|out": 3,
              "extract|hist|chars|1000-1999": 1, "extract|hist|chars|500-999": 2,
              "write|hist|lang|en": 1, "write|hist|lang|zh": 2, "write|hist|score:lang|0.9-1.0": 2,
              "write|hist|score:lang|0.0-0.1": 1, "later|hist|chars|50-99": 1}
    stats = build_stats(counts, ["read", "extract", "write"])
    assert [s["stage"] for s in stats["stages"]] == ["read", "extract", "write"]  # no stage made for `later`
    assert stats["stages"][1] == {"stage": "extract", "in": 3, "out": 3, "dropped": 0, "dropped_by_reason": {}}
    assert stats["histograms"] == {
        "extract": {"chars": {"500-999": 2, "1000-1999": 1}},
        "write": {"lang": {"zh": 2, "en": 1}, "score:lang": {"0.0-0.1": 1, "0.9-1.0": 2}},
        "later": {"chars": {"50-99": 1}},
    }
    assert list(stats["histograms"]) == ["extract", "write", "later"]
    assert list(stats["histograms"]["write"]["lang"]) == ["zh", "en"]  # categories: most first
    assert list(stats["histograms"]["extract"]["chars"]) == ["500-999", "1000-1999"]  # by their edges, not names
    assert build_stats({}, ["read", "write"])["histograms"] == {}


def test_sum_per_bundle_keeps_the_totals_and_emits_one_dict_per_bundle():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from pipelines.run import pipeline_options
    from pipelines.ledger import SumCounts, SumPerBundle

    inputs = [{"a|in": 1, "a|out": 1}] * 100 + [{"a|in": 1, "a|drop|x": 1}] * 5
    with beam.Pipeline(options=pipeline_options([])) as p:
        summed = p | beam.Create(inputs, reshuffle=False) | beam.ParDo(SumPerBundle())
        assert_that(summed | "Total" >> beam.CombineGlobally(SumCounts()),
                    equal_to([{"a|drop|x": 5, "a|in": 105, "a|out": 100}]), label="totals")
        assert_that(summed | "Dicts" >> beam.combiners.Count.Globally(), equal_to([1]), label="one per bundle")
