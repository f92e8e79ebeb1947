"""bench/tokenizer.py: the bundled tokenizer as shipped, through its normalizer twin and through the word cache
give the same ids, the word cache starting empty."""

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import tokenizer as tokenizer_bench  # noqa: E402  (bench/tokenizer.py)


def test_the_three_ways_give_the_same_ids(tmp_path: Path):
    text = tmp_path / "t.txt"
    text.write_text("The stream goes on. It has sentences, and words! copy_resolved_framework_into_bundle: "
                    "(see git-config(1)) Zürich. " * 900)
    tokenizer_bench.main(["--text", str(text), "--text-mb", "0.08", "--repeats", "2", "--out", str(tmp_path)])
    got = json.loads((tmp_path / "tokenizer.json").read_text())
    assert got["same_ids"] and got["tokens"] > 1000
    assert set(got["us_per_token"]) == {"as_shipped", "prenormalized", "word_cache"}
    assert 5 < got["word_cache_words"] < 100  # the text's distinct words, the long one among them
