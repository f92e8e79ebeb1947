"""bench/e2e_ab.py: the run order, the per-pair summary, and a whole A/B over a stand-in for bench/e2e.py (a run
past its timeout is killed with its children)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import e2e_ab  # noqa: E402  (bench/e2e_ab.py)

# writes e2e.json as bench/e2e.py does: engine_64 at --speed tokens/s (1e6 by default); --hang starts a child
# that sleeps, writes its pid and sleeps itself
STAND_IN = '''
import json, os, subprocess, sys, time
argv = sys.argv[1:]
out = argv[argv.index("--out") + 1]
if "--hang" in argv:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open(os.path.join(out, "child.pid"), "w").write(str(child.pid))
    time.sleep(60)
speed = float(argv[argv.index("--speed") + 1]) if "--speed" in argv else 1e6
parts = {"packed": {"tokens_per_s": 4e6}, "engine_64": {"tokens_per_s": speed}, "failed": {"error": "x"}}
json.dump({"parts": parts, "common": "--text t" in " ".join(argv)}, open(os.path.join(out, "e2e.json"), "w"))
'''


def test_pairs_alternate_which_side_runs_first():
    assert e2e_ab.order(3) == ["a1", "b1", "b2", "a2", "a3", "b3"]


def test_summary_gives_each_pairs_change_and_skips_a_pair_missing_a_side():
    runs = {"a1": {"p": 100.0}, "b1": {"p": 110.0}, "b2": {"p": 95.0}, "a2": {"p": 100.0}, "a3": {"p": 100.0},
            "b3": {}}
    got = e2e_ab.summary(runs, 3)["p"]
    assert got["a"] == [100.0, 100.0, 100.0] and got["b"] == [110.0, 95.0, None]
    assert [None if c is None else round(c, 3) for c in got["change"]] == [0.1, -0.05, None]
    assert (got["pairs"], got["b_higher"], round(got["min_change"], 3), round(got["max_change"], 3)) == (2, 1, -0.05,
                                                                                                          0.1)
    assert "+10.0" in e2e_ab.table({"p": got}) and "-5.0" in e2e_ab.table({"p": got})


def test_an_ab_over_a_stand_in_records_every_run_and_the_change(tmp_path: Path, capsys):
    fake = tmp_path / "fake_e2e.py"
    fake.write_text(STAND_IN)
    code = e2e_ab.main(["--pairs", "2", "--timeout", "30", "--b", "--speed 2e6", "--out", str(tmp_path / "ab"),
                        "--e2e", str(fake), "--", "--text", "t"])
    assert code == 0
    ab = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert sorted(ab["runs"]) == ["a1", "a2", "b1", "b2"]
    assert ab["summary"]["engine_64"]["change"] == [1.0, 1.0] and ab["summary"]["packed"]["change"] == [0.0, 0.0]
    assert "failed" not in ab["summary"]  # a part with no tokens/s
    assert all(json.loads((tmp_path / "ab" / r / "e2e.json").read_text())["common"] for r in ab["runs"])
    assert "+100.0 +100.0" in capsys.readouterr().out


def test_a_warm_up_run_goes_first_with_its_own_flags_and_is_not_read(tmp_path: Path, capsys):
    fake = tmp_path / "fake_e2e.py"
    fake.write_text(STAND_IN)
    code = e2e_ab.main(["--pairs", "1", "--timeout", "30", "--b", "--speed 2e6", "--warmup", "--speed 9e6",
                        "--out", str(tmp_path / "ab"), "--e2e", str(fake), "--", "--text", "t"])
    assert code == 0
    ab = json.loads((tmp_path / "ab" / "ab.json").read_text())
    warm = json.loads((tmp_path / "ab" / "warm" / "e2e.json").read_text())
    assert warm["parts"]["engine_64"]["tokens_per_s"] == 9e6 and warm["common"]  # its flags and the common ones
    assert sorted(ab["runs"]) == ["a1", "b1"] and ab["meta"]["warm"]["exit"] == 0
    assert ab["summary"]["engine_64"]["a"] == [1e6] and ab["summary"]["engine_64"]["b"] == [2e6]
    assert capsys.readouterr().out.startswith("warm rc 0")


def test_an_ab_of_another_tree_runs_its_own_e2e_and_package_there(tmp_path: Path, capsys, monkeypatch):
    """--a-tree: A's runs are the other tree's bench/e2e.py, run in that tree with its streamret first on the path
    (here a package whose SPEED the stand-in reports), B's this tree's (the stand-in given as --e2e); what the runs
    read from here is linked into the tree."""
    tree = tmp_path / "tree"
    (tree / "bench").mkdir(parents=True)
    (tree / "streamret").mkdir()
    (tree / "streamret" / "__init__.py").write_text("SPEED = 3e6\n")
    speed_line = 'speed = float(argv[argv.index("--speed") + 1]) if "--speed" in argv else 1e6'
    assert speed_line in STAND_IN
    in_tree = "os.getcwd() == os.path.dirname(os.path.dirname(os.path.abspath(__file__)))"
    (tree / "bench" / "e2e.py").write_text(STAND_IN.replace(
        speed_line, f"import streamret\nspeed = streamret.SPEED if {in_tree} else 0.0"))
    (tree / ".device").symlink_to(tmp_path / "elsewhere")  # a link the tree was carried with, dangling here
    here = tmp_path / "here"
    (here / ".device").mkdir(parents=True)
    monkeypatch.chdir(here)
    fake = tmp_path / "fake_e2e.py"
    fake.write_text(STAND_IN)
    code = e2e_ab.main(["--a-tree", str(tree), "--pairs", "1", "--timeout", "30", "--out", str(tmp_path / "ab"),
                        "--e2e", str(fake), "--", "--text", "t"])
    assert code == 0
    ab = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert ab["summary"]["engine_64"]["a"] == [3e6] and ab["summary"]["engine_64"]["b"] == [1e6]
    assert (tree / "streamret" / "assets").is_symlink()  # the model assets, from here
    assert (tree / ".device").resolve() == (here / ".device").resolve()  # linked again, to this machine's
    assert "from " + str(tree) in capsys.readouterr().out


def test_an_ab_needs_a_difference_and_a_tree_with_e2e(tmp_path: Path):
    with pytest.raises(SystemExit):
        e2e_ab.main(["--out", str(tmp_path / "ab"), "--", "--text", "t"])  # no --b, no --a-tree
    with pytest.raises(SystemExit):
        e2e_ab.main(["--a-tree", str(tmp_path), "--out", str(tmp_path / "ab")])  # no bench/e2e.py there


def test_a_run_past_its_timeout_is_killed_with_its_children(tmp_path: Path):
    fake = tmp_path / "fake_e2e.py"
    fake.write_text(STAND_IN)
    start = time.monotonic()
    code, seconds = e2e_ab.run_once(str(fake), ["--hang"], tmp_path / "run", timeout=5)
    assert code == -9 and 5 <= seconds < 30 and time.monotonic() - start < 30
    pid = int((tmp_path / "run" / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # gone, or a zombie no one has reaped yet: not running either way
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the run's child {pid} still runs")
    assert e2e_ab.rates(tmp_path / "run") == {}
