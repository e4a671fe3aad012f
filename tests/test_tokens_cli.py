"""`wudao tokenizer train`, `wudao shards` and `wudao shards verify` end to end on the embedded crawl's corpus."""
from __future__ import annotations

import json

import pytest

from pipelines.cli import main
from pipelines.run import run_text, sample_inputs
from shards.reader import StreamingShards
from tokenizer.text import TextTokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("text")
    run_text(sample_inputs(), str(out), None, [])
    return str(out / "corpus" / "part-*.jsonl.gz")


def test_tokenize_shard_verify_and_stream(corpus, tmp_path, capsys):
    tok, shards = tmp_path / "tok", tmp_path / "shards"
    assert main(["tokenizer", "train", "--corpus", corpus, "--output", str(tok), "--vocab-size", "2000"]) == 0
    tokenizer = TextTokenizer.load(str(tok))
    text = "城市公园完成改造，市民可以在湖边散步。\nThe library opened a new reading room."
    assert tokenizer.decode(tokenizer.encode(text)) == text
    args = ["shards", "--corpus", corpus, "--tokenizer", str(tok), "--output", str(shards),
            "--shard-size", "64KB", "--val-fraction", "0.1"]
    assert main(args) == 0
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and len(manifest["shards"]) >= 2
    assert (shards / "vocab.json").read_bytes() == (tok / "vocab.json").read_bytes()  # the id space travels along
    assert main(["shards", "verify", str(shards)]) == 0
    first = [s.copy() for s in StreamingShards(str(shards), seed=1, shuffle_buffer=8, seq_len=64)]
    assert first and all(len(seq) == 64 for seq in first)
    assert all(int(seq.max()) < len(tokenizer) for seq in first)
    # a flipped byte in one shard is caught
    victim = shards / manifest["shards"][0]["name"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert main(["shards", "verify", str(shards)]) != 0
    capsys.readouterr()


def test_shards_usage_errors():
    with pytest.raises(SystemExit):
        main(["shards", "verify"])
    with pytest.raises(SystemExit):
        main(["shards", "--corpus", "x"])
