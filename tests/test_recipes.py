"""One recipe loader and one merge rule for every kind of corpus (cleaners/recipe.py)."""
from __future__ import annotations

import pytest

from cleaners.recipe import load_default, load_recipe, merge


def test_mappings_merge_at_every_depth_and_other_values_replace():
    base = {"dedup": {"exact": {"enabled": True}, "minhash": {"enabled": True, "threshold": 0.8, "num_perm": 128}},
            "steps": [{"normalize": {}}, {"pii": {}}], "languages": ["zh", "en"]}
    user = {"dedup": {"minhash": {"threshold": 0.7}}, "steps": [{"pii": {}}], "languages": ["zh"]}
    merged = merge(base, user)
    assert merged == {"dedup": {"exact": {"enabled": True},
                                "minhash": {"enabled": True, "threshold": 0.7, "num_perm": 128}},
                      "steps": [{"pii": {}}], "languages": ["zh"]}
    assert base["dedup"]["minhash"]["threshold"] == 0.8          # the default is never changed
    merged["steps"].append("x")
    assert user["steps"] == [{"pii": {}}]                         # nor the user's config


@pytest.mark.parametrize("kind", ["text", "dialogue", "image_text"])
def test_every_kind_loads_its_default_and_refuses_unknown_sections(tmp_path, kind):
    default = load_default(kind)
    assert load_recipe(kind=kind) == default
    section = next(name for name, value in default.items() if isinstance(value, dict))
    key, value = next(iter(default[section].items()))
    changed = load_recipe(text=f"{section}: {{{key}: null}}", kind=kind)
    assert changed[section][key] is None and changed[section] == {**default[section], key: None}
    assert {k: v for k, v in changed.items() if k != section} == {k: v for k, v in default.items() if k != section}
    path = tmp_path / "typo.yaml"
    path.write_text("dedupe: {exact: {enabled: false}}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown recipe section\(s\) \['dedupe'\]"):
        load_recipe(str(path), kind=kind)
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_recipe(text="- a list", kind=kind)


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown recipe kind 'audio'"):
        load_recipe(kind="audio")


def test_dialogue_recipe_keeps_unnamed_settings():
    """Before one merge rule, a dialogue recipe naming one key of `ad_replies` lost the section's other keys."""
    config = load_recipe(text="ad_replies: {max_contexts: 9}\n", kind="dialogue")
    assert config["ad_replies"] == {**load_default("dialogue")["ad_replies"], "max_contexts": 9}
    assert config["ad_replies"]["enabled"] is True and config["ad_replies"]["min_reply_chars"] == 8


def test_runner_counts_splits_and_turns_a_broken_step_into_a_drop():
    from cleaners.runner import StepRunner
    from cleaners.step import Step

    class Split(Step):
        name = "split"

        def apply(self, record):
            return [{"v": record["v"] + "a"}, {"v": record["v"] + "b"}] if record["v"] != "empty" else []

    class Boom(Step):
        name = "boom"

        def apply(self, record):
            if record["v"].endswith("b"):
                raise RuntimeError("bug")
            return record

    runner = StepRunner([Split(), Boom()])
    out = runner.run({"v": "x"})                     # records are any objects; a str is a drop reason
    assert out.kept == [{"v": "xa"}] and [(s, r) for _, s, r in out.drops] == [("boom", "step-error:RuntimeError")]
    assert out.events[("split", "in", "")] == 1 and out.events[("split", "out", "")] == 2
    assert out.events[("split", "created", "")] == 1
    empty = runner.run({"v": "empty"})                       # a split that kept nothing and gave no reason
    assert empty.kept == [] and [(s, r) for _, s, r in empty.drops] == [("split", "step-error:no-output")]


def test_sections_that_configure_several_steps_fail_on_a_typo():
    from cleaners.dialogue.rules import SessionCleaner
    from cleaners.image.caption import CaptionChecks
    from cleaners.recipe import build_section_steps

    assert [s.name for s in build_section_steps(CaptionChecks, load_default("image_text"), "caption")] == [
        "caption_text", "caption_language", "caption_rewrite", "caption_length"]
    assert [s.name for s in build_section_steps(SessionCleaner, {}, "rules")] == [
        "dialogue_erase", "dialogue_names", "dialogue_repeats", "dialogue_judge"]
    with pytest.raises(ValueError, match="bad settings in recipe section 'caption'.*min_word"):
        build_section_steps(CaptionChecks, {"caption": {"min_word": 1}}, "caption")
    with pytest.raises(ValueError, match="bad settings in recipe section 'rules'"):
        build_section_steps(SessionCleaner, {"rules": {"max_repeat": 2}}, "rules")
