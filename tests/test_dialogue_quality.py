"""The dialogue session quality score: exact parts on small sessions, the min_score filter, bad settings."""
from __future__ import annotations

import pytest

from cleaners.dialogue.quality import QualityStep, quality_parts, quality_score
from cleaners.dialogue.records import Session, to_dialogue_record


def test_a_clean_varied_session_scores_one():
    session = Session(turns=["周末一起去爬山吗？", "好啊，几点在哪里集合呢？", "早上七点，地铁站门口见。"])
    assert quality_parts(session) == {"edited": 0.0, "generic": 0.0, "repetition": 0.0, "short": 0.0}
    assert quality_score(quality_parts(session)) == 1.0


def test_each_part_costs_its_weight():
    session = Session(turns=["哈哈", "哈哈。", "好的", "你在干嘛"], edited_turns=(3,))
    parts = quality_parts(session)
    # edited 1/4; generic: 哈哈, 哈哈。 (trailing punctuation ignored), 好的; repetition: the second 哈哈;
    # short: mean 2.75 characters against 10
    assert parts == {"edited": 0.25, "generic": 0.75, "repetition": 0.25, "short": pytest.approx(0.725)}
    expected = 1 - (0.35 * 0.25 + 0.25 * 0.75 + 0.25 * 0.25 + 0.15 * 0.725)
    assert quality_score(parts) == round(expected, 4)


def test_the_step_writes_the_score_and_filters():
    good = Session(turns=["周末一起去爬山吗？", "好啊，几点在哪里集合呢？"])
    poor = Session(turns=["哈哈", "哈哈", "哈哈"])
    step = QualityStep(min_score=0.5)
    scored = step.apply(good).result
    assert scored.meta["quality"] == 1.0
    record = to_dialogue_record(scored)
    assert record["scores"] == {"dialogue_quality": 1.0} and "quality_parts" not in record.get("meta", {})
    assert step.apply(poor).result == "low-quality"
    assert QualityStep().apply(poor).result.meta["quality"] < 0.5      # default min_score 0 keeps it
    with pytest.raises(ValueError):
        QualityStep(min_score=1.5)
