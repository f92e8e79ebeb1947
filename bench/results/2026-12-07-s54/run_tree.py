"""Session 54, VM: run a script with the streamret package of another tree (a git archive of an older commit, its
kernels linked), importing it first so that the script's own path insert does not matter.

    python bench/results/2026-12-07-s54/run_tree.py /tmp/oldtree SCRIPT [ARGS...]
"""
import runpy, sys
tree, script, *args = sys.argv[1:]
sys.path.insert(0, tree)
import streamret  # noqa
assert streamret.__file__.startswith(tree), streamret.__file__
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
