"""What streamret takes as a text (streamret/textcheck.py): non-empty UTF-8 without NUL bytes, checked
across pieces cut anywhere, with the byte offset of the first bad byte."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamret.textcheck import InvalidText, Utf8Check, check_bytes, check_file

TEXT = "naïve café — 日本語 😀 end.".encode()


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_valid_text_cut_anywhere_passes(cut):
    check = Utf8Check("t")
    check.feed(TEXT[:cut])
    check.feed(TEXT[cut:])
    check.finish()
    assert check.offset == len(TEXT)


@pytest.mark.parametrize("cut", range(1, 12))
def test_the_offset_of_a_bad_byte_does_not_depend_on_the_cuts(cut):
    data = "ab é".encode() + b"\xff" + b" rest"  # 0xff at offset 5
    check = Utf8Check("doc.txt")
    with pytest.raises(InvalidText, match=r"doc.txt is not UTF-8 text: byte 0xff at offset 5 \(invalid start byte\)"):
        check.feed(data[:cut])
        check.feed(data[cut:])
        check.finish()


def test_empty_nul_and_unfinished_texts_are_refused_by_name(tmp_path):
    with pytest.raises(InvalidText, match="^x is empty: nothing to embed$"):
        check_bytes(b"", "x")
    with pytest.raises(InvalidText, match="x is not text: a NUL byte at offset 3"):
        check_bytes(b"abc\x00\xff", "x")  # the NUL comes first
    with pytest.raises(InvalidText, match="byte 0xff at offset 1"):
        check_bytes(b"a\xff\x00", "x")  # the bad byte comes first
    with pytest.raises(InvalidText, match=r"byte 0xe2 at offset 2 \(an unfinished character at the end\)"):
        check_bytes(b"ok\xe2\x82", "x")
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("plain words".encode("utf-16-le"))  # valid UTF-8 byte by byte, but not text
    with pytest.raises(InvalidText, match="utf16.txt is not text: a NUL byte at offset 1"):
        check_file(utf16)
    big = tmp_path / "big.txt"
    big.write_bytes(TEXT * 1000 + b"\xc3(")  # 7-byte blocks: pieces end inside characters
    with pytest.raises(InvalidText, match=f"byte 0xc3 at offset {len(TEXT) * 1000} "):
        check_file(big, block_bytes=7)
    assert check_bytes(TEXT, "x") == TEXT.decode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\x00", b"\xff", b"\xc3", b"\xa9", b"\xe2\x82\xac", "é".encode(), b" "]),
                max_size=12).map(b"".join))
def test_check_bytes_decodes_once_and_refuses_as_the_piecewise_check(data):
    """check_bytes takes a fast path for good texts: what it returns or refuses with is what checking the bytes
    with Utf8Check (the piecewise check: the first of empty, a bad byte, a NUL, with its offset) says."""
    check = Utf8Check("x")
    try:
        check.feed(data)
        check.finish()
        want: str | InvalidText = data.decode("utf-8")
    except InvalidText as e:
        want = e
    if isinstance(want, str):
        assert check_bytes(data, "x") == want
    else:
        with pytest.raises(InvalidText) as got:
            check_bytes(data, "x")
        assert str(got.value) == str(want)
