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


# -- the caption steps, as the pipeline runs them -----------------------------------------------------------

def test_caption_steps_are_separately_counted_stages(checks):
    from cleaners.image.record import ImageText
    from cleaners.runner import StepRunner
    from pipelines.image_text import CAPTION_STAGES
    from pipelines.ledger import events_to_counts

    runner = StepRunner(checks.steps())
    assert tuple(runner.stage_names) == CAPTION_STAGES
    pairs = [ImageText(key=f"k#{i}", source="s", caption=caption) for i, caption in enumerate([
        "IMG_2041.JPG", "青い背景の赤い丸", "a cat", "一隻可愛的小貓在沙發上睡覺，電話13812345678",
        "Call me at 13812345678 about this red car"])]
    outcomes = [runner.run(pair) for pair in pairs]
    drops = [(stage, reason) for out in outcomes for _, stage, reason in out.drops]
    assert drops == [("caption_text", "caption-is-filename"), ("caption_language", "lang:ja"),
                     ("caption_length", "too-short")]
    kept = [pair for out in outcomes for pair in out.kept]
    assert [(p.caption, p.lang) for p in kept] == [("一只可爱的小猫在沙发上睡觉，电话<PHONE>", "zh"),
                                                   ("Call me at <PHONE> about this red car", "en")]
    assert [p.caption_kind for p in kept] == ["description", "alt"]      # a scene; a sentence that describes none
    assert pairs[3].caption.startswith("一隻") and pairs[3].lang == ""      # inputs are never changed
    counts: dict[str, int] = {}
    for out in outcomes:
        for name, n in events_to_counts(out.events).items():
            counts[name] = counts.get(name, 0) + n
    assert counts["caption_rewrite|count|pii:phone"] == 2
    assert counts["caption_length|hist|caption_kind|description"] == counts["caption_length|hist|caption_kind|alt"] == 1
    assert counts["caption_text|in"] == 5 and counts["caption_text|out"] == 4
    assert counts["caption_length|in"] == 3 and counts["caption_length|out"] == 2
    for stage in CAPTION_STAGES:                                             # in = out + dropped per stage
        dropped = sum(n for name, n in counts.items() if name.startswith(f"{stage}|drop|"))
        assert counts[f"{stage}|in"] == counts[f"{stage}|out"] + dropped


def test_caption_steps_pickle_with_their_shared_settings(checks):
    steps = pickle.loads(pickle.dumps(CaptionChecks(min_words=1).steps()))
    assert len({id(step.checks) for step in steps}) == 1 and steps[0].checks.min_words == 1
    assert steps[0].checks._junk is None                  # rebuilt by setup() on the worker


@pytest.mark.parametrize("text, lang, kind", [
    ("A black Honda motorcycle parked in front of a garage.", "en", "description"),
    ("Two dogs are playing with a ball on the beach", "en", "description"),
    ("Classical Masterpieces: Xerses & More, Vol. 8 by Various Artists", "en", "alt"),   # a title
    ("Coffee Table with Tray Top Color: Gray", "en", "alt"),                             # a product name
    ("grinning face", "en", "alt"),
    ("a red car", "en", "alt"),                                                          # too short to describe
    ("一只鸸鹋站在草地上", "zh", "description"),
    ("在山里中站着两只鸡，一只黄色另一只黑黄色", "zh", "description"),
    ("鱼香茄子-预览图-3", "zh", "alt"),
    ("TiFlash 架构", "zh", "alt"),
    ("黑色胶片的机台", "zh", "alt"),       # a real XM3600 description under 8 Han characters: a known miss
])
def test_caption_kind(text, lang, kind):
    from cleaners.image.caption_kind import caption_kind

    assert caption_kind(text, lang) == kind


def test_other_texts_go_through_the_same_checks(checks):
    from cleaners.image.record import ImageText
    from cleaners.runner import StepRunner
    from pipelines.ledger import events_to_counts

    pair = ImageText(key="k", source="s", caption="a brown dog runs on the sand",
                     texts=[("IMG_2041.JPG", ""), ("一隻小狗在沙灘上奔跑，電話13812345678", ""), ("dog", ""),
                            ("a brown dog runs on the sand", ""), ("Beach dog photo print", "")])
    out = StepRunner(checks.steps()).run(pair)
    kept, = out.kept
    assert kept.texts == [("一只小狗在沙滩上奔跑，电话<PHONE>", "zh"), ("Beach dog photo print", "en")]
    counts = events_to_counts(out.events)
    assert counts["caption_length|count|texts:kept"] == 2
    assert counts["caption_length|count|texts:dropped:caption-is-filename"] == 1
    assert counts["caption_length|count|texts:dropped:too-short"] == 1
    assert counts["caption_length|count|texts:dropped:same-as-caption"] == 1
