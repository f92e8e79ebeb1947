"""bench/tokenize_cost.py: every copy's tokenizer process cuts and tokenizes its own text twice, and the figures
come from the children's CPU time."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import tokenize_cost  # noqa: E402  (bench/tokenize_cost.py)


def test_two_copies_read_their_text_twice(tmp_path: Path):
    text = tmp_path / "t.txt"
    text.write_text("The stream goes on. It has sentences, and words! " * 2000)  # 100 kB
    tokenize_cost.main(["--text", str(text), "--copies", "1,2", "--mb", "0.04", "--streams", "4", "--chunk-bytes",
                        "1024", "--model", "random:tiny", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "tokenize_cost.json").read_text())["rows"]
    assert [r["copies"] for r in rows] == [1, 2]
    fed = 40_000  # a copy's 4 streams x 10 chunks (the last one short): all its text, each pass
    for r in rows:  # the byte tokenizer: a token a byte handed out (a stream's unfinished sentence stays back)
        assert r["first"]["tokens"] == r["again"]["tokens"]
        assert 0.9 * fed * r["copies"] <= r["first"]["tokens"] <= fed * r["copies"]
        assert r["first"]["child_cpu_us_per_token"] >= 0 and r["again"]["host_tokens_per_s"] > 0


def test_too_little_text_to_time_is_refused(tmp_path: Path):
    text = tmp_path / "t.txt"
    text.write_text("word " * 1000)
    with pytest.raises(SystemExit, match="too few to time"):
        tokenize_cost.main(["--text", str(text), "--copies", "1", "--mb", "0.004", "--out", str(tmp_path)])
