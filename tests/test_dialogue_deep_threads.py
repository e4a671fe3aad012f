"""Deep reply chains: thread roots by pointer jumping converge in O(log depth) rounds, and a thread deeper than
2^max_rounds is a counted `thread-too-deep` drop (never a failed run), with the threads next to it untouched."""
from __future__ import annotations

import os
import pickle
import random
import tempfile
from collections import Counter

import apache_beam as beam
import pytest

from cleaners.dialogue.records import Post
from pipelines.dedup.components import CYCLE, TOO_DEEP, ForestRoots, loop_or_deep
from cleaners.recipe import load_recipe
from pipelines.dialogue_stages import ThreadsToSessions
from pipelines.ledger import SumCounts


def collect(items, transform, names):
    """Runs `items | transform` on FnApiRunner; returns the listed outputs of the result, each as a list."""
    with tempfile.TemporaryDirectory() as tmp:
        with beam.Pipeline(runner="FnApiRunner") as p:
            out = p | beam.Create(items, reshuffle=False) | transform
            for name in names:
                (getattr(out, name) | f"List{name}" >> beam.combiners.ToList()
                 | f"Dump{name}" >> beam.Map(lambda values, path: pickle.dump(values, open(path, "wb")),
                                             os.path.join(tmp, name)))
        return [pickle.load(open(os.path.join(tmp, name), "rb")) for name in names]


def run_threads(posts, **params):
    kept, rejects, counts = collect(posts, ThreadsToSessions(**params), ("kept", "rejects", "counts"))
    total = SumCounts().extract_output(SumCounts().merge_accumulators(Counter(d) for d in counts))
    return kept, rejects, total


def balanced(total):
    dropped = sum(n for k, n in total.items() if k.startswith("threads|drop|"))
    return total["threads|in"] == total.get("threads|out", 0) + dropped


def reply_chain(n, prefix="p"):
    """Posts p00000 <- p00001 <- ... (each replying to the one before), ids in path order: the hard case."""
    return [Post(f"{prefix}{i:05d}", f"t{i}", f"{prefix}{i - 1:05d}" if i else None, key=f"{prefix}#{i}")
            for i in range(n)]


NEIGHBOURS = [Post("g", "hello"), Post("g1", "hi there", "g"), Post("g2", "how are you", "g1"),   # a good thread
              Post("c1", "loop a", "c2"), Post("c2", "loop b", "c1"), Post("c3", "below loop", "c1"),  # a cycle
              Post("o1", "reply to a lost post", "lost"), Post("o2", "answer", "o1")]          # missing parent
NEIGHBOUR_SESSIONS = [["hello", "hi there", "how are you"], ["reply to a lost post", "answer"]]


def test_recipe_rounds_reach_realistic_depths():
    assert 2 ** load_recipe(kind="dialogue")["threads"]["max_rounds"] >= 1_000_000


def test_20000_post_chain_becomes_its_last_max_depth_posts():
    """The reported failure: 20,000 posts in one reply chain (15 rounds of 20) next to ordinary threads."""
    chain = reply_chain(20_000)
    kept, rejects, total = run_threads(chain + NEIGHBOURS, max_depth=8)
    sessions = {tuple(s.turns): s for s in kept}
    assert sorted(sessions) == sorted([tuple(f"t{i}" for i in range(19_992, 20_000))]
                                      + [tuple(turns) for turns in NEIGHBOUR_SESSIONS])
    deep = sessions[tuple(f"t{i}" for i in range(19_992, 20_000))]
    assert deep.key == "p#19999" and deep.meta["thread_root"] == "p00000"
    assert total == {"threads|in": 20_008, "threads|out": 3, "threads|drop|merged-into-session": 20_002,
                     "threads|drop|cycle": 3, "threads|count|missing-parent": 1}
    assert balanced(total)
    assert sorted((r["id"], r["reason"]) for r in rejects) == [("c1", "cycle"), ("c2", "cycle"), ("c3", "cycle")]


def test_thread_deeper_than_the_rounds_is_one_counted_drop():
    """With max_rounds=6 chains of 2^6 + 1 posts resolve, so 66 posts (and a side reply) are dropped whole as
    `thread-too-deep`; the neighbours come out exactly as they would alone. (max_rounds=12, the old recipe
    value, behaves the same from 4,098 posts on.)"""
    chain = reply_chain(66) + [Post("side", "a side reply", "p00000")]
    kept, rejects, total = run_threads(chain + NEIGHBOURS, max_depth=8, max_rounds=6)
    assert sorted(s.turns for s in kept) == NEIGHBOUR_SESSIONS
    assert total == {"threads|in": 75, "threads|out": 2, "threads|drop|merged-into-session": 3,
                     "threads|drop|cycle": 3, "threads|drop|thread-too-deep": 67,
                     "threads|count|missing-parent": 1}
    assert balanced(total)
    too_deep = sorted(r["id"] for r in rejects if r["reason"] == "thread-too-deep")
    assert too_deep == sorted(post.id for post in chain)

    kept, _, total = run_threads(chain[:65] + NEIGHBOURS, max_depth=8, max_rounds=6)   # 65 posts: fits
    assert total["threads|out"] == 3 and "threads|drop|thread-too-deep" not in total
    assert [f"t{i}" for i in range(57, 65)] in [s.turns for s in kept]


def test_rounds_bound_is_exact():
    """k rounds find roots up to depth 2^k: with 2 rounds a chain of 5 posts resolves, one of 6 does not; the
    root above the too-deep posts is reported so that its whole tree can be dropped."""
    links = ([(f"a{i}", f"a{i - 1}" if i else None) for i in range(5)]
             + [(f"b{i}", f"b{i - 1}" if i else "lost") for i in range(5)])         # b0's parent is missing
    roots, unresolved, deep = collect(links, ForestRoots(max_rounds=2), ("roots", "unresolved", "deep_roots"))
    assert dict(roots) == {**{f"a{i}": "a0" for i in range(5)}, **{f"b{i}": "lost" for i in range(4)}}
    assert unresolved == [("b4", TOO_DEEP)] and deep == ["lost"]


def test_forest_roots_match_a_walk_on_random_forests_with_cycles():
    rng = random.Random(7)
    ids = sorted({f"n{rng.randrange(10 ** 6)}" for _ in range(300)})
    rng.shuffle(ids)
    links = []
    for i, node in enumerate(ids):
        draw = rng.random()
        parent = (None if draw < 0.05 else f"lost{rng.randrange(4)}" if draw < 0.08
                  else rng.choice(ids[:i + 1] if draw < 0.97 else ids))
        links.append((node, parent))

    def walk(node):
        parents, seen = dict(links), set()
        while node in parents and parents[node] and node not in seen:
            seen.add(node)
            node = parents[node]
        return CYCLE if node in seen else node

    roots, unresolved, deep = collect(links, ForestRoots(max_rounds=10), ("roots", "unresolved", "deep_roots"))
    assert dict(roots) | dict(unresolved) == {node: walk(node) for node, _ in links}
    assert len(roots) + len(unresolved) == len(links) and deep == []


def test_loop_or_deep():
    assert loop_or_deep({"a": "b", "b": "a", "c": "a", "d": "c"}) == {n: CYCLE for n in "abcd"}
    assert loop_or_deep({"s": "s"}) == {"s": CYCLE}
    assert loop_or_deep({"x": "y", "y": "z", "w": "x"}) == {n: TOO_DEEP for n in "wxy"}


def test_bad_rounds():
    with pytest.raises(ValueError, match="max_rounds"):
        ThreadsToSessions(max_rounds=0)
    with pytest.raises(ValueError, match="max_rounds"):
        ForestRoots(max_rounds=0)
