"""Caption checks: exact outputs for small cases (cleaners/image/caption.py)."""
from __future__ import annotations

import pickle

import pytest

from cleaners.image.caption import CaptionChecks, clean_caption


@pytest.fixture(scope="module")
def checks() -> CaptionChecks:
    c = CaptionChecks()
    c.setup()
    return c


@pytest.mark.parametrize("raw, expected", [
    ("<__dj__image> a woman sitting on the beach with her dog <|__dj__eoc|>",
     ("a woman sitting on the beach with her dog", "en")),
    ("<b>Red</b> &amp; blue car <!-- x --> parked outside", ("Red & blue car parked outside", "en")),
    ("&lt;i&gt;Old&lt;/i&gt; stone bridge in autumn", ("Old stone bridge in autumn", "en")),
    ("一隻可愛的小貓在沙發上睡覺", ("一只可爱的小猫在沙发上睡觉", "zh")),
    ("  A   dog\n\ton the   beach  ", ("A dog on the beach", "en")),
    ("Call me at 13812345678 about this red car", ("Call me at <PHONE> about this red car", "en")),
    # bilingual captions are kept; the majority script decides the language
    ("我的猫 my cat is sleeping on the sofa", ("我的猫 my cat is sleeping on the sofa", "en")),
    ("一只猫在沙发上睡觉 cat", ("一只猫在沙发上睡觉 cat", "zh")),
    # short English product names that the fastText model calls `other` stay English
    ("Ninja Supra Kitchen Blender System", ("Ninja Supra Kitchen Blender System", "en")),
    ("photo of a red barn at dusk", ("photo of a red barn at dusk", "en")),
])
def test_kept(checks, raw, expected):
    assert checks.check(raw) == expected


@pytest.mark.parametrize("raw, reason", [
    (None, "not-text"), (b"bytes", "not-text"), ("", "empty"), ("  \n ", "empty"), ("<br/><img src='x'>", "empty"),
    ("IMG_1234.JPG", "caption-is-filename"), ("DSC01234", "caption-is-filename"),
    ("mount-everest-89590_1280", "caption-is-filename"), ("20190512_123456", "caption-is-filename"),
    ("holiday photo (2).png", "caption-is-filename"),
    ("https://example.com/a.jpg", "caption-is-url"), ("www.example.com/x", "caption-is-url"),
    ("Untitled-1", "caption-junk"), ("image", "caption-junk"), ("Photo: 3/12", "caption-junk"),
    ("点击查看大图", "caption-junk"), ("图片 1", "caption-junk"), ("Click here to enlarge", "caption-junk"),
    ("東京タワーの夜景", "lang:ja"), ("서울의 야경 사진", "lang:ko"),
    ("Обои зима, снег, автомобили", "lang:other"),
    ("a dog", "too-short"), ("小猫睡觉", "too-short"), ("Nike logo", "too-short"),
    ("x" * 1001, "too-long"),
])
def test_dropped(checks, raw, reason):
    assert checks.check(raw) == reason


def test_limits_are_configurable():
    c = CaptionChecks(min_words=1, min_chars=2, max_chars=10, languages=["zh", "en", "ja"])
    assert c.check("Nike logo") == ("Nike logo", "en")
    assert c.check("小猫") == ("小猫", "zh")
    assert c.check("東京タワー") == ("東京タワー", "ja")
    assert c.check("a red car parked") == "too-long"
    any_language = CaptionChecks(languages=[])
    assert any_language.check("東京タワーの夜景です") == ("東京タワーの夜景です", "ja")


def test_options_turn_steps_off():
    c = CaptionChecks(simplify=False, pii=False)
    assert c.check("一隻可愛的小貓在睡覺") == ("一隻可愛的小貓在睡覺", "zh")
    assert c.check("call 13812345678 for this red car") == ("call 13812345678 for this red car", "en")


def test_own_blocklist(tmp_path):
    path = tmp_path / "junk.txt"
    path.write_text("# comment\nfoo bar\n", encoding="utf-8")
    c = CaptionChecks(blocklist=str(path), min_words=1)
    assert c.check("Foo bar 12") == "caption-junk"
    assert c.check("image") == ("image", "en")     # the default list is replaced, not extended


@pytest.mark.parametrize("kwargs", [{"min_words": -1}, {"max_chars": "9"}, {"languages": "zh"},
                                    {"lid_min_score": 2.0}, {"blocklist": "/nonexistent/list.txt"}])
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        CaptionChecks(**kwargs)


def test_pickles_and_works_without_setup(checks):
    copy = pickle.loads(pickle.dumps(checks))
    assert copy._junk is None
    assert copy.check("一隻可愛的小貓在沙發上睡覺") == ("一只可爱的小猫在沙发上睡觉", "zh")


def test_clean_caption_is_idempotent():
    for raw in ["<p>A &quot;quoted&quot; caption</p>", "<__dj__image>  猫 &nbsp; cat ", "a < b > c"]:
        once = clean_caption(raw)
        assert clean_caption(once) == once
    assert clean_caption("a < b > c") == "a < b > c"
