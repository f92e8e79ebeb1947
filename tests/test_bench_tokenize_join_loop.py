"""bench/tokenize_join_loop.py: the tokenize stage in a closed loop, every chunk acked and sent again."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import tokenize_join_loop  # noqa: E402  (bench/tokenize_join_loop.py)


def test_one_thread_steps_hold_every_stream(tmp_path: Path):
    tokenize_join_loop.main(["--streams", "3", "--configs", "1:0,2:32", "--seconds", "0.3", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "tokenize_join_loop.json").read_text())["rows"]
    assert [(r["threads"], r["join_bytes"]) for r in rows] == [(1, 0), (2, 32 << 10)]
    # one thread takes every waiting chunk at once, and the step every delivered one: each step holds all 3
    assert rows[0]["streams_per_step"] == 3 and rows[0]["steps"] > 0
    assert all(r["mb_per_s"] > 0 and 1 <= r["streams_per_step"] <= 3 for r in rows)


def test_sleeping_tokenizer_and_split_configs(tmp_path: Path):
    """--tok-wait sleep (tokenizer processes' wait, no GIL held) and a ":split" config run, each chunk's round trip
    timed; a config that is not threads:join[:split] is refused by name."""
    tokenize_join_loop.main(["--streams", "2", "--configs", "2:32:split", "--tok-wait", "sleep", "--seconds", "0.3",
                             "--out", str(tmp_path)])
    (row,) = json.loads((tmp_path / "tokenize_join_loop.json").read_text())["rows"]
    assert row["split_bursts"] and row["threads"] == 2 and row["steps"] > 0 and row["round_trip_ms_p50"] > 0
    with pytest.raises(SystemExit, match="2:32:halve"):
        tokenize_join_loop.main(["--streams", "2", "--configs", "2:32:halve", "--out", str(tmp_path)])


def test_a_hungry_step_thread_and_the_join_wait(tmp_path: Path):
    """--hungry (the stage hands chunks over at once while the step thread waits, as the engine's loop does) and
    --join-wait-ms run and are recorded."""
    tokenize_join_loop.main(["--streams", "4", "--configs", "2:32:split", "--tok-wait", "sleep", "--hungry",
                             "--join-wait-ms", "3", "--seconds", "0.3", "--out", str(tmp_path)])
    (row,) = json.loads((tmp_path / "tokenize_join_loop.json").read_text())["rows"]
    assert row["hungry"] and row["join_wait_ms"] == 3 and row["steps"] > 0 and row["round_trip_ms_p50"] > 0
