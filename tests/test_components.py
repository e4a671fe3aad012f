"""Distributed connected components (large-star / small-star on Beam) against exact answers and union-find."""
from __future__ import annotations

import ast
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings, strategies as st

from pipelines.dedup.components import (ConnectedComponents, RoundStats, canonical_edge, is_settled,
                                         union_find_components)


def run_components(edges, expected_labels, check_stats, max_rounds=8, options=None):
    """Runs one FnApiRunner pipeline; asserts its labels equal `expected_labels` and `check_stats(stats)` holds."""
    def stats_matcher(found):
        assert len(found) == 1, found
        check_stats(found[0])

    with beam.Pipeline(runner="FnApiRunner", options=options) as pipeline:
        result = (pipeline | beam.Create(edges, reshuffle=False)
                  | ConnectedComponents(max_rounds=max_rounds, with_stats=True))
        assert_that(result.labels, equal_to(list(expected_labels)), label="Labels")
        assert_that(result.stats, stats_matcher, label="Stats")


def stats_equal(expected):
    def check(stats):
        assert stats == expected, stats
    return check


def any_stats(stats):
    pass


def chain(n, prefix=""):
    return [(f"{prefix}{i}", f"{prefix}{i + 1}") for i in range(1, n)]


def in_namespace(prefix, edges):
    """A graph's edges with every id prefixed: several graphs in one pipeline keep their own string order."""
    return [(prefix + u, prefix + v) for u, v in edges]


# --- exact small graphs (all in one pipeline, each in its own id namespace) -------------------------------------

SMALL_GRAPHS = {
    "chain": (chain(20), {str(i): "1" for i in range(1, 21)}),
    "star": ([("5", leaf) for leaf in "6789"] + [("k", "5")], {n: "5" for n in "56789k"}),
    "two": ([("b", "c"), ("c", "d"), ("x", "y"), ("z", "y")], {"b": "b", "c": "b", "d": "b", "x": "x", "y": "x",
                                                                "z": "x"}),
    "loops": ([("a", "a"), ("a", "a"), ("q", "q"), ("q", "r")], {"a": "a", "q": "q", "r": "q"}),
    "dupes": ([("m", "n"), ("n", "m"), ("m", "n"), ("o", "n"), ("n", "o")], {"m": "m", "n": "m", "o": "m"}),
    "lexical": ([("9", "10"), ("9", "2"), ("77", "8")], {"9": "10", "10": "10", "2": "10", "77": "77", "8": "77"}),
    "cycle": ([("e", "f"), ("f", "g"), ("g", "h"), ("h", "e"), ("e", "g")], {n: "e" for n in "efgh"}),
}


def test_small_graphs_exact_labels():
    edges, expected = [], []
    for name, (graph_edges, labels) in SMALL_GRAPHS.items():
        edges += in_namespace(f"{name}/", graph_edges)
        expected += [(f"{name}/{node}", f"{name}/{label}") for node, label in labels.items()]
    def chain_is_slowest(stats):
        assert stats["rounds_used"] == 5 and stats["unsettled_nodes_per_round"][-1] == 0, stats

    run_components(edges, expected, chain_is_slowest)


def test_chain_needs_exactly_five_rounds_and_reports_them():
    run_components(chain(20), [(str(i), "1") for i in range(1, 21)],
                   stats_equal({"max_rounds": 5, "rounds_used": 5, "unsettled_nodes_per_round": [17, 14, 9, 3, 1]}),
                   max_rounds=5)


def test_too_few_rounds_fail_loudly_naming_max_rounds():
    with pytest.raises(Exception, match=r"did not converge within max_rounds=4"):
        run_components(chain(20), [], any_stats, max_rounds=4)


def test_a_star_already_is_settled_and_every_round_is_bypassed():
    run_components([("a", leaf) for leaf in "bcdef"] + [("g", "g")], [(n, "a") for n in "abcdef"] + [("g", "g")],
                   stats_equal({"max_rounds": 3, "rounds_used": 0, "unsettled_nodes_per_round": [0]}), max_rounds=3)


def test_no_edges_no_labels():
    run_components([], [], stats_equal({"max_rounds": 2, "rounds_used": 0, "unsettled_nodes_per_round": [0]}),
                   max_rounds=2)


def test_default_output_is_the_label_collection():
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        labels = pipeline | beam.Create([("b", "a")]) | ConnectedComponents(max_rounds=1)
        assert_that(labels, equal_to([("a", "a"), ("b", "a")]))


@pytest.mark.parametrize("bad", [(1, 2), ("a", None), ("a",), "ab", ("a", "b", "c"), None])
def test_bad_edges_are_refused(bad):
    with pytest.raises(ValueError):
        canonical_edge(bad)


def test_a_bad_edge_fails_the_pipeline():
    with pytest.raises(Exception, match="node ids must be strings"):
        run_components([("a", "b"), ("c", 7)], [], any_stats, max_rounds=1)


def test_max_rounds_must_be_positive():
    with pytest.raises(ValueError, match="max_rounds"):
        ConnectedComponents(max_rounds=0)


# --- pure helpers ------------------------------------------------------------------------------------------------

def test_union_find_labels_with_smallest_id():
    assert union_find_components([("9", "10"), ("c", "c"), ("z", "y"), ("y", "b")]) == {
        "9": "10", "10": "10", "c": "c", "z": "b", "y": "b", "b": "b"}
    assert union_find_components(chain(1000)) == {str(i): "1" for i in range(1, 1001)}


@pytest.mark.parametrize("node, low, high, settled", [
    ("b", None, None, True),      # isolated
    ("b", "c", "z", True),        # centre
    ("b", "a", "a", True),        # leaf
    ("b", "a", "c", False),       # smaller and larger neighbours
    ("c", "a", "b", False),       # two smaller neighbours
])
def test_settled_nodes_are_centres_leaves_or_isolated(node, low, high, settled):
    assert is_settled(node, low, high) is settled


def test_round_stats_merge_and_stop_at_first_settled_round():
    combine = RoundStats(max_rounds=6)
    left = combine.add_input(combine.add_input(combine.create_accumulator(), (1, 4)), (2, 1))
    right = combine.add_input(combine.add_input(combine.create_accumulator(), (1, 3)), (3, 0))
    merged = combine.merge_accumulators([left, right, combine.create_accumulator()])
    assert combine.extract_output(merged) == {"max_rounds": 6, "rounds_used": 2,
                                              "unsettled_nodes_per_round": [7, 1, 0]}


# --- property: the distributed result equals union-find ---------------------------------------------------------

@st.composite
def graphs(draw):
    """Random graphs up to 60 nodes mixing long paths (shuffled and in id order), dense clusters and noise edges."""
    size = draw(st.integers(1, 60))
    nodes = [format(i, "x") if draw(st.booleans()) else str(i) for i in range(size)]
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["path", "sorted-path", "clusters", "sparse"]))
    edges = []
    if kind in ("path", "sorted-path"):
        order = sorted(nodes) if kind == "sorted-path" else rng.sample(nodes, len(nodes))
        edges += list(zip(order, order[1:]))
    elif kind == "clusters":
        for start in range(0, size, 8):
            members = nodes[start:start + 8]
            edges += [(u, v) for u in members for v in members if u < v and rng.random() < 0.7]
    edges += [(rng.choice(nodes), rng.choice(nodes)) for _ in range(draw(st.integers(0, size // 3)))]
    return edges or [(nodes[0], nodes[0])]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(graphs(), min_size=3, max_size=3))
def test_random_graphs_match_union_find(batch):
    """15 random graphs, three per pipeline (each in its own id namespace: one pipeline costs seconds here)."""
    edges = [edge for index, graph in enumerate(batch) for edge in in_namespace(f"g{index}/", graph)]
    def few_rounds(stats):
        assert stats["rounds_used"] <= 7, stats

    run_components(edges, union_find_components(edges).items(), few_rounds, max_rounds=8)


@pytest.mark.slow
def test_multi_processing_gives_the_same_labels(tmp_path):
    rng = random.Random(7)
    nodes = [format(rng.getrandbits(64), "016x") for _ in range(3000)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(1500)] + list(zip(nodes[:400], nodes[1:401]))
    options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    with beam.Pipeline(runner="FnApiRunner", options=options) as pipeline:   # outputs to files: workers are
        result = (pipeline | beam.Create(edges)                               # other processes
                  | ConnectedComponents(max_rounds=12, with_stats=True))
        result.labels | "WriteLabels" >> beam.io.WriteToText(str(tmp_path / "labels"))
        result.stats | "WriteStats" >> beam.io.WriteToText(str(tmp_path / "stats"))
    read = lambda name: [ast.literal_eval(line) for path in tmp_path.glob(f"{name}*")  # noqa: E731
                         for line in path.read_text().splitlines()]
    assert sorted(read("labels")) == sorted(union_find_components(edges).items())
    (stats,) = read("stats")
    assert 0 < stats["rounds_used"] < 12 and stats["unsettled_nodes_per_round"][-1] == 0
