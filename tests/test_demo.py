"""`wudao demo` end to end, as the README's first command runs it: every part writes its outputs, the ledgers
balance and both training runs lower their validation loss."""
from __future__ import annotations

import json

import pytest

from pipelines.cli import main


@pytest.mark.slow
def test_demo_runs_every_part(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for part in ("text", "dialogue", "image_text"):
        stats = json.loads((out / part / "stats.json").read_text())
        assert stats["totals"]["kept"] > 0
        assert stats["totals"]["records_in"] + stats["totals"].get("created", 0) == \
            stats["totals"]["kept"] + stats["totals"]["dropped"]
    for folder in ("shards", "cogview_shards"):
        assert main(["shards", "verify", str(out / folder)]) == 0
    assert (out / "vq" / "vq.pt").is_file()
    assert (out / "alignment" / "model" / "model.pt").is_file() and "alignment: " in printed
    image_stages = {s["stage"]: s for s in json.loads((out / "image_text" / "stats.json").read_text())["stages"]}
    assert image_stages["alignment"]["in"] == image_stages["alignment"]["out"] > 0       # every kept pair scored
    for kind in ("glm", "cogview"):
        metrics = [json.loads(line) for line in (out / f"train_{kind}" / "metrics.jsonl").read_text().splitlines()]
        vals = [m["val_loss"] for m in metrics if "val_loss" in m]
        assert len(vals) >= 2 and vals[-1] < vals[0], kind
        assert f"{kind}: 60 steps" in printed
    assert "glm: wudao generate '北京是[MASK]的首都。' -> '北京是" in printed   # the trained GLM fills the blank
    report = out / "text" / "report.html"
    assert f"report:  {report}" in printed and report.stat().st_size > 10_000
    assert report.read_text("utf-8").count("data:image/png;base64,") >= 5
