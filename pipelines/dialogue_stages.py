"""Dialogue stages that need a view of the whole corpus, built from Beam shuffles (and one singleton side input:
the number of sessions, which scales the ad limit).

- `ThreadsToSessions`: thread dumps of posts (`id`, `parent_id`) -> one session per root-to-leaf path.
- `AdReplies`: a reply with ad cues that follows many different contexts, or any reply that follows far more
  than the corpus size makes likely, is an advertisement (LCCC, `cleaners.dialogue.ads`).
- `GenericReplies`: a reply mostly made of trigrams seen in very many sessions is generic (LCCC).

The session rules follow LCCC (Wang, Ke, Zhang, Huang, Zhu, Huang 2020, "A Large-Scale Chinese Short-Text
Conversation Dataset", NLPCC, section 3.2): a removed reply splits its session there, and the fragments with at
least 2 turns are kept. Every transform returns `StageOutput(kept, rejects, counts)` with one count dict per input
element, so that for each stage in + created = out + dropped.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from cleaners.dialogue.records import Post, Session
from cleaners.dialogue.sessions import (MIN_FRAGMENT_TURNS, generic_cover, is_valid_session, join_key,
                                        normalize_turn, split_session, tokens, trigrams, turn_hash)
from cleaners.dialogue.threads import build_thread, is_valid_post, post_order, thread_key
from pipelines import ledger
from pipelines.dedup.common import StageOutput

BAD_INPUT = "bad-input"
THREAD_TOO_DEEP = "thread-too-deep"


# ---------------------------------------------------------------- shared helpers
# (the pure ones, session splitting and trigram units included, are in cleaners/dialogue/sessions.py)

def split_outcome(session: Session, removed: set[int], stage: str, reason: str):
    """(fragments, count dict, reject rows) for a session whose turns `removed` are taken out.

    Ledger: in 1, out = fragments; created = fragments - 1 when any survive, else the session is dropped."""
    fragments = split_session(session, removed)
    counts: dict[str, int] = {ledger.key(stage, "count", "replies-removed"): len(removed)} if removed else {}
    if fragments:
        counts.update({ledger.key(stage, "in"): 1, ledger.key(stage, "out"): len(fragments)})
        if len(fragments) > 1:
            counts[ledger.key(stage, "created")] = len(fragments) - 1
        return fragments, counts, []
    counts.update(ledger.dropped_counts(stage, reason))
    return [], counts, [ledger.reject_row(session, stage, reason)]


class CappedDistinct(beam.CombineFn):
    """Number of distinct values, counted up to `cap` (memory per key stays at most `cap` values).

    The result is min(true distinct count, cap) whatever the order or merging: a capped set only drops values
    once it already holds `cap` of them."""

    def __init__(self, cap: int):
        self.cap = cap

    def create_accumulator(self) -> set:
        return set()

    def add_input(self, acc: set, value: str) -> set:
        if len(acc) < self.cap:
            acc.add(value)
        return acc

    def merge_accumulators(self, accs: Iterable[set]) -> set:
        merged: set = set()
        for acc in accs:
            merged |= acc
        return set(sorted(merged)[:self.cap]) if len(merged) > self.cap else merged

    def extract_output(self, acc: set) -> int:
        return len(acc)


def _validate_sessions(stage: str):
    def check(session: Any):
        if is_valid_session(session):
            yield session
        else:
            yield beam.pvalue.TaggedOutput("bad", (
                ledger.dropped_counts(stage, BAD_INPUT), ledger.reject_row(session, stage, BAD_INPUT)))
    return check


class _FlaggedSplit(beam.PTransform):
    """Join sessions with `(join_key, flagged turn hash)` pairs and split each session at its flagged replies."""

    def __init__(self, stage: str, reason: str, flagged_turns):
        super().__init__()
        self.stage, self.reason, self.flagged_turns = stage, reason, flagged_turns

    def expand(self, sessions):
        stage, reason = self.stage, self.reason

        def split(grouped):
            _, joined = grouped
            flagged = set(joined["flagged"])
            for session in joined["sessions"]:
                removed = {i for i, turn in enumerate(session.turns) if i > 0 and turn_hash(turn) in flagged}
                fragments, counts, rejects = split_outcome(session, removed, stage, reason)
                for fragment in fragments:
                    yield fragment
                yield ledger.counted(counts)
                for row in rejects:
                    yield beam.pvalue.TaggedOutput(ledger.REJECTS, row)

        return ({"sessions": sessions | "KeySessions" >> beam.Map(lambda s: (join_key(s), s)),
                 "flagged": self.flagged_turns}
                | "JoinFlags" >> beam.CoGroupByKey()
                | "Split" >> beam.FlatMap(split).with_output_types(Any)
                .with_outputs(ledger.COUNTS, ledger.REJECTS, main="kept"))


def _stage_output(split, bad, stage: str) -> StageOutput:
    bad_counts = bad | "BadCounts" >> beam.Map(lambda item: ledger.live(item[0]))
    counts = (split.counts, bad_counts) | "Counts" >> beam.Flatten()
    rejects = (split.rejects, bad | "BadRejects" >> beam.Map(lambda item: item[1])) | "Rejects" >> beam.Flatten()
    return StageOutput(split.kept, rejects, counts)


# ---------------------------------------------------------------- advertisement replies

class AdReplies(beam.PTransform):
    """Sessions -> sessions without advertisement replies (LCCC section 3.2: a reply that follows many different
    contexts), split there.

    A reply of at least `min_reply_chars` (default 8, our choice: short stock replies follow every kind of context
    and are the generic-reply rule's business) is an ad when it follows more than `max_contexts` (LCCC's 5)
    distinct preceding turns *and* carries ad cues (`cleaners.dialogue.ads.looks_like_ad`: a contact, or two of
    promotional wording, a call to action, a price), or when it follows more than `plain_limit(sessions)` distinct
    contexts whatever its text: `max(min_plain_contexts, plain_contexts_per_session * sessions)` (defaults 50 and
    0.001: a reply after one context in a thousand sessions), because a factual answer repeats as often as its
    question does, and LCCC's 5 was counted over millions of Weibo sessions. Turns are compared normalized
    (`normalize_turn`); distinct contexts are counted exactly (`Distinct` then `Count.PerKey`), and the session
    count is a singleton side input. Shuffles: (reply, context) pairs -> distinct pairs -> contexts per reply ->
    flagged replies joined to the sessions that hold them -> sessions split (reason `ad-reply` when no fragment of
    2+ turns survives). Sessions that are not valid: `bad-input`."""

    def __init__(self, stage: str = "ad_replies", max_contexts: int = 5, min_reply_chars: int = 8,
                 min_plain_contexts: int = 50, plain_contexts_per_session: float = 0.001):
        super().__init__()
        if max_contexts < 1 or min_plain_contexts < max_contexts:
            raise ValueError(f"need 1 <= max_contexts <= min_plain_contexts, got {max_contexts}, {min_plain_contexts}")
        if min_reply_chars < 0 or plain_contexts_per_session < 0:
            raise ValueError("min_reply_chars and plain_contexts_per_session must be >= 0")
        self.stage, self.max_contexts, self.min_reply_chars = stage, max_contexts, min_reply_chars
        self.min_plain_contexts, self.plain_contexts_per_session = min_plain_contexts, plain_contexts_per_session

    def plain_limit(self, sessions: int) -> int:
        """Distinct contexts a reply without ad cues may follow in a corpus of `sessions` sessions."""
        return max(self.min_plain_contexts, int(self.plain_contexts_per_session * sessions))

    def expand(self, sessions):
        from cleaners.dialogue.ads import looks_like_ad

        checked = (sessions | "Validate" >> beam.FlatMap(_validate_sessions(self.stage)).with_output_types(Any)
                   .with_outputs("bad", main="ok"))
        sessions = checked.ok
        min_chars, max_contexts, plain_limit = self.min_reply_chars, self.max_contexts, self.plain_limit

        def reply_contexts(session: Session):
            hashes = [turn_hash(turn) for turn in session.turns]
            for i in range(1, len(hashes)):
                if len(normalize_turn(session.turns[i])) >= min_chars:
                    yield (hashes[i], looks_like_ad(session.turns[i])), hashes[i - 1]

        def reply_places(session: Session):
            key = join_key(session)
            for reply in sorted({turn_hash(turn) for turn in session.turns[1:]}):
                yield reply, key

        def over_limit(item, total: int):
            (reply, cued), contexts = item
            if contexts > (max_contexts if cued else plain_limit(total)):
                yield reply, True

        total = sessions | "CountSessions" >> beam.combiners.Count.Globally()
        ads = (sessions
               | "ReplyContexts" >> beam.FlatMap(reply_contexts)
               | "DistinctPairs" >> beam.Distinct()
               | "ContextsPerReply" >> beam.combiners.Count.PerKey()
               | "OverLimit" >> beam.FlatMap(over_limit, total=beam.pvalue.AsSingleton(total)))
        flagged = ({"ads": ads, "places": sessions | "ReplyPlaces" >> beam.FlatMap(reply_places)}
                   | "JoinAds" >> beam.CoGroupByKey()
                   | "FlagPlaces" >> beam.FlatMap(
                       lambda kv: ((key, kv[0]) for key in kv[1]["places"]) if kv[1]["ads"] else ()))
        split = sessions | "SplitAtAds" >> _FlaggedSplit(self.stage, "ad-reply", flagged)
        return _stage_output(split, checked.bad, self.stage)


# ---------------------------------------------------------------- generic replies

class GenericReplies(beam.PTransform):
    """Sessions -> sessions without generic replies: a reply is generic when more than `max_cover` of its units
    (see `tokens`) lie in trigrams that occur in more than `min_sessions` distinct sessions (LCCC section 3.2,
    which removes replies made of very frequent trigrams). Distinct sessions are distinct session ids. Shuffles:
    (trigram, session id) -> capped distinct count -> generic trigrams joined to the sessions holding them ->
    sessions regrouped, replies measured and split (reason `generic-reply` when nothing of 2+ turns survives)."""

    def __init__(self, stage: str = "generic_replies", min_sessions: int = 1000, max_cover: float = 0.9):
        super().__init__()
        if min_sessions < 1:
            raise ValueError(f"min_sessions must be at least 1, got {min_sessions}")
        if not 0.0 <= max_cover <= 1.0:
            raise ValueError(f"max_cover must be in [0, 1], got {max_cover}")
        self.stage, self.min_sessions, self.max_cover = stage, min_sessions, max_cover

    def expand(self, sessions):
        checked = (sessions | "Validate" >> beam.FlatMap(_validate_sessions(self.stage)).with_output_types(Any)
                   .with_outputs("bad", main="ok"))
        sessions = checked.ok
        limit, max_cover, stage = self.min_sessions, self.max_cover, self.stage

        def session_trigrams(session: Session):
            grams = {gram for turn in session.turns for gram in trigrams(tokens(turn))}
            for gram in sorted(grams):
                yield gram, session.id

        def reply_trigram_places(session: Session):
            key = join_key(session)
            for gram in sorted({gram for turn in session.turns[1:] for gram in trigrams(tokens(turn))}):
                yield gram, key

        generic = (sessions
                   | "SessionTrigrams" >> beam.FlatMap(session_trigrams)
                   | "DistinctSessions" >> beam.CombinePerKey(CappedDistinct(limit + 1))
                   | "OverLimit" >> beam.Filter(lambda kv: kv[1] > limit))
        places = ({"generic": generic, "places": sessions | "TrigramPlaces" >> beam.FlatMap(reply_trigram_places)}
                  | "JoinGeneric" >> beam.CoGroupByKey()
                  | "GenericPlaces" >> beam.FlatMap(
                      lambda kv: ((key, kv[0]) for key in kv[1]["places"]) if kv[1]["generic"] else ()))

        def split(grouped):
            _, joined = grouped
            generic_grams = set(joined["generic"])
            for session in joined["sessions"]:
                removed = {i for i, turn in enumerate(session.turns)
                           if i > 0 and generic_cover(tokens(turn), generic_grams) > max_cover}
                fragments, counts, rejects = split_outcome(session, removed, stage, "generic-reply")
                yield from fragments
                yield ledger.counted(counts)
                for row in rejects:
                    yield beam.pvalue.TaggedOutput(ledger.REJECTS, row)

        split_out = ({"sessions": sessions | "KeySessions" >> beam.Map(lambda s: (join_key(s), s)),
                      "generic": places}
                     | "JoinSessions" >> beam.CoGroupByKey()
                     | "Split" >> beam.FlatMap(split).with_output_types(Any)
                     .with_outputs(ledger.COUNTS, ledger.REJECTS, main="kept"))
        return _stage_output(split_out, checked.bad, stage)


# ---------------------------------------------------------------- threads to sessions

class ThreadsToSessions(beam.PTransform):
    """Posts -> sessions, one per root-to-leaf path of each thread (turns = texts, speakers = authors when any,
    key = the leaf post's key, source = the root post's source; see `build_thread` for every post outcome).

    Shuffles: duplicate ids are grouped first (the post smallest by key, source, text, parent, author is kept, the
    others dropped as `duplicate-id`); then posts are grouped by thread: by `meta["thread_id"]` when the dump has
    one, else by the root their parent links lead to (`pipelines.dedup.components.ForestRoots`: pointer jumping,
    `max_rounds` rounds follow reply chains of up to 2^max_rounds posts; a missing parent is the root of its
    replies); each thread is built in memory (a thread fits one worker). Posts on or below a parent cycle are
    dropped as `cycle`; a thread with a chain deeper than 2^max_rounds is dropped whole as `thread-too-deep`
    (never a failed run).

    Ledger (stage `threads`): every post is `in`; each session is `out` through its leaf post; inner posts are
    dropped as `merged-into-session` (no reject row: they are in the sessions); `no-reply`, `cycle`,
    `thread-too-deep`, `missing-parent`, `duplicate-id` and `bad-input` are real drops with reject rows. So
    in = out + dropped."""

    def __init__(self, stage: str = "threads", max_depth: int = 32, missing_parent: str = "root",
                 max_rounds: int = 20):
        super().__init__()
        if max_depth < MIN_FRAGMENT_TURNS:
            raise ValueError(f"max_depth must be at least {MIN_FRAGMENT_TURNS}, got {max_depth}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        if missing_parent not in ("root", "drop"):
            raise ValueError(f"missing_parent must be 'root' or 'drop', got {missing_parent!r}")
        self.stage, self.max_depth, self.missing_parent, self.max_rounds = stage, max_depth, missing_parent, max_rounds

    def expand(self, posts):
        from pipelines.dedup.components import TOO_DEEP, ForestRoots

        stage, max_depth, missing_parent = self.stage, self.max_depth, self.missing_parent

        def validate(post):
            if is_valid_post(post):
                yield post.id, post
            else:
                yield beam.pvalue.TaggedOutput("bad", (
                    ledger.dropped_counts(stage, BAD_INPUT), ledger.reject_row(post, stage, BAD_INPUT)))

        def first_of_duplicates(grouped):
            _, copies = grouped
            first, *others = sorted(copies, key=post_order)
            yield first
            for post in others:
                yield beam.pvalue.TaggedOutput("bad", (
                    ledger.dropped_counts(stage, "duplicate-id"), ledger.reject_row(post, stage, "duplicate-id")))

        checked = posts | "Validate" >> beam.FlatMap(validate).with_output_types(Any).with_outputs("bad", main="ok")
        unique = (checked.ok | "GroupIds" >> beam.GroupByKey()
                  | "DropDuplicateIds" >> beam.FlatMap(first_of_duplicates).with_output_types(Any)
                  .with_outputs("bad", main="ok"))
        linked = unique.ok | "NoThreadId" >> beam.Filter(lambda post: thread_key(post) is None)
        roots = (linked
                 | "ParentLinks" >> beam.Map(lambda post: (post.id, post.parent_id))
                 | "Roots" >> ForestRoots(max_rounds=self.max_rounds))
        labels = ((roots.roots | "ThreadOf" >> beam.Map(lambda kv: (kv[0], (True, kv[1]))),
                   roots.unresolved | "ReasonOf" >> beam.Map(
                       lambda kv: (kv[0], (False, THREAD_TOO_DEEP if kv[1] == TOO_DEEP else kv[1]))))
                  | "AllLabels" >> beam.Flatten())

        def key_by_root(joined):
            _, sides = joined
            for post in sides["post"]:
                for found, value in sides["label"]:
                    if found:
                        yield "c\x00" + value, post
                    else:
                        yield beam.pvalue.TaggedOutput("unresolved", (
                            ledger.dropped_counts(stage, value), ledger.reject_row(post, stage, value)))

        by_root = ({"post": linked | "KeyById" >> beam.Map(lambda post: (post.id, post)), "label": labels}
                   | "JoinLabels" >> beam.CoGroupByKey()
                   | "KeyByRoot" >> beam.FlatMap(key_by_root).with_output_types(Any)
                   .with_outputs("unresolved", main="ok"))
        deep_marks = roots.deep_roots | "MarkDeep" >> beam.Map(lambda root: ("c\x00" + root, THREAD_TOO_DEEP))
        by_thread_id = (unique.ok | "WithThreadId" >> beam.Filter(lambda post: thread_key(post) is not None)
                        | "KeyByThreadId" >> beam.Map(lambda post: ("t\x00" + thread_key(post), post)))

        def build(grouped):
            values = list(grouped[1])
            thread_posts = [value for value in values if isinstance(value, Post)]
            if len(thread_posts) < len(values):      # marked by `deep_marks`: the thread is too deep to build
                sessions = []
                outcomes = [(post, THREAD_TOO_DEEP) for post in sorted(thread_posts, key=lambda post: post.id)]
            else:
                sessions, outcomes = build_thread(thread_posts, max_depth, missing_parent)
            yield from sessions
            ids = {post.id for post in thread_posts}
            for post, outcome in outcomes:
                counts = ledger.kept_counts(stage) if outcome == "out" else ledger.dropped_counts(stage, outcome)
                if post.parent_id and post.parent_id not in ids and missing_parent == "root":
                    counts[ledger.key(stage, "count", "missing-parent")] = 1
                yield ledger.counted(counts)
                if outcome in ("out", "merged-into-session"):
                    continue
                if outcome != "merged-into-session":
                    yield beam.pvalue.TaggedOutput(ledger.REJECTS, ledger.reject_row(post, stage, outcome))

        built = ((by_root.ok, deep_marks, by_thread_id) | "AllThreads" >> beam.Flatten()
                 | "GroupThreads" >> beam.GroupByKey()
                 | "BuildThreads" >> beam.FlatMap(build).with_output_types(Any)
                 .with_outputs(ledger.COUNTS, ledger.REJECTS, main="kept"))
        bad = (checked.bad, unique.bad, by_root.unresolved) | "AllBad" >> beam.Flatten()
        return _stage_output(built, bad, stage)
