"""Personal-data scrubbing (cleaners/pii.py): exact cases per type, near misses, mixed text, invariants."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaners.document import Document
from cleaners.pii import ScrubPersonalData, id_card_valid, luhn_valid, scrub, scrub_with_counts
from cleaners.recipe import build_steps
from cleaners.step import Counted


def with_check_char(first17: str) -> str:
    """GB 11643-1999 check character, written independently of the module: (12 - S mod 11) mod 11."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    code = (12 - sum(int(d) * w for d, w in zip(first17, weights)) % 11) % 11
    return first17 + ("X" if code == 10 else str(code))


VALID_ID = "11010519491231002X"                      # the worked example of GB 11643-1999
OTHER_ID = with_check_char("44030419900307123")      # Shenzhen, born 1990-03-07
VISA_TEST = "4111111111111111"                       # card networks' published test numbers
MASTERCARD_TEST = "5500000000000004"
UNIONPAY_19 = "6205500000000000004"


def test_independent_check_char_agrees_with_the_standard_example():
    assert with_check_char(VALID_ID[:17]) == VALID_ID


# --- every type, exact ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    # ID card
    (f"身份证号{VALID_ID}。", "身份证号<ID_CARD>。"),
    (f"id {OTHER_ID.lower()} end", "id <ID_CARD> end"),
    # mobile phones, separators and country prefixes
    ("电话13812345678联系", "电话<PHONE>联系"),
    ("call 138-1234-5678 or 138 1234 5678", "call <PHONE> or <PHONE>"),
    ("+86 13812345678，0086-138-1234-5678，(+86)13912345678", "<PHONE>，<PHONE>，<PHONE>"),
    # landlines
    ("座机010-12345678、(0755)1234567、0571-8888888-123。", "座机<PHONE>、<PHONE>、<PHONE>。"),
    ("（021）62345678 或 +86-(0)755-12345678", "<PHONE> 或 <PHONE>"),
    # email
    ("邮箱zhang.san+news@mail.example.com.cn，谢谢", "邮箱<EMAIL>，谢谢"),
    ("QQ邮箱12345678@qq.com", "QQ邮箱<EMAIL>"),
    # QQ only after a context word
    ("我的QQ：123456789，", "我的QQ：<QQ>，"),
    ("qq号 98765 QQ群:12345678 扣扣1234567 Q号: 55555", "qq号 <QQ> QQ群:<QQ> 扣扣<QQ> Q号: <QQ>"),
    # WeChat ids and phone numbers after a context word
    ("加微信：zhang_san88 详聊", "加微信：<WECHAT> 详聊"),
    ("微信号abcdefg", "微信号<WECHAT>"),
    ("vx: wxid_abc123，WeChat ID: zhangsan", "vx: <WECHAT>，WeChat ID: <WECHAT>"),
    ("微信13812345678同号", "微信<WECHAT>同号"),
    # IP addresses (public ones)
    ("来自 114.114.114.114 的访问", "来自 <IP> 的访问"),
    ("ip=8.8.8.8,", "ip=<IP>,"),
    ("v6 2400:3200::1 与 240e:3a1:4c:1:0:0:0:1 与 2001:4860:4860:0000:0000:0000:0000:8888。",
     "v6 <IP> 与 <IP> 与 <IP>。"),
    # bank cards, contiguous and grouped
    (f"卡号{VISA_TEST}。", "卡号<BANK_CARD>。"),
    ("卡号 5500 0000 0000 0004 和 6205-5000-0000-0000-004", "卡号 <BANK_CARD> 和 <BANK_CARD>"),
    (f"UnionPay {UNIONPAY_19}", "UnionPay <BANK_CARD>"),
])
def test_each_type_is_replaced(raw, expected):
    assert scrub(raw) == expected


# --- near misses: must survive ----------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "坏的身份证110105194912310021号",               # right shape, wrong check digit, not a card
    "生于未来" + with_check_char("11010520991231002"),   # valid checksum, birth date in the future
    "日期不存在" + with_check_char("11010519490230002"),  # 30 February
    "卡号4111111111111112",                          # fails Luhn
    "4111 1111-1111 1111",                           # mixed separators are not one grouping
    "20位12345678901234567890",                      # longer than any type
    "2009 2008 2007 2006 1999 1998 1997 1996",       # list of years (passes Luhn by chance for some)
    "0000000000000000",
    "号码12345678，订单 987654321",                 # QQ-like numbers without a context word
    "QQ 2019版，QQ音乐",
    "日期2021-06-01 10:30:45，价格￥1299.00，2021年，第13812期",
    "版本 1.2.3.4.5 和 v1.2.3.4 以及 3.13812345678 与 a13812345678 与 138123456789",
    "内网 192.168.1.1、127.0.0.1:8080、10.0.0.1、0.0.0.0、230.0.0.4、256.1.1.1、01.2.3.4",
    "::1 fe80::1 2001:db8::1 a::b std::vector dead::beef 12:30:45 00:1A:2B:3C:4D:5E",
    "WeChat official account; wxWidgets; 微信Android版; wx zhangsan",
    "user@localhost and @mention and a@b",
    "电话：12345678901",                             # 11 digits but not a mobile prefix
])
def test_near_misses_survive(text):
    assert scrub_with_counts(text) == (text, {})


# --- counts, mixed documents, idempotence ------------------------------------------------------------

MIXED = (
    f"联系人：张三，电话13812345678，备用 010-87654321。\n"
    f"邮箱 zs@example.com，QQ：10001，微信：zs_2024。\n"
    f"身份证 {VALID_ID}，卡号 {VISA_TEST}，坏卡 4111111111111112。\n"
    f"服务器 8.8.8.8 上线于 2021-06-01，内网 192.168.0.1。"
)


def test_mixed_document_exact_output_and_counts():
    text, counts = scrub_with_counts(MIXED)
    assert text == (
        "联系人：张三，电话<PHONE>，备用 <PHONE>。\n"
        "邮箱 <EMAIL>，QQ：<QQ>，微信：<WECHAT>。\n"
        "身份证 <ID_CARD>，卡号 <BANK_CARD>，坏卡 4111111111111112。\n"
        "服务器 <IP> 上线于 2021-06-01，内网 192.168.0.1。"
    )
    assert counts == {"phone": 2, "email": 1, "qq": 1, "wechat": 1, "id_card": 1, "bank_card": 1, "ip": 1}


def test_counts_are_exact_for_repeats_and_empty_for_clean_text():
    assert scrub_with_counts("a@x.com b@x.com c@x.com")[1] == {"email": 3}
    assert scrub_with_counts("今天天气很好。") == ("今天天气很好。", {})
    assert scrub_with_counts("") == ("", {})


def test_idempotent_on_the_mixed_document():
    once = scrub(MIXED)
    assert scrub(once) == once
    assert scrub_with_counts(once)[1] == {}


_fragments = st.sampled_from([
    "13812345678", "138-1234-5678", "+86 ", "010-", "12345678", "(0755)", "1234567", VALID_ID, VISA_TEST,
    "4111 1111 1111 1111", "a@b.cn", "@", "QQ", "：", "微信", "vx", " ", "abc_123", "8.8.8.8", ".", "2400:3200::1",
    ":", "0", "1", "9", "X", "电话", "，", "-", "年", "\n",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_fragments, max_size=12).map("".join))
def test_scrub_is_idempotent_and_counts_match_placeholders(text):
    out, counts = scrub_with_counts(text)
    assert scrub(out) == out
    for kind, placeholder in [("phone", "<PHONE>"), ("email", "<EMAIL>"), ("qq", "<QQ>"), ("wechat", "<WECHAT>"),
                              ("ip", "<IP>"), ("bank_card", "<BANK_CARD>"), ("id_card", "<ID_CARD>")]:
        assert out.count(placeholder) - text.count(placeholder) == counts.get(kind, 0)


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="expects str"):
        scrub(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expects str"):
        scrub_with_counts(b"13812345678")  # type: ignore[arg-type]


def test_validators_directly():
    assert id_card_valid(VALID_ID) and id_card_valid(OTHER_ID)
    assert not id_card_valid(VALID_ID[:-1] + "1")
    assert not id_card_valid("X" * 18) and not id_card_valid(VALID_ID[:17])
    assert luhn_valid(VISA_TEST) and luhn_valid(MASTERCARD_TEST) and luhn_valid(UNIONPAY_19)
    assert not luhn_valid("4111111111111112") and not luhn_valid("41111x") and not luhn_valid("٤١")


# --- the pii step -----------------------------------------------------------------------------------

def test_pii_step_scrubs_text_and_title_and_returns_counts():
    doc = Document(id="1", title="招聘 联系13812345678", text="邮箱 hr@example.com 或 13912345678")
    out = ScrubPersonalData().apply(doc)
    assert isinstance(out, Counted) and isinstance(out.result, Document)
    assert out.result.title == "招聘 联系<PHONE>"
    assert out.result.text == "邮箱 <EMAIL> 或 <PHONE>"
    assert out.counts == {"email": 1, "phone": 2}
    assert out.result.meta == {}        # counts come back in the outcome, never through the record


def test_pii_step_never_drops_and_counts_nothing_when_clean():
    step, = build_steps({"steps": [{"pii": {}}]})
    out = step.apply(Document(id="1", text="没有个人信息。"))
    assert out.counts == {} and out.result.meta == {} and out.result.text == "没有个人信息。"
    assert isinstance(step.apply(Document(id="2", text="")).result, Document)


def test_real_wudao_record_phone_is_scrubbed(corpus_samples):
    """A real WuDao-format record carries a contact number; the scrubbed corpus keeps the sentence."""
    path = corpus_samples / "zh_text/wudao_format/flagai_indexed_dataset_demo.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    hits = [(t, scrub_with_counts(t)) for t in texts]
    found = [(t, out, c) for t, (out, c) in hits if c]
    assert len(found) == 1
    original, out, counts = found[0]
    assert counts == {"phone": 1}
    assert "联系方式:<PHONE>(微信同号)" in out
    assert len(original) - len(out) == len("19855673070") - len("<PHONE>")


def test_real_technical_text_keeps_private_addresses(corpus_samples):
    """StackExchange posts quote 127.0.0.1 and 192.168.x.x: not personal, so nothing is replaced."""
    path = corpus_samples / "en_text/data-juicer_stack_exchange.jsonl"
    text = path.read_text(encoding="utf-8")
    assert "127.0.0.1" in text
    assert "ip" not in scrub_with_counts(text)[1]
