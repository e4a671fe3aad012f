"""Per-session cleaning rules for dialogues, after LCCC (Wang et al. 2020, "A Large-Scale Chinese Short-Text
Conversation Dataset", NLPCC): first erase what can be erased, then judge every utterance; an utterance that
fails a judgement is noise that cannot be erased, so the session is split at it and only fragments with at
least `min_turns` turns are kept.

LCCC deletes platform tags ("Reply to @***", "[dog]") and URLs, shortens repeated phrases, and drops too short
or too long responses. Thresholds here follow issue 4 of this project (utterances of 2-1000 characters, repeats
cut to 3 copies, top-3 words over 75%); LCCC's own paper keeps one copy of phrases repeated more than 6 times.

Erasing, in this order (each step counted as `utt-edited:<rule>` when it changes an utterance):

- ``url``: http(s)/ftp URLs, ``www.`` hosts and Weibo's ``t.cn`` short links are removed.
- ``repost-chain``: a Weibo repost chain ``//@user: quoted text ...`` is removed up to the end of the utterance
  (it quotes other people's posts, not this turn).
- ``reply-prefix``: a leading ``回复@user:`` (Weibo comment reply) is removed.
- ``hashtag``: Weibo topics ``#话题#`` (1-40 characters, not starting or ending with a space, so "C# and F#"
  stays) are removed.
- ``emoticon``: Weibo emoticon codes ``[哈哈]`` (1-6 Chinese characters, or ``[doge]``) are removed.
- ``platform-text``: Weibo's default texts ``转发微博`` / ``轉發微博``, the link label ``网页链接``, repost marks
  (``【转】``), share and client marks (``（分享自 @...）``, ``发自我的iPhone``, ``来自...客户端``, "Sent from my
  iPhone") are removed.
- ``emoji``: emoji and pictographs (with their variation selectors, joiners and skin tones) are removed; LCCC
  removes emoticons and special characters.
- ``pii``: personal data goes through `cleaners.pii.scrub_with_counts`, the same step as web text: phones, QQ
  numbers, emails, ids, cards, IPs become typed placeholders (``<PHONE>``, ``<QQ>``, ...). Placeholders, not
  deletion, so the reply keeps its shape ("call me at <PHONE>"); counts go to ``count|pii:<type>``.
- ``name``: ``@user`` mentions and the speakers' own names become ``<NAME1>``, ``<NAME2>``, ... in order of
  first appearance, the same name always the same placeholder within a session. A mention ends at a space or
  punctuation (Weibo's convention). Speaker labels that are roles (``human``, ``gpt``, ``user``, ...) stay.
- ``repeat``: a substring repeated more than `max_repeats` times in a row is cut to `max_repeats` copies, word
  by word for space-separated text ("ha ha ha ha" -> "ha ha ha") and character by character otherwise
  ("哈哈哈哈哈" -> "哈哈哈"); runs of digits or of whitespace are left alone (numbers, code indentation).

Judging (``utt-dropped:<rule>``): ``empty`` (nothing left), ``too-short`` / ``too-long`` (placeholders count as one
character; too long means over `max_chars` characters *and* over `max_chars` words, a Latin word or a Chinese
character being one: LCCC's limit was set on Chinese, where a character is about a word, and an English answer of
1,000 characters is only some 170 words), ``top-words`` (top-3 words cover more than 75% of the words; LCCC used a
word segmenter, jieba is not available here, so a Chinese character is a word and other text splits into
letter/digit runs; the rule needs at least `top_words_min_words` words so "好的好的" survives), ``no-chinese`` (a
Chinese session needs a Chinese character in every utterance; a session is Chinese when `lang` starts with "zh", or
when `lang` is unknown and most of its letters are Chinese characters; `fits_chinese_session`: digits, times,
prices, units, codes, Latin names and placeholders fit a Chinese session, other-language chatter, other scripts and
bare punctuation do not), ``wordlist:<list>`` (more than `max_wordlist_hits`, default 0, hits of the web-text term
lists: ads, gambling, porn; `cleaners/filters/wordlist.py`), ``copies-context`` (a reply equal to the turn before
it, normalized: LCCC and EVA drop context-copying responses).

Sessions longer than `max_turns` (30, as EVA's WDC-Dialogue keeps them; Zhou et al. 2021, "EVA: An Open-Domain
Chinese Dialogue System with Large-Scale Generative Pre-Training") are cut into the fewest windows of at most that
many turns, of near-equal size (counted as `windows`). Every piece of a longer session records `fragment_of` (the
input session's id) and `turn_span` in its meta, and which of its turns the rules changed (`edited_turns`, for the
quality score of `cleaners/dialogue/quality.py`).
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any, Callable, ClassVar

from cleaners.dialogue.records import Session, session_id
from cleaners.dialogue.sessions import fragment_meta, normalize_turn, runs_between
from cleaners.filters.wordlist import WordList
from cleaners.han import HAN_RANGES, HAN_RE
from cleaners.pii import scrub_with_counts
from cleaners.step import Counted, Step

_HAN = HAN_RANGES
_HAN_RE = HAN_RE
_PLACEHOLDER_RE = re.compile(r"<[A-Z_]+[0-9]*>")
_WORD_RE = re.compile(rf"<[A-Z_]+[0-9]*>|[{_HAN}]|[^\W{_HAN}]+")
_LATIN_RE = re.compile(rf"[^\W\d_{_HAN}]")
_SPACE_RUN_RE = re.compile(r"[ \t\u3000]{2,}")

_URL_RE = re.compile(r"(?:(?:https?|ftp)://|www\.|(?<![A-Za-z0-9.])t\.cn/)[^\s<>\"'，。！？、；：（）【】「」《》]+",
                     re.IGNORECASE)
_REPOST_CHAIN_RE = re.compile(r"[ \t]*//[ \t]*@.*", re.DOTALL)
_REPLY_PREFIX_RE = re.compile(r"^\s*回复\s*@[^\s:：]{1,30}\s*[:：]\s*")
_HASHTAG_RE = re.compile(r"#(?![\s#])[^#\n]{0,38}[^\s#]#|#[^\s#]#")
_EMOTICON_RE = re.compile(rf"\[(?:[{_HAN}]{{1,6}}|doge)\]", re.IGNORECASE)
_PLATFORM_TEXT_RE = re.compile(
    r"转发微博|轉發微博|网页链接|【转】|【转载】|\[转\]"
    r"|[（(]?\s*分享自\s*@?[^\s）)，。]{0,30}\s*[）)]?"
    r"|发自我的\s*(?:iPhone|iPad|Android|手机)\S{0,12}|来自\s*\S{1,20}客户端"
    r"|Sent from my (?:iPhone|iPad|Android|phone)", re.IGNORECASE)
#: emoji and pictographs (Unicode's emoji blocks, dingbats and miscellaneous symbols) with their variation
#: selector, zero-width joiner and skin-tone modifiers; LCCC removes emoticons and special characters
_EMOJI_RE = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u200D\u20E3]+")
#: letters of scripts that are neither Chinese nor Latin: kana, hangul, Cyrillic, Greek, Arabic, Hebrew, Thai
_OTHER_SCRIPT_RE = re.compile("[\u3040-\u30FF\u31F0-\u31FF\uAC00-\uD7AF\u1100-\u11FF\u0370-\u03FF"
                              "\u0400-\u04FF\u0590-\u05FF\u0600-\u06FF\u0E00-\u0E7F]")
_LATIN_WORD_RE = re.compile("[A-Za-z\u00C0-\u024F]+")
_ALNUM_RE = re.compile("[0-9A-Za-z\u00C0-\u024F]")
#: unit and time abbreviations that stand next to numbers in Chinese text ("5km", "9:00 am")
UNITS = frozenset({"am", "pm", "km", "kg", "cm", "mm", "ml", "mg", "kw", "kwh", "mb", "gb", "kb", "tb", "hz",
                   "mhz", "ghz", "min", "sec", "hr", "hrs", "ft", "lb", "lbs", "oz", "mph", "kmh", "rmb", "usd"})
_MENTION_RE = re.compile(rf"(?<![A-Za-z0-9_.%+-])@([{_HAN}A-Za-z0-9_-]{{1,30}})")

#: speaker labels that name a role, not a person: they stay as they are.
ROLE_SPEAKERS = frozenset({"human", "gpt", "user", "assistant", "system", "bot", "chatgpt", "model", "ai",
                           "a", "b", "q", "user1", "user2", "speaker1", "speaker2"})


def erase_urls(text: str) -> str:
    return _URL_RE.sub("", text)


def erase_repost_chain(text: str) -> str:
    return _REPOST_CHAIN_RE.sub("", text)


def erase_reply_prefix(text: str) -> str:
    return _REPLY_PREFIX_RE.sub("", text)


def erase_hashtags(text: str) -> str:
    return _HASHTAG_RE.sub("", text)


def erase_emoticons(text: str) -> str:
    return _EMOTICON_RE.sub("", text)


def erase_platform_text(text: str) -> str:
    return _PLATFORM_TEXT_RE.sub("", text)


def erase_emoji(text: str) -> str:
    return _EMOJI_RE.sub("", text)


class NamePlaceholders:
    """Names to ``<NAME1>``, ``<NAME2>``, ... in order of first appearance, one map per session."""

    def __init__(self) -> None:
        self.by_name: dict[str, str] = {}

    def placeholder(self, name: str) -> str:
        if name not in self.by_name:
            self.by_name[name] = f"<NAME{len(self.by_name) + 1}>"
        return self.by_name[name]

    def replace_mentions(self, text: str) -> str:
        return _MENTION_RE.sub(lambda m: self.placeholder(m.group(1)), text)

    def replace_names(self, text: str, names: list[str]) -> str:
        """Exact occurrences of known names (longest first, so "张三丰" is not cut to "<NAME1>丰")."""
        for name in sorted(names, key=lambda n: (-len(n), n)):
            if name in text:
                text = text.replace(name, self.placeholder(name))
        return text


def is_role(speaker: str) -> bool:
    return speaker.strip().lower() in ROLE_SPEAKERS


def _word_repeat_re(max_repeats: int, max_unit_words: int) -> re.Pattern[str]:
    return re.compile(rf"(?<!\S)(\S+(?:[ \t]+\S+){{0,{max_unit_words - 1}}}?)(?:[ \t]+\1(?!\S)){{{max_repeats},}}")


def _char_repeat_re(max_repeats: int, max_unit_chars: int) -> re.Pattern[str]:
    return re.compile(rf"(.{{1,{max_unit_chars}}}?)\1{{{max_repeats},}}", re.DOTALL)


def cut_repeats(text: str, word_re: re.Pattern[str], char_re: re.Pattern[str], max_repeats: int) -> str:
    """Cut runs of more than `max_repeats` copies of a unit to `max_repeats` copies, words first, then
    characters, until nothing changes (cutting one run can expose a shorter one inside)."""
    def words(m: re.Match[str]) -> str:
        return " ".join([m.group(1)] * max_repeats)

    def chars(m: re.Match[str]) -> str:
        unit = m.group(1)
        if unit.isdigit() or unit.isspace():
            return m.group()
        return unit * max_repeats

    for _ in range(8):
        cut = char_re.sub(chars, word_re.sub(words, text))
        if cut == text:
            break
        text = cut
    return text


def visible_length(text: str) -> int:
    """Characters, with each placeholder counted as one."""
    return len(_PLACEHOLDER_RE.sub("x", text))


def words_of(text: str) -> list[str]:
    """Approximate words (see module docstring): Chinese characters, letter/digit runs, placeholders."""
    return _WORD_RE.findall(text)


def top_words_share(words: list[str], top: int) -> float:
    if not words:
        return 0.0
    return sum(n for _, n in Counter(words).most_common(top)) / len(words)


def has_chinese(text: str) -> bool:
    return _HAN_RE.search(text) is not None


def fits_chinese_session(text: str) -> bool:
    """Whether an utterance belongs in a Chinese session: it has a Chinese character, or it is made of digits,
    times, prices, units, codes, names and punctuation ("9:00-18:30。", "010-<PHONE>", "FRF80,000,000", "Sandee
    Chan。"). Not: letters of another script (kana, hangul, Cyrillic, ...), two or more lowercase Latin words that
    are not units ("thank you", "lol so funny": other-language chatter), or no letter, digit or placeholder at
    all (punctuation and symbols only: junk)."""
    if has_chinese(text):
        return True
    bare = _PLACEHOLDER_RE.sub(" ", text)
    if _OTHER_SCRIPT_RE.search(bare):
        return False
    if not _ALNUM_RE.search(bare) and bare == text:       # no letter, digit or placeholder: junk
        return False
    chatter = [w for w in _LATIN_WORD_RE.findall(bare) if len(w) >= 2 and w.islower() and w not in UNITS]
    return len(chatter) < 2


def mostly_chinese(turns: list[str]) -> bool:
    """More Chinese characters than other letters over all turns (placeholders ignored)."""
    text = _PLACEHOLDER_RE.sub("", "".join(turns))
    han = len(_HAN_RE.findall(text))
    return han > 0 and han >= len(_LATIN_RE.findall(text))


class SessionCleaner:
    """The dialogue recipe's `rules:` section: LCCC-style cleaning of one `Session` into 0..n cleaned sessions (see
    the module docstring) as four steps, each its own stage (`steps()`): `dialogue_erase`, `dialogue_names`,
    `dialogue_repeats` (counts `utt-edited:<rule>`, `pii:<type>`) and `dialogue_judge` (counts
    `utt-dropped:<rule>`; returns the fragments, a list when the session splits, or the reason none is left)."""

    def __init__(self, *, min_chars: int = 2, max_chars: int = 1000,
                 max_repeats: int = 3, max_repeat_unit_chars: int = 32, max_repeat_unit_words: int = 8,
                 top_words: int = 3, top_words_max_share: float = 0.75, top_words_min_words: int = 10,
                 min_turns: int = 2, max_turns: int = 30, scrub_pii: bool = True,
                 wordlists: list[str] | None = None, max_wordlist_hits: int = 0) -> None:
        if min_turns < 1 or max_repeats < 1 or min_chars > max_chars:
            raise ValueError("need min_turns >= 1, max_repeats >= 1 and min_chars <= max_chars")
        if max_turns < 2 * min_turns or max_wordlist_hits < 0:
            raise ValueError("need max_turns >= 2 * min_turns and max_wordlist_hits >= 0")
        self.max_turns = max_turns
        self.max_wordlist_hits = max_wordlist_hits
        #: the web-text term lists (cleaners/filters/wordlist.py); [] turns the rule off
        self.wordlists = None if wordlists == [] else WordList(lists=wordlists)
        self.min_chars, self.max_chars = min_chars, max_chars
        self.max_repeats = max_repeats
        self.max_repeat_unit_chars, self.max_repeat_unit_words = max_repeat_unit_chars, max_repeat_unit_words
        self.top_words, self.top_words_max_share = top_words, top_words_max_share
        self.top_words_min_words = top_words_min_words
        self.min_turns = min_turns
        self.scrub_pii = scrub_pii
        self._word_re: re.Pattern[str] | None = None
        self._char_re: re.Pattern[str] | None = None

    def setup(self) -> None:
        self._word_re = _word_repeat_re(self.max_repeats, self.max_repeat_unit_words)
        self._char_re = _char_repeat_re(self.max_repeats, self.max_repeat_unit_chars)
        if self.wordlists is not None:
            self.wordlists.setup()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_word_re": None, "_char_re": None}

    def steps(self) -> list[Step]:
        """The four rule steps, in order, sharing these settings."""
        return [EraseStep(self), NamesStep(self), RepeatsStep(self), JudgeStep(self)]

    def ready(self) -> None:
        if self._word_re is None:
            self.setup()

    def judge(self, text: str, chinese: bool) -> str | None:
        """The first judging rule an erased utterance fails, or None to keep it."""
        if not text:
            return "empty"
        length = visible_length(text)
        if length < self.min_chars:
            return "too-short"
        words = words_of(text)
        if length > self.max_chars and len(words) > self.max_chars:
            return "too-long"
        if len(words) >= self.top_words_min_words and \
                top_words_share(words, self.top_words) > self.top_words_max_share:
            return "top-words"
        if chinese and not fits_chinese_session(text):
            return "no-chinese"
        if self.wordlists is not None:
            hits = self.wordlists.count_hits(text)
            worst = max(hits, key=lambda name: (hits[name], name), default=None)
            if worst is not None and hits[worst] > self.max_wordlist_hits:
                return f"wordlist:{worst}"
        return None

    # -- helpers ----------------------------------------------------------------------------------------------

    def _edited(self, rule: str, before: str, after: str, counts: Counter[str]) -> str:
        if after != before:
            counts[f"utt-edited:{rule}"] += 1
        return after

    def _erase(self, text: str, counts: Counter[str]) -> str:
        steps: list[tuple[str, Callable[[str], str]]] = [
            ("url", erase_urls), ("repost-chain", erase_repost_chain), ("reply-prefix", erase_reply_prefix),
            ("hashtag", erase_hashtags), ("emoticon", erase_emoticons), ("platform-text", erase_platform_text),
            ("emoji", erase_emoji),
        ]
        original = text
        for rule, erase in steps:
            text = self._edited(rule, text, erase(text), counts)
        if self.scrub_pii:
            scrubbed, found = scrub_with_counts(text)
            text = self._edited("pii", text, scrubbed, counts)
            for kind, n in found.items():
                counts[f"pii:{kind}"] += n
        if text != original:
            text = _SPACE_RUN_RE.sub(" ", text)
        return text.strip()

    def _replace_names(self, turns: list[str], speakers: list[str] | None, names: NamePlaceholders,
                       counts: Counter[str]) -> tuple[list[str], list[str] | None]:
        person_names = sorted({s for s in speakers or [] if s.strip() and not is_role(s)})
        new_turns, new_speakers = [], None if speakers is None else []
        for i, turn in enumerate(turns):
            if speakers is not None:
                speaker = speakers[i]
                new_speakers.append(names.placeholder(speaker) if speaker in person_names else speaker)
            replaced = names.replace_mentions(turn)
            replaced = names.replace_names(replaced, [n for n in person_names if len(n) >= 2])
            new_turns.append(self._edited("name", turn, replaced, counts))
        return new_turns, new_speakers

    def _cut_repeats(self, text: str, counts: Counter[str]) -> str:
        assert self._word_re is not None and self._char_re is not None
        return self._edited("repeat", text, cut_repeats(text, self._word_re, self._char_re, self.max_repeats),
                            counts)

    def windows(self, run: list[int]) -> list[list[int]]:
        """A run longer than `max_turns` cut into the fewest windows of at most `max_turns` turns, of near-equal
        size (EVA / WDC-Dialogue keeps sessions of at most 30 turns; Zhou et al. 2021)."""
        if len(run) <= self.max_turns:
            return [run]
        parts = -(-len(run) // self.max_turns)
        bounds = [round(i * len(run) / parts) for i in range(parts + 1)]
        return [run[a:b] for a, b in zip(bounds, bounds[1:])]

    def _fragments(self, session: Session, kept: list[list[int]], cleaned: list[str],
                   speakers: list[str] | None, n_turns: int) -> list[Session]:
        whole = len(kept) == 1 and len(kept[0]) == n_turns
        fragments = []
        for number, run in enumerate(kept, 1):
            turns = [cleaned[i] for i in run]
            start, stop = run[0], run[-1] + 1
            unchanged = whole and not session.edited
            fragments.append(Session(
                turns=turns, id=session.id if unchanged else session_id(turns), source=session.source,
                key=session.key if whole else f"{session.key}/fragment-{number}", lang=session.lang,
                speakers=None if speakers is None else [speakers[i] for i in run],
                meta=dict(session.meta) if whole else fragment_meta(session, start, stop),
                edited_turns=session.edited_within(start, stop)))
        return fragments


class _RuleStep(Step):
    """One phase of the session rules, configured by the shared `SessionCleaner`. Phases before the judge keep the
    session's id and key and mark it `edited` when a turn changed, so the judge can tell an untouched session (it
    keeps its id) from an edited one (the id of its new turns) and name fragments after the input session."""

    kind: ClassVar[str] = "dialogue"

    def __init__(self, rules: SessionCleaner):
        self.rules = rules

    def setup(self) -> None:
        self.rules.ready()

    def _with(self, session: Session, turns: list[str], counts: Counter[str], **changes: Any) -> Counted:
        edited = set(session.edited_turns) | {i for i, (old, new) in enumerate(zip(session.turns, turns)) if old != new}
        return Counted(dataclasses.replace(session, turns=turns, edited_turns=tuple(sorted(edited)), **changes),
                       dict(counts))


class EraseStep(_RuleStep):
    """`dialogue_erase`: URLs, repost chains, reply prefixes, hashtags, emoticons, platform texts and personal data
    out of every utterance; `bad-input` drops a session whose turns are not strings; speakers that do not match
    the turns are dropped and counted (`speakers-mismatch`)."""

    name = "dialogue_erase"

    def apply(self, session: Session) -> Counted:
        self.rules.ready()
        turns, speakers = session.turns, session.speakers
        if not isinstance(turns, (list, tuple)) or not all(isinstance(t, str) for t in turns):
            return Counted("bad-input")
        counts: Counter[str] = Counter()
        if speakers is not None and (not isinstance(speakers, (list, tuple)) or len(speakers) != len(turns)
                                     or not all(isinstance(s, str) for s in speakers)):
            counts["speakers-mismatch"] += 1
            speakers = None
        cleaned = [self.rules._erase(turn, counts) for turn in turns]
        return self._with(session, cleaned, counts, speakers=speakers)


class NamesStep(_RuleStep):
    """`dialogue_names`: @mentions and the speakers' own names -> `<NAME1>`, `<NAME2>`, ... per session."""

    name = "dialogue_names"

    def apply(self, session: Session) -> Counted:
        counts: Counter[str] = Counter()
        turns, speakers = self.rules._replace_names(list(session.turns), session.speakers, NamePlaceholders(), counts)
        return self._with(session, turns, counts, speakers=speakers)


class RepeatsStep(_RuleStep):
    """`dialogue_repeats`: runs of a repeated word or phrase cut to `max_repeats` copies."""

    name = "dialogue_repeats"

    def apply(self, session: Session) -> Counted:
        self.rules.ready()
        counts: Counter[str] = Counter()
        return self._with(session, [self.rules._cut_repeats(turn, counts) for turn in session.turns], counts)


class JudgeStep(_RuleStep):
    """`dialogue_judge`: every utterance judged (`SessionCleaner.judge`); the session splits at the ones that fail
    and keeps the fragments of at least `min_turns` turns, or is dropped with the commonest failure."""

    name = "dialogue_judge"

    def apply(self, session: Session) -> Counted:
        rules, cleaned = self.rules, list(session.turns)
        counts: Counter[str] = Counter()
        chinese = session.lang.startswith("zh") or (not session.lang and mostly_chinese(cleaned))
        failures = [rules.judge(turn, chinese) for turn in cleaned]
        for i in range(1, len(cleaned)):        # a reply that repeats the turn it answers adds nothing
            if failures[i] is None and normalize_turn(cleaned[i]) == normalize_turn(cleaned[i - 1]):
                failures[i] = "copies-context"
        for reason in failures:
            if reason:
                counts[f"utt-dropped:{reason}"] += 1
        kept = []
        for run in _good_runs(failures):
            if len(run) < rules.min_turns:
                counts["utt-dropped:too-few-turns"] += len(run)
                continue
            windows = rules.windows(run)
            if len(windows) > 1:
                counts["windows"] += len(windows) - 1
            kept += windows
        if not kept:
            return Counted(_main_reason(failures), dict(counts))
        return Counted(rules._fragments(session, kept, cleaned, session.speakers, len(cleaned)), dict(counts))


def _good_runs(failures: list[str | None]) -> list[list[int]]:
    """Indices of consecutive utterances that passed, split at every failure."""
    return [list(run) for run in runs_between(len(failures), {i for i, reason in enumerate(failures) if reason})]


def _main_reason(failures: list[str | None]) -> str:
    """Why a session left no fragment: the commonest utterance failure when no utterance passed
    (ties: first seen), else too few consecutive good turns."""
    reasons = [r for r in failures if r]
    if not reasons or len(reasons) < len(failures):
        return "too-few-turns"
    return Counter(reasons).most_common(1)[0][0]
