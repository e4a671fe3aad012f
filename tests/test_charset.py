"""decode_html: declared, mis-declared and undeclared GBK / GB18030 / Big5 / UTF-8 / Latin pages."""
from __future__ import annotations

import codecs

import pytest

from cleaners.charset import candidate_codecs, decode_html, meta_charset

SIMPLIFIED = (
    "北京时间今天上午，国家统计局发布了四月份国民经济运行数据。数据显示，工业生产稳定增长，"
    "服务业持续恢复，市场销售保持增长，就业形势总体稳定，居民消费价格温和上涨。"
    "国家统计局新闻发言人表示，当前外部环境更趋复杂严峻，国内经济持续回升向好的基础还不稳固，"
    "下一步要继续加大宏观调控力度，着力扩大国内需求，推动经济实现质的有效提升和量的合理增长。"
)
TRADITIONAL = (
    "臺北市政府今天宣布，將在明年完成市區公共自行車系統的全面更新，新增三百個租借站點，"
    "並延長夜間服務時間。市長表示，這項計畫將讓市民的通勤更加便利，也有助於減少交通壅塞與空氣污染。"
    "交通局指出，新系統將支援行動支付與悠遊卡，並提供即時車輛資訊，方便民眾查詢各站點的可借車輛數量。"
)
EXTENSION_B = "𠀀𪚥"  # CJK Extension B: in GB18030 (4-byte form), not in GBK


def page(body: str, head: str = "", title: str = "新闻") -> str:
    return f"<!DOCTYPE html><html><head>{head}<title>{title}</title></head><body><p>{body}</p></body></html>"


# --- declared in the HTTP header only -------------------------------------------------------

@pytest.mark.parametrize("label", ["gbk", "GB2312", "x-gbk", "gb_2312-80", '"gbk"'])
def test_gbk_from_header_decodes_as_gb18030(label):
    html = page(SIMPLIFIED)
    assert decode_html(html.encode("gbk"), label) == (html, "gb18030")


def test_gb18030_four_byte_characters_under_a_gbk_label():
    html = page(SIMPLIFIED + EXTENSION_B)
    data = html.encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("gbk")
    assert decode_html(data, "gbk") == (html, "gb18030")


def test_big5_from_header_decodes_as_hkscs():
    html = page(TRADITIONAL + "嘅", title="新聞")  # 嘅: a Cantonese character that only HKSCS has
    data = html.encode("big5hkscs")
    with pytest.raises(UnicodeDecodeError):
        data.decode("big5")
    assert decode_html(data, "big5") == (html, "big5hkscs")


def test_big5_label_falls_back_to_cp950_for_microsoft_extensions():
    html = page(TRADITIONAL + "價格：€100", title="新聞")  # euro sign: CP950 0xA3E1, not in Big5-HKSCS
    data = html.encode("cp950")
    with pytest.raises(UnicodeDecodeError):
        data.decode("big5hkscs")
    assert decode_html(data, "big5") == (html, "cp950")


# --- declared in <meta> only ----------------------------------------------------------------

@pytest.mark.parametrize("meta", [
    '<meta charset="gb2312">',
    "<meta charset=GBK>",
    '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">',
    "<META HTTP-EQUIV='content-type' CONTENT='text/html;charset=GBK'>",
])
def test_gbk_from_meta(meta):
    html = page(SIMPLIFIED, meta)
    assert decode_html(html.encode("gbk")) == (html, "gb18030")


def test_big5_from_meta():
    html = page(TRADITIONAL, '<meta http-equiv="Content-Type" content="text/html; charset=big5">', "新聞")
    assert decode_html(html.encode("big5")) == (html, "big5hkscs")


def test_meta_after_long_head_is_still_found():
    head = "<script>" + "var x = 1;\n" * 200 + "</script>" + '<meta charset="gbk">'
    html = page(SIMPLIFIED, head)
    assert len(head) > 1024
    assert decode_html(html.encode("gbk")) == (html, "gb18030")


def test_meta_charset_label_parsing():
    assert meta_charset(b'<html><meta content="text/html; charset=\'big5\'" http-equiv=x>') == "big5"
    assert meta_charset(b"<p>charset=gbk is not in a meta tag</p>") is None
    assert meta_charset(b" " * 5000 + b'<meta charset="gbk">') is None  # beyond the scanned prefix


# --- no declaration: strict UTF-8, then detection -------------------------------------------

def test_undeclared_utf8():
    html = page(SIMPLIFIED)
    assert decode_html(html.encode("utf-8")) == (html, "utf-8")


def test_undeclared_gbk_is_detected():
    html = page(SIMPLIFIED * 2)
    assert decode_html(html.encode("gbk")) == (html, "gb18030")


def test_undeclared_big5_is_detected():
    html = page(TRADITIONAL * 2, title="新聞")
    text, encoding = decode_html(html.encode("big5"))
    assert text == html
    assert encoding in ("big5hkscs", "cp950")


def test_detection_skips_a_long_ascii_head():
    html = page(SIMPLIFIED * 2, "<style>" + "p { margin: 0 }\n" * 3000 + "</style>")
    assert decode_html(html.encode("gbk")) == (html, "gb18030")


# --- wrong declarations ---------------------------------------------------------------------

def test_utf8_meta_on_gbk_bytes_falls_back():
    html = page(SIMPLIFIED, '<meta charset="utf-8">')
    assert decode_html(html.encode("gbk")) == (html, "gb18030")


def test_utf8_header_on_gbk_bytes_falls_back_to_meta():
    html = page(SIMPLIFIED, '<meta charset="gb2312">')
    assert decode_html(html.encode("gbk"), "utf-8") == (html, "gb18030")


def test_latin1_server_default_header_yields_to_meta():
    html = page(SIMPLIFIED[:20], '<meta charset="gbk">')  # short enough that cp1252 would not fail
    assert decode_html(html.encode("gbk"), "ISO-8859-1") == (html, "gb18030")


def test_latin1_header_yields_to_valid_utf8():
    html = page(SIMPLIFIED)
    assert decode_html(html.encode("utf-8"), "iso-8859-1") == (html, "utf-8")


def test_latin1_labels_decode_as_windows_1252():
    data = b"<p>\x93Caf\xe9 cr\xe8me\x94 \x80 5</p>"  # curly quotes and euro: cp1252-only bytes
    assert decode_html(data, "iso-8859-1") == ("<p>\u201cCafé crème\u201d € 5</p>", "cp1252")
    assert decode_html(b'<meta charset="us-ascii">' + data) == (
        '<meta charset="us-ascii"><p>\u201cCafé crème\u201d € 5</p>', "cp1252")


@pytest.mark.parametrize("label", ["x-unknown-charset", "base64", "rot13", "utf-7", ""])
def test_unknown_or_non_page_labels_fall_through_to_detection(label):
    html = page(SIMPLIFIED * 2)
    assert decode_html(html.encode("gbk"), label) == (html, "gb18030")


# --- BOMs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bom,codec,expected", [
    (codecs.BOM_UTF8, "utf-8", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),
])
def test_bom_wins_over_declarations(bom, codec, expected):
    html = page(SIMPLIFIED, '<meta charset="gbk">')
    assert decode_html(bom + html.encode(codec), "big5") == (html, expected)


# --- damaged and bad input ------------------------------------------------------------------

def test_record_truncated_mid_character_keeps_its_encoding():
    data = page(SIMPLIFIED).encode("gbk")[:-30]  # cut inside the text
    cut = data[:-1]  # drop the second byte of a two-byte character
    text, encoding = decode_html(cut, "gbk")
    assert encoding == "gb18030"
    assert text.endswith("\ufffd")
    assert text[:-1] == cut[:-1].decode("gbk")


def test_undecodable_bytes_do_not_raise():
    data = bytes(range(256)) * 8
    text, encoding = decode_html(data)
    assert isinstance(text, str) and text
    assert encoding.endswith("/replace") or data.decode(encoding) == text


def test_empty_and_ascii():
    assert decode_html(b"") == ("", "utf-8")
    assert decode_html(b"<p>plain</p>", "gbk") == ("<p>plain</p>", "gb18030")


def test_str_input_is_a_type_error():
    with pytest.raises(TypeError, match="bytes"):
        decode_html("<p>already text</p>")  # type: ignore[arg-type]


def test_candidate_codecs_mapping():
    assert candidate_codecs("GB2312") == ("gb18030",)
    assert candidate_codecs("Big5") == ("big5hkscs", "cp950")
    assert candidate_codecs("latin1") == ("cp1252",)
    assert candidate_codecs("shift_jis") == ("cp932",)
    assert candidate_codecs("koi8-r") == ("koi8-r",)
    assert candidate_codecs("utf-16", from_meta=True) == ("utf-8",)
    assert candidate_codecs("hex") == ()
    assert candidate_codecs(None) == ()
