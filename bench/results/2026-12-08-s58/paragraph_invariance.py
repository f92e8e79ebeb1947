"""Session 58 (workplace VM): the segments of a text holding words followed by non-ASCII spaces and then a blank line
or a list item, cut once at each byte and three times close together at every seventh byte, against the whole
text's (tests/test_sentences.py's segments_of). Run from the repository root.

    python3 bench/results/2026-12-08-s58/paragraph_invariance.py
"""
import sys
sys.path.insert(0, "tests")
from test_sentences import segments_of
sample = ("A first heading\xa0\n\nThe text goes on here. Then more\u3000\n- one item\n- two items\x1c\n\n"
          "Last words of it. Another\xa0 \n\n(a) point. End.") * 3
raw = sample.encode()
whole = segments_of(sample, [], max_segment_bytes=200)
print(len(whole), [t for t, _, _ in whole][:6])
bad = 0
for c in range(len(raw) + 1):
    if segments_of(sample, [c], max_segment_bytes=200) != whole:
        bad += 1
for c in range(0, len(raw), 7):
    if segments_of(sample, [c, c + 3, c + 5], max_segment_bytes=200) != whole:
        bad += 1
print("chunkings that differ:", bad)
