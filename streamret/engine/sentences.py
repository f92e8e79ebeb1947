"""Where sentences end: a rule-based decision from a bounded window of text around each candidate.

A candidate is a position right after a word that is followed by whitespace, where the word ends in
a sentence mark (. ! ? ... and CJK forms, closing quotes and brackets allowed after it) or the
whitespace holds a newline. Whether it ends a sentence is decided from three things only: the word
before it (at most `WORD_WINDOW` characters), the whitespace after it, and the first characters of the
next word. A decision therefore never depends on where a stream's bytes were cut, as long as that
window was available, and `decide` says when it was not (`None`: wait for more text).

Rules, in order:
- a blank line (two newlines in the whitespace) ends a sentence: paragraphs, headings, glossary entries;
- the next word starting with a lowercase letter (after any opening quotes or brackets) continues the
  sentence: "etc. and", "e.g. the", "What shall we do? for the sea wrought";
- a line that starts with a verse reference ("1:2") or a list marker ("-", "*", "3.", "a)") starts a
  sentence: versified texts, lists;
- a newline without a mark (a wrapped line) continues the sentence;
- "!" "?" "..." end a sentence;
- "." ends a sentence, except after a title ("Mr.", "Dr."), an initial ("J."), a dotted abbreviation
  ("e.g.", "U.S.", "a.m."), a word that is always abbreviated ("cf.", "vs."), a word abbreviated before a
  number ("No. 5", "Fig. 3", "Gen. 1:1", "Jan. 5"), or a number that opens a line ("1. Introduction").

Why rules and not a library: the engine must decide each boundary while the text is still arriving,
from a window that does not depend on the chunking (see DESIGN.md, chunk invariance); the splitters on
PyPI read a whole text at once, and a sentence cut can only fall where the tokenizer may be cut (before
a space), which is the engine's own concern (text.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MARKS = frozenset(".!?…。！？‼⁇⁈⁉")
CLOSERS = frozenset("\"')]}»”’」』）")
OPENERS = "\"'([{«“‘„‚「『（¿¡"
WORD_WINDOW = 64  # characters of the word before a candidate that the rules read
NEXT_WINDOW = 16  # characters of the next word that the rules read

_ITEM_START = r"(?:\d+:\d+|[-*•–]|\d{1,3}[.)]|\(?[a-zA-Z]\))"  # a verse "1:2", a list marker "-", "3.", "a)"
_ITEM = re.compile(_ITEM_START + r"(?:\W|$)")
_MARKS = "".join(MARKS)
_CLOSERS = "".join(CLOSERS)
# candidates: a word that ends with a mark (then closers) and whitespace; or a word followed by whitespace
# that holds a blank line or a newline and a list item: the only places where `decide` can say True
# (finding the second kind by its newline saves a Python call at every wrapped line)
_MARK_END = re.compile("[" + re.escape(_MARKS) + "][" + re.escape(_CLOSERS) + r"]*(?=\s)")
# (the newline alone is consumed: a match that took the item or the blank line with it hid the next candidate, the
# blank line after a list marker on a line of its own, "(a)\n\n"; a newline right after another is never after a
# word, and skipping it in C keeps the search as fast as before)
_LINE_BREAK = re.compile(r"\n(?<!\n\n)(?=(\s*\n)|[^\S\n]*" + _ITEM_START + r"(?:\W|\Z))")  # group 1: a blank line
# a candidate after a mark, with the whitespace after it and the first NEXT_WINDOW characters of the next word: one
# pattern a mark, as a pattern that starts with a literal is searched for at C speed while a class of marks is tried
# at every position (2.6 times the time over 2 MB of manual pages; `_mark_windows`)
_MARK_WINDOW = {c: re.compile(re.escape(c) + f"[{re.escape(_CLOSERS)}]*" + rf"(?=(\s+)(\S{{0,{NEXT_WINDOW}}}))")
                for c in MARKS}
_NOT_DOT = tuple(sorted(MARKS - {"."}))
_START = re.Match.start
_SPACE_RUN = re.compile(r"\s*")
_WORD = re.compile(r"\S*")

TITLES = frozenset(
    "mr mrs ms mx dr prof sr jr st rev hon capt col lt sgt gen gov sen rep messrs mme mlle fr br sgt maj "
    "adm cmdr cpl pvt supt insp".split()
)
ALWAYS_ABBREVIATED = frozenset("cf vs viz resp approx ca esp incl excl".split())
BEFORE_NUMBERS = frozenset(
    "no nos nr vol vols p pp ch chap chaps art arts sec secs fig figs eq eqs ref refs op ed eds v vv ver "
    "pt pts ps ex num tab app jan feb mar apr jun jul aug sep sept oct nov dec "
    "gen exod lev num deut josh judg sam kgs chr neh esth ps prov eccl isa jer lam ezek dan hos obad "
    "mic nah hab zeph hag zech mal matt mk lk jn rom cor gal eph phil col thess tim tit philem heb jas pet jude"
    .split()
)
# a word that ends in this many letters is none of the words listed, whatever it holds before them (lowercasing
# never shortens a text): after it a lone "." ends a sentence (`_period_ends`)
_LONGER_THAN_ANY_ABBREVIATION = 1 + max(map(len, TITLES | ALWAYS_ABBREVIATED | BEFORE_NUMBERS))


def decide(text: str, s: int, final: bool, line_start_at_0: bool = True) -> bool | None:
    """Does the candidate at s (a position in text right after a non-whitespace character) end a sentence?

    None when the window after s is not all in `text` yet (the whitespace run or the next word runs to
    its end) and `final` is false; with `final` the end of text counts as the end of the window.
    line_start_at_0: whether text[0] starts a line (the stream's start), for the numbered-line rule.
    """
    lo = max(s - WORD_WINDOW, 0)
    # the word before s starts at w0 (searched in its window)
    w0 = max(lo - 1, text.rfind(" ", lo, s), text.rfind("\n", lo, s), text.rfind("\t", lo, s),
             text.rfind("\r", lo, s)) + 1
    word = text[w0:s]
    core = word.rstrip(_CLOSERS)
    mark = len(core) - len(core.rstrip(_MARKS))
    if not mark:
        return line_break(text, s, final)
    j = _SPACE_RUN.match(text, s).end()
    if j == s:
        return False  # not followed by whitespace: not a candidate
    newlines = text.count("\n", s, j)
    if newlines >= 2:
        return True
    if j == len(text):
        return True if final else None
    following = _next_word(text, j, final)
    if following is None:
        return None
    first = following.lstrip(OPENERS)[:1]
    if first.islower():
        return False
    if newlines and _ITEM.match(following):
        return True
    if core[-mark:] != "." or len(core) < len(word):
        return True  # ! ? ... or a mark inside quotes or brackets
    return _period_ends(text, w0, s - 1, first, line_start_at_0)


def _period_ends(text: str, w0: int, dot: int, first: str, line_start_at_0: bool) -> bool:
    """Whether the word text[w0:dot] followed by a lone "." ends a sentence, given the first character of
    the next word (after its opening quotes or brackets)."""
    stem = text[w0:dot].lstrip(OPENERS).lower()
    if not stem:
        return True
    if stem in TITLES or stem in ALWAYS_ABBREVIATED:
        return False
    if len(stem) == 1 and stem.isalpha():
        return False  # an initial
    if "." in stem and all(len(part) <= 3 for part in stem.split(".")):
        return False  # e.g. U.S. a.m. Ph.D.
    if stem in BEFORE_NUMBERS and first.isdigit():
        return False
    if stem.isdigit() and len(stem) <= 3 and _starts_line(text, w0, line_start_at_0):
        return False  # "1. Introduction": a numbered line
    return True


def line_break(text: str, s: int, final: bool) -> bool | None:
    """Whether the whitespace at s starts a new sentence whatever the word before it: it holds a blank
    line, or a newline before a list item or verse; None when that needs text not here yet."""
    j = _SPACE_RUN.match(text, s).end()
    if j == s:
        return False
    newlines = text.count("\n", s, j)
    if newlines >= 2:
        return True
    if j == len(text):
        return True if final else None
    if not newlines:
        return False
    following = _next_word(text, j, final)
    if following is None:
        return None
    return not following.lstrip(OPENERS)[:1].islower() and bool(_ITEM.match(following))


def marked(text: str, s: int) -> bool:
    """Whether the word that ends at s ends with a sentence mark (closers allowed after it)."""
    core = text[max(0, s - WORD_WINDOW) : s].rstrip(_CLOSERS)
    return bool(core) and core[-1] in MARKS


def _next_word(text: str, j: int, final: bool) -> str | None:
    """The first NEXT_WINDOW characters of the word at j; None when it may go on past the end of text."""
    e = _WORD.match(text, j).end()
    if e == len(text) and e - j < NEXT_WINDOW and not final:
        return None
    return text[j : min(e, j + NEXT_WINDOW)]


def _starts_line(text: str, i: int, line_start_at_0: bool) -> bool:
    """Whether only spaces or tabs lie between the last newline before i (or the text's start) and i."""
    k = i
    while k > 0 and text[k - 1] in " \t":
        k -= 1
    return text[k - 1] == "\n" if k > 0 else line_start_at_0


def candidates(text: str, lo: int, hi: int) -> list[int]:
    """Candidate positions s with lo < s <= hi, in order (each right after a word, followed by whitespace)."""
    found = set()
    for m in _MARK_END.finditer(text, lo, hi + 1):
        if m.end() > lo:
            found.add(m.end())
    found.update(s for s, _ in _line_break_candidates(text, hi, lo))
    return sorted(found)


def _line_break_candidates(text: str, hi: int, lo: int = 0) -> list[tuple[int, bool]]:
    """Candidates lo < s <= hi right after a word, before whitespace that holds a blank line, or a newline
    and a list item; with each, whether it is a blank line (which ends a sentence whatever follows)."""
    found = []
    for m in _LINE_BREAK.finditer(text, lo):
        s = m.start()
        while s > lo and text[s - 1].isspace() and text[s - 1] != "\n":  # (any whitespace: "\xa0" too, as `decide`)
            s -= 1
        if s > hi:
            break
        if s > lo and not text[s - 1].isspace():
            found.append((s, m.group(1) is not None))
    return found


def ends(text: str, n: int, final: bool, line_start_at_0: bool = True) -> list[int]:
    """The candidates s in (0, n] that end a sentence, in order: those of `candidates(text, 0, n)` for which
    `decide` says True, with the end of text final for s < n (the window of a candidate before n is there).

    The same decisions as `decide`, taken in one pass for the candidates after a mark, which are most
    of them: one regex match gives each one's whitespace and next word, so only a lone "." looks at the
    word before it; the other candidates (a line break after a word without a mark) end a sentence at a
    blank line, and go through `decide` before a list item.
    """
    out = []
    marked_at = set()
    size = len(text)
    for m in _mark_windows(text):
        s = m.end()
        if s > n:
            break
        marked_at.add(s)
        f = final or s < n
        dot = m.start()
        if dot < s - WORD_WINDOW:  # the window holds closers only: `decide` reads it as a word without a mark
            if decide(text, s, f, line_start_at_0):
                out.append(s)
            continue
        j, e = m.end(1), m.end(2)  # the whitespace after s is text[s:j], the next word's window text[j:e]
        newlines = text.count("\n", s, j)
        if newlines >= 2:
            out.append(s)
            continue
        if j == size or (e == size and e - j < NEXT_WINDOW and not f):
            if f and j == size:
                out.append(s)
            continue  # undecided (None) counts as no end
        first = text[j]
        if first in OPENERS:
            first = text[j:e].lstrip(OPENERS)[:1]
        if first.islower():
            continue
        if newlines and _ITEM.match(text, j, e):
            out.append(s)
            continue
        if text[dot] != "." or s != dot + 1:
            out.append(s)  # ! ? ... or a mark inside quotes or brackets
            continue
        if dot >= _LONGER_THAN_ANY_ABBREVIATION and text[dot - _LONGER_THAN_ANY_ABBREVIATION : dot].isalpha():
            out.append(s)  # the word ends in more letters than any listed abbreviation holds: `_period_ends` says so
            continue
        lo = s - WORD_WINDOW if s > WORD_WINDOW else 0
        w0 = max(lo - 1, text.rfind(" ", lo, dot), text.rfind("\n", lo, dot), text.rfind("\t", lo, dot),
                 text.rfind("\r", lo, dot)) + 1
        if (dot > w0 and text[dot - 1] in MARKS) or _period_ends(text, w0, dot, first, line_start_at_0):
            out.append(s)
    more = [s for s, blank in _line_break_candidates(text, n)
            if s not in marked_at and (blank or decide(text, s, final or s < n, line_start_at_0))]
    if more:
        out.extend(more)
        out.sort()
    return out


def _mark_windows(text: str) -> Iterable[re.Match]:
    """Every `_MARK_WINDOW` match in text, in order: those of "." and of each other mark the text holds (a match is
    a mark followed by closers, and closers are not marks, so each match is one pattern's)."""
    found = _MARK_WINDOW["."].finditer(text)
    others = [c for c in _NOT_DOT if c in text]  # (a substring search each; none for a character wider than the text's)
    if not others:
        return found
    matches = list(found)
    for c in others:
        matches.extend(_MARK_WINDOW[c].finditer(text))
    matches.sort(key=_START)
    return matches
