"""Session 35: session 33's stress.py (bench/results/2026-12-05-cpu-s33/, the GPU's engine settings on the CPU against
one-chunk readings) run as it is but for its insertions: list markers alone on their lines before blank lines are
added to them. Arguments as stress.py's: seed, streams, model, step tokens, max text bytes.

    python bench/results/2026-12-05-cpu-s35/stress_items.py 1 40 default 300 4000
"""
import sys
from pathlib import Path

source = (Path(__file__).resolve().parents[1] / "2026-12-05-cpu-s33" / "stress.py").read_text()
old = 'extras = ["é"'
assert source.count(old) == 1, "stress.py's insertions line moved"
source = source.replace(old, 'extras = ["\\n(a)\\n\\n", "\\na)\\n\\n", "\\n-\\n\\n", "\\n3.\\n\\n", "é"')
sys.argv[0] = __file__
exec(compile(source, "stress.py with list markers", "exec"))
