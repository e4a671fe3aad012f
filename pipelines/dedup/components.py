"""Connected components of a graph given as a PCollection of edges, computed with Beam shuffles only.

Algorithm: large-star / small-star alternation (Kiveris, Lattanzi, Mirrokni, Rastogi, Vassilvitskii,
"Connected Components in MapReduce and Beyond", SoCC 2014). Edges are kept as `(larger, smaller)` string pairs.

- large-star: group the edges at every node u (both directions); with m = min(u and its neighbours), replace
  each edge from u to a *larger* neighbour v by (v, m).
- small-star: group every edge at its larger end u; with m = min(u and its smaller neighbours), replace each
  such edge (u, w) by (w, m) and add (u, m).

Neither step changes which nodes are connected, and together they converge to a forest of stars, each star
centred on the smallest id of its component, so the label of a node is the centre of its star. The paper proves
O(log^2 n) rounds in the worst case for n nodes and observes about log n in practice. Measured here: a path of
20 nodes needs 5 rounds, 1,000 nodes 10, 10,000 nodes 14 with ids in path order (the hard case), 11 with the
path in random id order; random sparse graphs of 20,000 nodes 5-7.

Beam graphs have no loops, so the `max_rounds` rounds are unrolled. Convergence is checked, never assumed:
in its grouping, large-star counts the nodes that are neither a star centre (all neighbours larger) nor a leaf
(exactly one neighbour, a smaller one). That count is summed per round across workers (one integer per round).
A round whose input had a count of 0 was an identity; every round after it routes the edges around its shuffles
(a side input of that one integer), so a converged graph costs one identity round, not `max_rounds`. The final
labelling step counts again and, if any node is still not in a star, the pipeline fails with `NotConvergedError`
naming `max_rounds`: it never returns wrong labels.

Memory: each grouping reads its values in two streaming passes (a minimum, then the emitted edges), holding no
neighbour list; duplicate edges are removed once per round with `beam.Distinct` (a combiner-lifted shuffle).

`ForestRoots` is the special case where every node names at most one parent (reply threads): the component of a
node is the root its parents lead to, found by pointer jumping in about log2(depth) rounds (a 20,000-post chain:
15), and nodes it cannot resolve (cycles, chains deeper than 2^max_rounds) come out with a reason, never a failure.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam

from pipelines import progress

Edge = tuple[str, str]
UNSETTLED = "unsettled"


class ComponentsOutput(NamedTuple):
    labels: beam.PCollection   # (node, label): label = smallest node id of the node's component
    stats: beam.PCollection    # one dict, see `RoundStats`


class NotConvergedError(RuntimeError):
    """Raised inside the pipeline when the edges are not yet stars after `max_rounds` rounds."""


def canonical_edge(edge: Any) -> Edge:
    """`(u, v)` as `(larger, smaller)`; rejects anything that is not a pair of strings."""
    if not isinstance(edge, (tuple, list)) or len(edge) != 2:
        raise ValueError(f"an edge must be a pair (u, v) of string node ids, got {edge!r}")
    u, v = edge
    if not isinstance(u, str) or not isinstance(v, str):
        raise ValueError(f"node ids must be strings, got {edge!r}")
    return (u, v) if u >= v else (v, u)


def _both_ends(edge: Edge) -> Iterator[Edge]:
    larger, smaller = edge
    yield larger, smaller
    if larger != smaller:
        yield smaller, larger


def _neighbour_range(node: str, neighbours: Iterable[str]) -> tuple[str | None, str | None]:
    """Smallest and largest neighbour other than `node` itself (None, None when it has none)."""
    low = high = None
    for other in neighbours:
        if other == node:
            continue
        if low is None or other < low:
            low = other
        if high is None or other > high:
            high = other
    return low, high


def is_settled(node: str, low: str | None, high: str | None) -> bool:
    """True when `node` is isolated, a star centre (all neighbours larger) or a leaf (one, smaller, neighbour)."""
    return low is None or low > node or (low == high and low < node)


class _LargeStar(beam.DoFn):
    """At node u: each edge to a larger neighbour v becomes (v, min(u, neighbours)); counts unsettled nodes."""

    def __init__(self, round_number: int):
        self.round_number = round_number
        self.unsettled = progress.counter(f"components|round_{round_number:02d}_unsettled_nodes")

    def process(self, grouped: tuple[str, Iterable[str]]):
        node, neighbours = grouped
        low, high = _neighbour_range(node, neighbours)
        if low is None:                      # only self-loops: keep the node alive as one
            yield node, node
            return
        if not is_settled(node, low, high):
            self.unsettled.inc()
            yield beam.pvalue.TaggedOutput(UNSETTLED, (self.round_number, 1))
        centre = min(low, node)
        for other in neighbours:
            if other > node:
                yield other, centre


def _small_star(grouped: tuple[str, Iterable[str]]) -> Iterator[Edge]:
    """At node u with its smaller neighbours: each (u, w) becomes (w, m), plus (u, m), m = min(u, neighbours)."""
    node, smaller = grouped
    low, _ = _neighbour_range(node, smaller)
    if low is None:
        yield node, node
        return
    for other in smaller:
        if other != low and other != node:
            yield other, low
    yield node, low


class _StarLabels(beam.DoFn):
    """At node u of a star forest: the centre labels itself, a leaf takes its one neighbour; counts the rest."""

    def process(self, grouped: tuple[str, Iterable[str]]):
        node, neighbours = grouped
        low, high = _neighbour_range(node, neighbours)
        if not is_settled(node, low, high):
            yield beam.pvalue.TaggedOutput(UNSETTLED, ("final", 1))
        elif low is None or low > node:
            yield node, node
        else:
            yield node, low


class _RouteUnlessConverged(beam.DoFn):
    """Edges go on to the main output while the previous round saw unsettled nodes, else to `done`.

    `previous` is that round's `(round, unsettled_nodes)` pair, or None when it counted none (no pair emitted)."""

    def process(self, edge: Edge, previous: tuple[int, int] | None):
        if previous is not None and previous[1]:
            yield edge
        else:
            yield beam.pvalue.TaggedOutput("done", edge)


def _fail_unless_converged(final_count: tuple[str, int], max_rounds: int) -> int:
    _, unsettled = final_count
    if unsettled:
        raise NotConvergedError(
            f"ConnectedComponents did not converge within max_rounds={max_rounds}: {unsettled} nodes are "
            f"not yet in a star; raise max_rounds (the bound is O(log^2 n) rounds for n nodes)")
    return unsettled


def _release_after_check(label: Edge, unsettled: int) -> Edge:
    return label


class RoundStats(beam.CombineFn):
    """Folds the `(round, unsettled_nodes)` pairs of one run into one small dict (at most max_rounds entries):
    `{"max_rounds", "rounds_used", "unsettled_nodes_per_round"}`; `rounds_used` counts the rounds that still
    saw unsettled nodes (each of them changed the edges), the list stops at the first round that saw none."""

    def __init__(self, max_rounds: int):
        self.max_rounds = max_rounds

    def create_accumulator(self) -> dict[int, int]:
        return {}

    def add_input(self, accumulator: dict[int, int], element: tuple[int, int]) -> dict[int, int]:
        round_number, unsettled = element
        accumulator[round_number] = accumulator.get(round_number, 0) + unsettled
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[dict[int, int]]) -> dict[int, int]:
        merged: dict[int, int] = {}
        for accumulator in accumulators:
            for round_number, unsettled in accumulator.items():
                merged[round_number] = merged.get(round_number, 0) + unsettled
        return merged

    def extract_output(self, accumulator: dict[int, int]) -> dict[str, Any]:
        per_round = []
        for round_number in range(1, self.max_rounds + 1):
            unsettled = accumulator.get(round_number, 0)
            per_round.append(unsettled)
            if not unsettled:
                break
        return {"max_rounds": self.max_rounds, "rounds_used": sum(1 for count in per_round if count),
                "unsettled_nodes_per_round": per_round}


class _StarRound(beam.PTransform):
    """One large-star + small-star round: returns (edges, the `(round, unsettled_nodes)` pair of its input)."""

    def __init__(self, round_number: int, previous: beam.PCollection | None):
        super().__init__()
        self.round_number = round_number
        self.previous = previous

    def expand(self, edges):
        done = None
        if self.previous is not None:
            routed = edges | "RouteUnlessConverged" >> beam.ParDo(
                _RouteUnlessConverged(), beam.pvalue.AsSingleton(self.previous, default_value=None)).with_outputs(
                    "done", main="work")
            edges, done = routed.work, routed.done
        large = (edges
                 | "LargeStarEnds" >> beam.FlatMap(_both_ends).with_output_types(Edge)
                 | "LargeStarGroup" >> beam.GroupByKey()
                 | "LargeStar" >> beam.ParDo(_LargeStar(self.round_number)).with_outputs(UNSETTLED, main="edges"))
        unsettled = large[UNSETTLED] | "CountUnsettled" >> beam.CombinePerKey(sum)
        changed = (large.edges
                   | "SmallStarGroup" >> beam.GroupByKey()
                   | "SmallStar" >> beam.FlatMap(_small_star).with_output_types(Edge)
                   | "Dedupe" >> beam.Distinct().with_output_types(Edge))
        if done is not None:
            changed = (changed, done) | "JoinConverged" >> beam.Flatten()
        return changed, unsettled


class ConnectedComponents(beam.PTransform):
    """PCollection of edges `(u, v)` (string ids; duplicates, self-loops and both directions allowed) ->
    `(node, label)` for every node in any edge, label = the smallest id (string order) in its component.

    With `with_stats=True` the result is a `ComponentsOutput(labels, stats)`, `stats` holding one `RoundStats`
    dict. Fails with `NotConvergedError` when `max_rounds` (default 30: enough for chains of ~10^8 nodes at the
    observed ~log n rounds) did not reach stars."""

    def __init__(self, max_rounds: int = 30, with_stats: bool = False):
        super().__init__()
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        self.max_rounds = max_rounds
        self.with_stats = with_stats

    def expand(self, edges):
        edges = (edges
                 | "Canonical" >> beam.Map(canonical_edge).with_output_types(Edge)
                 | "Dedupe" >> beam.Distinct().with_output_types(Edge))
        unsettled = None
        per_round = []
        for round_number in range(1, self.max_rounds + 1):
            edges, unsettled = edges | f"Round{round_number:02d}" >> _StarRound(round_number, unsettled)
            per_round.append(unsettled)
        labelled = (edges
                    | "LabelEnds" >> beam.FlatMap(_both_ends).with_output_types(Edge)
                    | "LabelGroup" >> beam.GroupByKey()
                    | "Label" >> beam.ParDo(_StarLabels()).with_outputs(UNSETTLED, main="labels"))
        verified = (labelled[UNSETTLED]
                    | "CountUnsettled" >> beam.CombinePerKey(sum)
                    | "FailUnlessConverged" >> beam.Map(_fail_unless_converged, self.max_rounds))
        labels = labelled.labels | "ReleaseAfterCheck" >> beam.Map(
            _release_after_check, beam.pvalue.AsSingleton(verified, default_value=0)).with_output_types(Edge)
        if not self.with_stats:
            return labels
        stats = (per_round | "FlattenRounds" >> beam.Flatten()
                 | "RoundStats" >> beam.CombineGlobally(RoundStats(self.max_rounds)))
        return ComponentsOutput(labels, stats)


def union_find_components(edges: Iterable[Edge]) -> dict[str, str]:
    """Single-machine reference with the same labelling: union-find with path halving, each root the smallest id."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for edge in edges:
        u, v = canonical_edge(edge)
        parent.setdefault(u, u)
        parent.setdefault(v, v)
        ru, rv = root(u), root(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)
    return {node: root(node) for node in parent}


# ---------------------------------------------------------------- roots of a parent forest (pointer jumping)
#
# Parent links (every node names at most one parent) are a forest plus, in damaged dumps, cycles. There the
# component of a node is simply the root its parents lead to, and pointer jumping finds it in O(log depth) rounds:
# each round every node still climbing replaces its pointer p by p's pointer, doubling the distance it has climbed.
# A state is a tuple (node, parent, pointer, lowest, done): `done` says `pointer` is the root, else
# pointer = the 2^k-th ancestor after k rounds and `lowest` = the smallest id among the ancestors passed so far.

CYCLE, TOO_DEEP = "cycle", "too-deep"
PROGRESS = "progress"
State = tuple[str, str, str, str, bool]


class RootsOutput(NamedTuple):
    roots: beam.PCollection        # (node, root) for every node whose root was found
    unresolved: beam.PCollection   # (node, CYCLE | TOO_DEEP) for the others
    deep_roots: beam.PCollection   # distinct roots that have TOO_DEEP nodes below them (drop those trees whole)


def _link_messages(link: tuple[str, str | None]) -> Iterator[tuple[str, tuple[bool, str]]]:
    """A link is told to its own node `(False, parent)` and to its parent `(True, child)`."""
    node, parent = link
    yield node, (False, parent or "")
    if parent:
        yield parent, (True, node)


def _anchor(grouped: tuple[str, Iterable[tuple[bool, str]]]) -> Iterator[Any]:
    """At node u: its own link `(False, parent)` when u is in the input, and `(True, child)` from each child.

    Emits the first state of u when it is a root, and of each child (done when u is a root or is missing: a
    parent outside the input is the root of its replies)."""
    node, values = grouped
    present, is_root = False, False
    for is_child, other in values:
        if not is_child:
            present, is_root = True, not other
    if is_root:
        yield node, "", node, node, True
    for is_child, child in values:
        if is_child:
            done = is_root or not present
            yield child, node, node, node, done
            yield beam.pvalue.TaggedOutput(PROGRESS, (int(done), int(not done)))


def _messages(state: State) -> Iterator[tuple[str, tuple[bool, State]]]:
    """A state answers at its own node and, while climbing, asks its pointer for the pointer's state."""
    yield state[0], (False, state)
    if not state[4]:
        yield state[2], (True, state)


def _jump(grouped: tuple[str, Iterable[tuple[bool, State]]]) -> Iterator[Any]:
    """At node u: each state asking u moves its pointer to u's pointer (two passes over the values, no list)."""
    _, messages = grouped
    own = next((state for is_ask, state in messages if not is_ask), None)
    if own is not None and own[4]:
        yield own                            # a climbing state is emitted where it asks
    for is_ask, state in messages:
        if not is_ask:
            continue
        if own is None:                      # cannot happen: pointers only name nodes of the input
            yield state
            continue
        node, parent, _, lowest, _ = state
        yield node, parent, own[2], min(lowest, own[3]), own[4]
        yield beam.pvalue.TaggedOutput(PROGRESS, (int(own[4]), int(not own[4])))


def _add_progress(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(nodes that found their root, nodes still climbing) summed over one round."""
    resolved = climbing = 0
    for done, open_ in pairs:
        resolved += done
        climbing += open_
    return resolved, climbing


def _route_messages(state: State, progress: tuple[int, int]):
    """The messages of the states that take part in the next round, from the last round's
    `(resolved, climbing)`: all of them while some node found its root (climbing ones need the answers of
    finished ones); none once nothing climbs; only the climbing ones once nothing was resolved: those are all on
    or below cycles, which never point outside themselves. The others go on unchanged (tagged `done`)."""
    resolved, climbing = progress
    if climbing and (resolved or not state[4]):
        yield from _messages(state)
    else:
        yield beam.pvalue.TaggedOutput("done", state)


class _JumpRound(beam.PTransform):
    """One pointer-jumping round: returns (states, its `(resolved, climbing)` singleton)."""

    def __init__(self, progress: beam.PCollection):
        super().__init__()
        self.progress = progress

    def expand(self, states):
        routed = states | "Route" >> beam.ParDo(_route_messages, beam.pvalue.AsSingleton(self.progress)).with_outputs(
            "done", main="messages")
        jumped = (routed.messages
                  | "GroupAtPointer" >> beam.GroupByKey()
                  | "Jump" >> beam.FlatMap(_jump).with_outputs(PROGRESS, main="states"))
        progress = jumped[PROGRESS] | "Progress" >> beam.CombineGlobally(_add_progress)
        return (jumped.states, routed.done) | "Join" >> beam.Flatten(), progress


def loop_or_deep(parents: dict[str, str]) -> dict[str, str]:
    """Reason for each node of `parents` (node -> parent) whose root was not found: CYCLE when following parents
    inside `parents` comes back to the walk (the node is on or below a cycle), else TOO_DEEP (the walk leaves
    `parents`: the chain goes on further than the rounds could follow)."""
    reason: dict[str, str] = {}
    for start in parents:
        walk, on_walk, node = [], set(), start
        while node in parents and node not in reason and node not in on_walk:
            walk.append(node)
            on_walk.add(node)
            node = parents[node]
        verdict = reason[node] if node in reason else CYCLE if node in on_walk else TOO_DEEP
        for visited in walk:
            reason[visited] = verdict
    return reason


def _lookup_pointer(grouped: tuple[str, Iterable[tuple[bool, State]]]) -> Iterator[Any]:
    """At node u, for each unresolved state pointing at u: TOO_DEEP when u found its root (tagged `deep_root`:
    that root has a too-deep tree); else `(u's lowest, (node, parent))` for `loop_or_deep`. After enough rounds
    every node on or below a cycle points into the cycle, whose `lowest` is then the cycle's smallest id: the
    nodes of one cycle, and of the trees hanging from it, meet in one group."""
    _, messages = grouped
    own = next((state for is_ask, state in messages if not is_ask), None)
    for is_ask, state in messages:
        if not is_ask:
            continue
        if own is not None and own[4]:
            yield beam.pvalue.TaggedOutput(TOO_DEEP, (state[0], TOO_DEEP))
            yield beam.pvalue.TaggedOutput("deep_root", own[2])
        else:
            yield ("" if own is None else own[3]), (state[0], state[1])


def _classify(grouped: tuple[str, Iterable[tuple[str, str]]]) -> Iterator[tuple[str, str]]:
    _, links = grouped
    yield from sorted(loop_or_deep(dict(links)).items())


class ForestRoots(beam.PTransform):
    """PCollection of parent links `(node, parent)` (parent None or "" for a root; one link per node) ->
    `RootsOutput(roots, unresolved, deep_roots)`: the root of every node, found by pointer jumping.

    A parent outside the input is the root of its children (it is not itself a node of the output). After k
    rounds a node at depth <= 2^k has its root, so `max_rounds` rounds (default 20) follow chains of 2^20
    (~10^6) parent steps; rounds after the last one that changed anything cost one routing pass, no shuffle.
    Nodes whose root is not found never fail the run: those on or below a cycle come out as CYCLE, those deeper
    than 2^max_rounds (and those on or below a cycle that is itself that large) as TOO_DEEP, and the roots above
    TOO_DEEP nodes come out in `deep_roots` so that a caller can drop those trees whole.

    Shuffles: one to anchor the links, one per working round (grouping each node with the states that point at
    it), two more only when nodes are left unresolved. Memory: each grouping reads its values in two passes; only
    the unresolved nodes of one cycle (or of one too-deep stretch) are held together to tell cycles apart."""

    def __init__(self, max_rounds: int = 20):
        super().__init__()
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        self.max_rounds = max_rounds

    def expand(self, links):
        anchored = (links
                    | "LinkMessages" >> beam.FlatMap(_link_messages)
                    | "GroupAtParent" >> beam.GroupByKey()
                    | "Anchor" >> beam.FlatMap(_anchor).with_outputs(PROGRESS, main="states"))
        states = anchored.states
        progress = anchored[PROGRESS] | "Progress" >> beam.CombineGlobally(_add_progress)
        for round_number in range(1, self.max_rounds + 1):
            states, progress = states | f"Jump{round_number:02d}" >> _JumpRound(progress)
        roots = (states | "Resolved" >> beam.Filter(lambda state: state[4])
                 | "Roots" >> beam.Map(lambda state: (state[0], state[2])))
        asked = states | "Targets" >> beam.ParDo(_route_messages, beam.pvalue.AsSingleton(progress)).with_outputs(
            "done", main="messages")
        looked = (asked.messages
                  | "GroupLeftovers" >> beam.GroupByKey()
                  | "LookupPointer" >> beam.FlatMap(_lookup_pointer).with_outputs(TOO_DEEP, "deep_root", main="groups"))
        loops_or_deep = (looked.groups | "GroupByLowest" >> beam.GroupByKey()
                         | "LoopOrDeep" >> beam.FlatMap(_classify))
        unresolved = (looked[TOO_DEEP], loops_or_deep) | "Unresolved" >> beam.Flatten()
        deep_roots = looked.deep_root | "DeepRoots" >> beam.Distinct()
        return RootsOutput(roots, unresolved, deep_roots)
