"""bench/issue13.py's sweeps: each variant changes one group of knobs of TwoPassConfig's default, and
the precompile step covers every chunk kernel the tiles section times (a miss compiles for tens of
seconds inside the timed section on the GPU). The sweep itself runs on the CPU interpreter with
`TRITON_INTERPRET=1 python3 bench/issue13.py --smoke --sections tiles,elementwise`."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import issue13  # noqa: E402  (bench/issue13.py)

GROUPS = {
    "state ": set(issue13.STATE_FIELDS),
    "narrow ": set(issue13.NARROW_FIELDS),
    "out ": {"BT", "BV", "num_warps", "num_stages"},
    "fix ": {"segment_fix_BV", "segment_fix_stages", "num_warps"},
    "span": set(issue13.SPAN_FIELDS),
}


def test_each_variant_changes_one_group_of_knobs():
    default = asdict(issue13.TwoPassConfig())
    for case in issue13.TILE_CASES:
        variants = issue13.tile_variants(case)
        assert variants["default"] == (issue13.TwoPassConfig(), None)
        for name, (cfg, seg) in variants.items():
            changed = {k for k, v in asdict(cfg).items() if v != default[k]}
            if name.startswith("segment "):
                assert not changed and seg == int(name.split()[1])
                continue
            group = next((g for g in GROUPS if name.startswith(g)), None)
            # the fix tilings run on a cut sequence, the narrow ones on an uncut one
            want_seg = {"fix ": issue13.CUT_SEGMENT, "narrow ": 0}.get(group)
            # (the default's own fix tiling on the cut sequence is the cut group's baseline: nothing changed)
            assert name == "default" or (group and (changed or group == "fix ") and changed <= GROUPS[group]
                                         and seg == want_seg), name


def test_combined_takes_the_state_tile_of_one_winner_and_the_output_tile_of_the_other():
    case = next(c for c, (kind, _, _) in issue13.TILE_CASES.items() if kind == "stream")
    names = list(issue13.tile_variants(case))
    state = next(n for n in names if n.startswith("state "))
    out = next(n for n in names if n.startswith("out "))
    timed = {n: 2.0 for n in names} | {state: 1.0, out: 1.5}
    name, cfg = issue13.combined(case, timed)
    variants = issue13.tile_variants(case)
    assert name == f"best: {state} + {out}"
    for field, value in asdict(cfg).items():
        source = variants[state][0] if field in issue13.STATE_FIELDS else variants[out][0]
        assert value == getattr(source, field), field
    assert issue13.combined(case, timed | {"default": 0.5}) is None  # the default wins both groups


def test_precompile_covers_every_timed_chunk_variant():
    tasks = set(issue13.precompile_tasks(["tiles"]))
    for case, (kind, _, _) in issue13.TILE_CASES.items():
        for mode in issue13.TILE_MODES:
            for name in issue13.tile_variants(case):
                same_kernels_as_fresh = kind == "long" and mode == "h0" and name.startswith("state ")
                key = ("tiles", case, "fresh" if same_kernels_as_fresh else mode, name)
                assert key in tasks, key
