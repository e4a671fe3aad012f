"""Personal-data scrubbing: WuDaoCorpora removed personal information (Yuan et al. 2021, "WuDaoCorpora:
A super large-scale Chinese corpora for pre-training language models", section 3.2); we replace it with
typed placeholders so the sentence shape survives.

Types, placeholders and the checks that keep ordinary numbers (dates, prices, years, versions) intact:

- ``<EMAIL>``: local@domain.tld (RFC 5321 shapes; the local part starts with a letter or digit, domain
  labels have at most 63 characters, the TLD 2-24 letters).
- ``<WECHAT>``: an id (6-20 characters, starts with a letter, then letters/digits/_/-; WeChat's own id
  rule) or a mobile number right after 微信/微信号/vx/wx/WeChat/weixin. An all-letter id needs a colon or
  号/ID after the context word, so "WeChat official" and "微信Android版" stay.
- ``<QQ>``: 5-11 digits (QQ numbers start at 10000) only right after QQ/qq号/QQ群/扣扣/Q号.
- ``<IP>``: IPv4 with four valid octets, IPv6 full or compressed (validated by `ipaddress`; an IPv6
  candidate needs a decimal digit and two non-empty groups, so C++ ``a::b`` stays). Only public
  (globally routable unicast) addresses are personal; 127.0.0.1, 192.168.x.x, fe80:: etc. stay.
- ``<ID_CARD>``: mainland resident id, 18 characters: 6-digit region (first digit 1-8), birth date that
  exists and is not in the future, 3-digit sequence, check character by the GB 11643-1999 ISO 7064
  MOD 11-2 checksum.
- ``<BANK_CARD>``: 16-19 digits, contiguous or grouped in fours by one kind of separator, passing the
  Luhn check, with a payment-card industry prefix (ISO/IEC 7812-1: 3-6, 9, or 2221-2720) and not one
  repeated digit.
- ``<PHONE>``: mainland mobile 1[3-9]x + 8 digits (MIIT numbering plan), optional +86/0086 and
  separators 3-4-4; landline with area code 010/02x/0[3-9]xx (written with a separator or brackets)
  and a 7-8 digit local number (not starting with 0), optional extension.

Numbers must stand alone: an ASCII letter, digit or ``_`` right before or after (or a decimal point
with digits) blocks a match, while Chinese characters do not, so ``电话13812345678联系`` matches and
digits inside longer runs or words do not. Passes run in a fixed order (email, WeChat, QQ, IPv6, IPv4,
numbers) and repeat until nothing changes; placeholders never match, so scrubbing is idempotent.
"""
from __future__ import annotations

import datetime
import ipaddress
import re
from collections import Counter
from typing import Callable

from cleaners.document import Document
from cleaners.step import Counted, Step, register

PLACEHOLDERS = {
    "id_card": "<ID_CARD>",
    "phone": "<PHONE>",
    "email": "<EMAIL>",
    "qq": "<QQ>",
    "wechat": "<WECHAT>",
    "ip": "<IP>",
    "bank_card": "<BANK_CARD>",
}

# Speed: CPython's regex engine skips ahead in C only when a pattern starts with a character class, so
# the patterns that run on every document start with one ("lead") and put their boundary lookbehinds
# after it (width + 1); `(?<=X)` right after the lead says which lead a branch needs. Rarer patterns are
# gated by a substring test instead.
_SP = "[ \t\u00a0\u3000]*"
_NUM_END = r"(?![0-9A-Za-z_@])(?!(?<=[0-9])\.[0-9])"  # no letter, digit, "@" or decimal part after
_MOBILE_TAIL = r"[3-9][0-9](?P<{sep}>[ -]?)[0-9]{{4}}(?P={sep})[0-9]{{4}}"  # after the leading "1"
_CN_PREFIX = r"(?:(?:\+|00)86[ -]?|[(（]\+?86[)）] ?)"
_AREA_TAIL = r"(?:10|2[0-9]|[3-9][0-9]{2})"           # area code after its leading 0
_LOCAL = r"[1-9][0-9]{2,3}-?[0-9]{4}(?:(?:-|转|ext\.? ?)[0-9]{1,5})?"

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)

_WECHAT_RE = re.compile(
    r"(?P<ctx>[微VvWw](?<![A-Za-z][VvWw])"
    r"(?:(?<=微)信号?|(?<=[Vv])[Xx](?![A-Za-z])|(?<=[Ww])(?:[Xx]|(?i:echat|eixin))(?![A-Za-z])))"
    rf"(?P<gap>{_SP}(?P<label>号|账号|ID|id|Id)?{_SP}(?:是|为)?{_SP}(?P<colon>[:：])?{_SP})"
    rf"(?P<value>{_CN_PREFIX}?1{_MOBILE_TAIL.format(sep='wsep')}{_NUM_END}"
    r"|[A-Za-z][A-Za-z0-9_-]{4,18}[A-Za-z0-9_](?![A-Za-z0-9_@-]))"   # 6-20 chars, no trailing "-"
)

_QQ_RE = re.compile(
    r"(?P<ctx>[Qq扣](?<![A-Za-z][Qq])"
    r"(?:(?<=[Qq])[Qq](?:号码?|群号?)?(?![A-Za-z])|(?<=[Qq])号码?|(?<=扣)扣(?:号码?|群号?)?))"
    rf"(?P<gap>{_SP}(?:是|为)?{_SP}[:：]?{_SP})"
    rf"(?P<value>[1-9][0-9]{{4,10}}){_NUM_END}"
)

_IPV6_GATE = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_RE = re.compile(
    r"(?<![0-9A-Za-z_:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)"
    r"[0-9A-Fa-f:]{2,39}(?:(?<=:)[0-9]{1,3}(?:\.[0-9]{1,3}){3})?"
    r"(?![0-9A-Za-z_:])(?!\.[0-9])"
)

_IPV4_RE = re.compile(
    r"[0-9](?<![0-9A-Za-z_.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![0-9A-Za-z_])(?!\.[0-9])"
)

_NUMBER_RE = re.compile(
    # lead: "+", a bracket, or a digit that is not inside a word, a longer number or a decimal part
    r"[0-9+(（](?<![0-9A-Za-z_][0-9])(?<![0-9]\.[0-9])"
    r"(?:"
    r"(?P<id_card>(?<=[1-8])[0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"[0-9]{3}[0-9Xx])"
    r"|(?P<bank_card>(?<=[0-9])[0-9]{3}(?P<bsep>[ -]?)[0-9]{4}(?P=bsep)[0-9]{4}(?P=bsep)[0-9]{4}"
    r"(?:(?P=bsep)[0-9]{1,3})?)"
    r"|(?P<mobile>(?:(?<=1)|(?:(?<=\+)86[ -]?|(?<=0)086[ -]?|(?<=[(（])\+?86[)）] ?)1)"
    + _MOBILE_TAIL.format(sep="psep") + ")"
    r"|(?P<landline>(?:(?<=0)" + _AREA_TAIL + r"[ -]|(?<=[(（])0" + _AREA_TAIL + r"[)）] ?"
    r"|(?:(?<=\+)86|(?<=0)086)[ -]?(?:[(（]0[)）] ?|[(（]?0?)" + _AREA_TAIL + r"[)）]?[ -]?)" + _LOCAL + ")"
    r")" + _NUM_END
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"
_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def id_card_valid(number: str) -> bool:
    """GB 11643-1999: 17 digits, then the check character; the birth date (digits 7-14) must exist
    and not lie in the future."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not datetime.date(1900, 1, 1) <= born <= datetime.date.today():
        return False
    total = sum(int(d) * w for d, w in zip(number, _ID_WEIGHTS))
    return _ID_CHECK_CHARS[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812-1 Luhn check on a string of ASCII digits."""
    if not digits.isdigit() or not digits.isascii():
        return False
    total = sum(map(int, digits[-1::-2])) + sum(_LUHN_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def _card_prefix_plausible(digits: str) -> bool:
    """ISO/IEC 7812-1 major industry identifiers of payment cards: 3 (Amex, JCB, Diners), 4-5 (Visa,
    Mastercard), 6 (UnionPay 62, Discover), 9 (national use: older Chinese domestic cards such as 9558),
    and Mastercard's 2-series 2221-2720. This keeps lists of years ("2009 2008 2007 2006") that pass the
    Luhn check by chance (1 in 10) from being taken as cards."""
    lead = digits[0]
    return lead in "34569" or (lead == "2" and 2221 <= int(digits[:4]) <= 2720)


def bank_card_valid(digits: str) -> bool:
    """16-19 ASCII digits with a payment-card prefix, not one repeated digit, passing the Luhn check."""
    return (16 <= len(digits) <= 19 and digits.isascii() and digits.isdigit()
            and _card_prefix_plausible(digits) and digits != digits[0] * len(digits)
            and luhn_valid(digits))


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Only globally routable unicast addresses can point at a subscriber; private, loopback,
    link-local, documentation and multicast ranges (IANA special-purpose registries, RFC 6890) identify
    nobody and are common in technical text (127.0.0.1, 192.168.1.1), so they stay."""
    return address.is_global and not address.is_multicast


def _ipv6_valid(candidate: str) -> bool:
    if not any(c.isdigit() for c in candidate) or sum(1 for g in candidate.split(":") if g) < 2:
        return False
    try:
        return _is_public(ipaddress.IPv6Address(candidate))
    except ValueError:
        return False


def _ipv4_valid(candidate: str) -> bool:
    try:
        return _is_public(ipaddress.IPv4Address(candidate))  # rejects octets > 255 and leading zeros
    except ValueError:
        return False


_Replacer = Callable[[re.Match[str]], str]


def _replace_email(counts: Counter[str]) -> _Replacer:
    def repl(m: re.Match[str]) -> str:
        counts["email"] += 1
        return PLACEHOLDERS["email"]
    return repl


def _replace_context_value(kind: str, counts: Counter[str]) -> _Replacer:
    """Keep the context word and the gap, replace the value (WeChat / QQ)."""
    def repl(m: re.Match[str]) -> str:
        value = m.group("value")
        if kind == "wechat" and value.isalpha() and not (
            m.group("colon") or m.group("label") or m.group("ctx").endswith("号")
        ):
            return m.group()  # "WeChat official", "微信Android版": a bare word is not an id
        counts[kind] += 1
        return m.group("ctx") + m.group("gap") + PLACEHOLDERS[kind]
    return repl


def _replace_validated(kind: str, valid: Callable[[str], bool], counts: Counter[str]) -> _Replacer:
    def repl(m: re.Match[str]) -> str:
        if not valid(m.group()):
            return m.group()
        counts[kind] += 1
        return PLACEHOLDERS[kind]
    return repl


def _replace_number(counts: Counter[str]) -> _Replacer:
    def repl(m: re.Match[str]) -> str:
        span = m.group()
        if m.group("id_card") is not None:
            if id_card_valid(span):
                counts["id_card"] += 1
                return PLACEHOLDERS["id_card"]
            if bank_card_valid(span):  # an 18-digit run may still be a card number
                counts["bank_card"] += 1
                return PLACEHOLDERS["bank_card"]
            return span
        if m.group("bank_card") is not None:
            if bank_card_valid(span.replace(" ", "").replace("-", "")):
                counts["bank_card"] += 1
                return PLACEHOLDERS["bank_card"]
            return span
        counts["phone"] += 1
        return PLACEHOLDERS["phone"]
    return repl


def _scrub_once(text: str, counts: Counter[str]) -> str:
    if "@" in text:
        text = _EMAIL_RE.sub(_replace_email(counts), text)
    text = _WECHAT_RE.sub(_replace_context_value("wechat", counts), text)
    text = _QQ_RE.sub(_replace_context_value("qq", counts), text)
    if ":" in text and _IPV6_GATE.search(text):
        text = _IPV6_RE.sub(_replace_validated("ip", _ipv6_valid, counts), text)
    if "." in text:
        text = _IPV4_RE.sub(_replace_validated("ip", _ipv4_valid, counts), text)
    return _NUMBER_RE.sub(_replace_number(counts), text)


def scrub_with_counts(text: str) -> tuple[str, dict[str, int]]:
    """`text` with personal data replaced by placeholders, and {type: count} for the types found.

    The passes repeat while they still replace something: a placeholder can free a neighbour that an
    earlier pass saw glued to other characters ("a@b.cn+86 138..."), and the result must be a fixed
    point (scrub(scrub(x)) == scrub(x)). Clean text takes one round; each extra round needs a replacement.
    """
    if not isinstance(text, str):
        raise TypeError(f"scrub expects str, got {type(text).__name__}")
    counts: Counter[str] = Counter()
    while text:
        found = sum(counts.values())
        text = _scrub_once(text, counts)
        if sum(counts.values()) == found:
            break
    return text, {kind: n for kind, n in counts.items() if n > 0}


def scrub(text: str) -> str:
    """`text` with personal data replaced by typed placeholders (see the module docstring)."""
    return scrub_with_counts(text)[0]


@register("pii")
class ScrubPersonalData(Step):
    """Replace personal data in `text` and `title` with placeholders; never drops. Counts each type found
    (`count|<type>` in stats.json)."""

    def __init__(self) -> None:
        pass

    def apply(self, doc: Document) -> Counted:
        doc.text, counts = scrub_with_counts(doc.text or "")
        doc.title, title_counts = scrub_with_counts(doc.title or "")
        total = Counter(counts)
        total.update(title_counts)
        return Counted(doc, dict(sorted(total.items())))
