"""An item's piece layout, made with array work over a whole batch of items (`PieceLayout.of_items`,
`StepSpans.of_items`, `piece_facts`), equals the obvious per-piece reference: `StepSpans.of` over span objects,
and a loop over the pieces for their text facts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamret.engine import segments as sg
from streamret.engine.scheduler import PieceLayout, Span
from streamret.engine.segments import StepSpans, piece_facts
from streamret.engine.text import TextPiece


def reference_facts(pieces: list[TextPiece]) -> np.ndarray:
    """`piece_facts` one piece at a time, from TextPiece's own properties."""
    rows = np.full((len(pieces), 8), -1, dtype=np.int64)
    for row, p in zip(rows, pieces):
        n = len(p.text)
        body_len = n - p.carry_chars if p.ends_segment else n
        lead = n - len(p.stripped)
        row[sg.BODY_END_BYTE] = p.end_byte - (p.carry_bytes if p.ends_segment else 0)
        row[sg.END_BYTE], row[sg.TEXT_LEN], row[sg.BODY_LEN] = p.end_byte, n, body_len
        if lead < body_len:
            row[sg.BODY_FIRST_BYTE], row[sg.BODY_LEAD] = p.start_byte + p.lead_bytes, lead
        if p.ends_segment:
            carry = p.text[body_len:]
            carry_lead = len(carry) - len(carry.lstrip())
            if carry_lead < len(carry):
                row[sg.SEED_FIRST_BYTE] = p.end_byte - p.carry_bytes + len(carry[:carry_lead].encode())
                row[sg.SEED_LEAD] = body_len + carry_lead
    return rows


# whitespace of one to three UTF-8 bytes (str.isspace), words with multi-byte characters, a replaced byte
CHARS = st.sampled_from([" ", "  ", "\n", "\t", "\r\n", "\x0b", "\x1c", "\x85", "\u00a0", "\u2028", "\u3000",
                         "a", "word", "é", "日本", "🙂", ".", "\ufffd"])


@st.composite
def pieces(draw) -> list[TextPiece]:
    out, at = [], draw(st.integers(0, 1000))
    for _ in range(draw(st.integers(0, 6))):
        text = "".join(draw(st.lists(CHARS, max_size=8)))
        ends = draw(st.booleans())
        carry = draw(st.integers(0, len(text))) if ends else 0
        n = len(text.encode())
        carry_bytes = len(text[len(text) - carry :].encode()) if carry else 0
        out.append(TextPiece(text, at, at + n, draw(st.booleans()), ends, carry, carry_bytes))
        at += n
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces(), max_size=5))
def test_piece_facts_equal_a_loop_over_the_pieces(items):
    for ps in [*items, [p for item in items for p in item]]:
        np.testing.assert_array_equal(piece_facts(ps), reference_facts(ps))


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces(), max_size=5), st.randoms())
def test_layouts_of_a_batch_equal_each_item_made_from_span_objects(items, rng):
    lens = [[rng.choice([0, 0, 1, 2, 7]) for _ in ps] for ps in items]
    layouts = PieceLayout.of_items(items, np.array([n for ns in lens for n in ns], dtype=np.int64))
    assert len(layouts) == len(items)
    for ps, ns, layout in zip(items, lens, layouts):
        ends = np.cumsum(ns, dtype=np.int64).tolist()
        assert (layout.starts, layout.ends, layout.lens.tolist()) == ([0, *ends[:-1]] if ns else [], ends, ns)
        full = [Span(p, n, True, True) for p, n in zip(ps, ns)]
        assert layout.full_spans == full
        expected = StepSpans.of([full])
        for field in ("lens", "per_stream", "cut_before", "cut_after", "last", "facts"):
            got = getattr(layout.step_spans, field)
            assert got.dtype == getattr(expected, field).dtype
            np.testing.assert_array_equal(got, getattr(expected, field))
        assert layout.step_spans.text == expected.text
        np.testing.assert_array_equal(layout.char_offsets, expected.char_offsets)
        if ps:  # the one-item path the tests and set_tokens use
            one = PieceLayout.of(ps, np.array(ends, dtype=np.int64))
            assert (one.starts, one.ends, one.full_spans) == (layout.starts, layout.ends, full)
            np.testing.assert_array_equal(one.step_spans.facts, expected.facts)
