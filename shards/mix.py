"""Weighted mixing of token streams, as WuDao 2.0 trained on a weighted mix of corpora (Chinese text, image-text,
English text): `MixedStreams` draws the source of each next sequence at random in proportion to its weight.

Sources are `StreamingShards` over different shard sets, or over one shard set with different `labels`
(`MixedStreams.from_labels`: one stream per WuDao `dataType`). A source that ends an epoch starts its next
epoch at once, so a small source with a large weight is up-sampled (its samples repeat, reshuffled per epoch)
and a large one is down-sampled. Weights are per sequence: with packed sequences (no `pad_id`) every sequence
holds `seq_len` tokens, so they are token shares as well.

Resumable: `state_dict()` holds the draw generator and each source's own state, so a job restarted with
`load_state_dict()` continues with exactly the next sequence. Per rank and DataLoader worker: give each rank
its own streams (`rank=`, `world_size=`); the draws depend on `seed` alone, so with one seed every rank draws
the same source for its i-th sequence (pass `seed + rank` for independent draws).
"""
from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from shards.reader import StreamingShards, _Base


def check_weights(streams: Mapping[str, Any], weights: Mapping[str, float]) -> None:
    """Raise ValueError unless `weights` names exactly the streams, each weight a positive finite number, and no
    stream object is given twice (two names would share one position)."""
    if not streams:
        raise ValueError("no streams to mix")
    if not all(isinstance(name, str) for name in streams):
        raise ValueError(f"stream names must be strings, got {sorted(map(repr, streams))}")
    missing, extra = sorted(set(streams) - set(weights)), sorted(set(weights) - set(streams))
    if missing or extra:
        raise ValueError(f"weights and streams must name the same sources: no weight for {missing}, "
                         f"weights for unknown streams {extra}")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) \
                or weight <= 0:
            raise ValueError(f"weight of {name!r} must be a positive finite number, got {weight!r}")
    if len({id(s) for s in streams.values()}) != len(streams):
        raise ValueError("each source needs its own stream object; one is given under two names")


class MixedStreams(_Base):
    """Sequences from several streams, the source of each drawn with probability weight / sum of weights.

    `max_sequences` caps the sequences yielded over the mix's life (resumes included); without it the mix never
    ends. Iterating again continues where the last pass stopped. `stats`: "sequences" in all,
    "per_source" {name: sequences}, "epochs_done" {name: epochs a source finished inside the mix}.
    """

    def __init__(self, streams: Mapping[str, StreamingShards], weights: Mapping[str, float], seed: int, *,
                 max_sequences: int | None = None):
        check_weights(streams, weights)
        if max_sequences is not None and (not isinstance(max_sequences, int) or max_sequences < 0):
            raise ValueError(f"max_sequences must be None or a count >= 0, got {max_sequences!r}")
        self.names = sorted(streams)
        self.streams = {n: streams[n] for n in self.names}
        self.weights = {n: float(weights[n]) for n in self.names}
        self.seed, self.max_sequences = seed, max_sequences
        total = sum(self.weights.values())
        self._cumulative = list(np.cumsum([self.weights[n] / total for n in self.names]))
        self._rng = np.random.default_rng(seed)
        self.stats = {"sequences": 0, "per_source": dict.fromkeys(self.names, 0),
                      "epochs_done": dict.fromkeys(self.names, 0)}

    @classmethod
    def from_labels(cls, source, weights: Mapping[str, float], *, seed: int, max_sequences: int | None = None,
                    **reader_kwargs) -> MixedStreams:
        """A mix of the WuDao `dataType` labels within one shard set: one `StreamingShards(source,
        labels=[label], seed=seed, **reader_kwargs)` per label named in `weights`. Each stream reads every
        shard (and its json members), so this costs one pass over the shards per label."""
        streams = {label: StreamingShards(source, seed=seed, labels=[label], **reader_kwargs) for label in weights}
        return cls(streams, weights, seed, max_sequences=max_sequences)

    def _draw(self) -> str:
        i = bisect.bisect_right(self._cumulative, self._rng.random())
        return self.names[min(i, len(self.names) - 1)]

    # -- state

    def state_dict(self) -> dict[str, Any]:
        """Exact position after the last yielded sequence: the draw generator, counts, each stream's state."""
        return {"version": 1, "seed": self.seed, "names": list(self.names), "rng": self._rng.bit_generator.state,
                "stats": {"sequences": self.stats["sequences"], "per_source": dict(self.stats["per_source"]),
                          "epochs_done": dict(self.stats["epochs_done"])},
                "streams": {n: self.streams[n].state_dict() for n in self.names}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; it must come from a mix of the same sources and seed (weights may differ)."""
        if state.get("version") != 1:
            raise ValueError("unknown mix state version")
        if state["names"] != self.names or state["seed"] != self.seed:
            raise ValueError(f"state is for sources {state['names']} with seed {state['seed']}, "
                             f"this mix has {self.names} with seed {self.seed}")
        self._rng.bit_generator.state = state["rng"]
        self.stats = {"sequences": state["stats"]["sequences"], "per_source": dict(state["stats"]["per_source"]),
                      "epochs_done": dict(state["stats"]["epochs_done"])}
        for name in self.names:
            self.streams[name].load_state_dict(state["streams"][name])

    # -- iteration

    def __iter__(self) -> Iterator:
        for stream in self.streams.values():  # pin each stream where it stands, so a new pass continues there
            stream.load_state_dict(stream.state_dict())
        iters: dict[str, Iterator] = {}
        while self.max_sequences is None or self.stats["sequences"] < self.max_sequences:
            name = self._draw()
            seq = self._next(name, iters)
            self.stats["sequences"] += 1
            self.stats["per_source"][name] += 1
            yield seq

    def _next(self, name: str, iters: dict[str, Iterator]):
        """The next sequence of source `name`, starting its next epoch when one ends."""
        if name not in iters:
            iters[name] = iter(self.streams[name])
        try:
            return next(iters[name])
        except StopIteration:
            pass
        self.stats["epochs_done"][name] += 1
        iters[name] = iter(self.streams[name])  # the stream has moved on to its next epoch
        try:
            return next(iters[name])
        except StopIteration:
            raise ValueError(f"source {name!r} yields no sequence in a whole epoch "
                             f"(epoch {self.streams[name].epoch - 1}): nothing to mix") from None
