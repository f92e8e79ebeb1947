"""English text that exists offline: Debian packages, each turned into documents (id, text).

Each `Source` names its Debian packages and how to read documents out of the unpacked files. Every
package is from Debian's main archive (free licences; each package's copyright file names its own).
Whole sources are held out for evaluation (split "eval"), so that the quality benchmark measures
text the student never saw, from publishers it never saw. Others (split "val") are kept out of training
for choosing among options (a document map's settings, a training leg) without looking at the held-out
figures: unseen text, as the held-out set is, where a training source's text is text the student has read.
"""

from __future__ import annotations

import gzip
import html
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

Doc = tuple[str, str]  # (document id, text)


@dataclass(frozen=True)
class Source:
    name: str
    packages: tuple[str, ...]
    split: str  # "train", "val" (unseen, for choosing) or "eval" (held out)
    read: Callable[[Path], Iterator[Doc]]  # root of the unpacked packages -> documents
    max_mb: float | None = None  # keep about this many MB of text: an evenly spaced subset of the documents


def _open_text(path: Path) -> str:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    return raw.decode("utf-8", errors="replace")


def tidy(text: str) -> str:
    """Normalise line ends, drop trailing spaces and runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class _TextOfHtml(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd", "table", "title"}
    SKIP = {"script", "style", "head", "nav"}  # nav: a book's table of contents on every page

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    p = _TextOfHtml()
    p.feed(markup)
    p.close()
    text = html.unescape("".join(p.parts))
    return tidy(re.sub(r"\n[ \t]+", "\n", text))


def _files(root: Path, pattern: str) -> list[Path]:
    """Regular files matching pattern, each once: symlinks and further hard links to a file are left out (a
    package that ships one page under several names would otherwise train on it several times)."""
    seen, out = set(), []
    for path in sorted(root.glob(pattern)):
        if path.is_symlink() or not path.is_file():
            continue
        st = path.stat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            out.append(path)
    return out


def each_file(
    *patterns: str, skip: str | None = None, clean: Callable[[str], str] | None = None,
) -> Callable[[Path], Iterator[Doc]]:
    """One document per file matching any of `patterns` (and not the regex `skip`); HTML files become text,
    then `clean` (if given) cuts what every page of a site repeats; a page it leaves empty is dropped."""
    def read(root: Path) -> Iterator[Doc]:
        for pattern in patterns:
            for path in _files(root, pattern):
                doc_id = str(path.relative_to(root))
                if skip and re.search(skip, doc_id):
                    continue
                text = _open_text(path)
                text = html_to_text(text) if ".htm" in path.name else tidy(text)
                yield doc_id, tidy(clean(text)) if clean else text

    return read


class MissingTool(RuntimeError):
    """A program a source's reader runs is not installed (prepare names the source and stops)."""


def man_pages(*patterns: str) -> Callable[[Path], Iterator[Doc]]:
    """One document per roff man page, rendered by `man` (package man-db) unhyphenated and unjustified; `.so`
    stubs (a page that only names another) are left out."""
    def read(root: Path) -> Iterator[Doc]:
        if shutil.which("man") is None or shutil.which("col") is None:
            raise MissingTool("man pages are rendered with `man` and `col` (Debian packages man-db and bsdextrautils):"
                               " install them, or build the other sources with `prepare --only`")
        env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8")
        for pattern in patterns:
            for path in _files(root, pattern):
                roff = _open_text(path)
                if roff.lstrip().startswith(".so ") and len(roff) < 200:
                    continue
                shown = subprocess.run(["man", "--nh", "--nj", "-l", str(path)], capture_output=True, env=env).stdout
                plain = subprocess.run(["col", "-bx"], input=shown, capture_output=True).stdout
                text = re.sub(r"\n[ \t]+", "\n", plain.decode("utf-8", errors="replace"))
                yield str(path.relative_to(root)), tidy(text)

    return read


def _after(marker: str) -> Callable[[str], str]:
    """The text after the first match of the regex `marker`; nothing if it has none (an index page)."""
    def cut(text: str) -> str:
        m = re.search(marker, text)
        return text[m.end():] if m else ""

    return cut


def _bible(root: Path) -> Iterator[Doc]:
    """The King James Bible, one document per book (decoded by the package's own `bible` program)."""
    out = subprocess.run(
        [str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "gen1:1-rev22:21"],
        check=True, capture_output=True, text=True,
    ).stdout
    books: dict[str, list[str]] = {}
    book = None
    for block in re.split(r"\n(?=\S[^\n]* \d+\n)", "\n" + out):
        head, _, body = block.strip("\n").partition("\n")
        book = head.rsplit(" ", 1)[0] if head else book
        books.setdefault(book, []).append(re.sub(r"^ +\d+ ", "", body, flags=re.M))
    for name, chapters in books.items():
        yield f"bible/{name}", tidy("\n".join(chapters))


def _gcide(root: Path, per_doc: int = 40) -> Iterator[Doc]:
    """GCIDE dictionary entries (dictd format), `per_doc` consecutive entries per document."""
    data = gzip.open(root / "usr/share/dictd/gcide.dict.dz").read().decode("utf-8", errors="replace")
    entries = [e for e in re.split(r"\n(?=\S)", data) if len(e) > 40]
    for i in range(0, len(entries), per_doc):
        yield f"gcide/{i // per_doc}", tidy("\n\n".join(entries[i : i + per_doc]))


def _wordnet(root: Path, per_doc: int = 200) -> Iterator[Doc]:
    """WordNet glosses ("word: definition; example"), `per_doc` synsets per document."""
    lines = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (root / f"usr/share/wordnet/data.{pos}").read_text(errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            fields, gloss = line.split("|", 1)
            word = fields.split()[4].replace("_", " ")
            lines.append(f"{word}: {gloss.strip()}")
    for i in range(0, len(lines), per_doc):
        yield f"wordnet/{i // per_doc}", "\n".join(lines[i : i + per_doc])


def _fortunes(root: Path) -> Iterator[Doc]:
    for path in _files(root, "usr/share/games/fortunes/*"):
        if path.suffix in (".dat", ".u8") or "." in path.name:
            continue
        cookies = [tidy(c) for c in path.read_text(errors="replace").split("\n%\n")]
        yield f"fortunes/{path.name}", "\n\n".join(c for c in cookies if c)


def subsample(docs: list[Doc], max_mb: float | None) -> list[Doc]:
    """An evenly spaced subset of docs holding about max_mb MB of text (all of them if None or smaller)."""
    total = sum(len(t) for _, t in docs) / 1e6
    if max_mb is None or total <= max_mb:
        return docs
    step = total / max_mb
    return [d for i, d in enumerate(docs) if int(i / step) != int((i + 1) / step) or i == 0]


LINUX, PY, PG = "usr/share/doc/linux-doc-6.12", "usr/share/doc/python3.11", "usr/share/doc/postgresql-doc-15"
DJANGO = "usr/share/doc/python-django-doc/html"
RUST = "usr/share/doc/rust-doc/html"
RUST_BOOKS = ("book", "reference", "nomicon", "rust-by-example", "edition-guide", "embedded-book", "rustc", "rustdoc")
SOURCES: list[Source] = [
    # training sources
    Source("linux-doc", ("linux-doc-6.12",), "train", each_file(f"{LINUX}/Documentation/**/*.rst.gz")),
    Source("bible-kjv", ("bible-kjv", "bible-kjv-text"), "train", _bible),
    Source("gcide", ("dict-gcide",), "train", _gcide, max_mb=10),
    Source("wordnet", ("wordnet-base",), "train", _wordnet, max_mb=5),
    Source("fortunes", ("fortunes",), "train", _fortunes),
    Source("jargon", ("jargon-text",), "train", each_file("usr/share/doc/jargon-text/jargon.txt.gz")),
    Source("cfi", ("cfi-en",), "train", each_file("usr/share/doc/cfi-en/html/*.htm*")),
    Source("debian-reference", ("debian-reference-en",), "train",
           each_file("usr/share/debian-reference/*.en.html")),
    Source("gnu-standards", ("gnu-standards",), "train", each_file("usr/share/info/[ms]*.info.gz")),
    Source("git-doc", ("git-doc",), "train", each_file("usr/share/doc/git-doc/*.txt")),
    # more technical manuals (session 16): the held-out sets are manuals, the sources above mostly not
    Source("perl-doc", ("perl-doc",), "train", each_file("usr/share/perl/5.*/pod/perl*.pod", skip=r"delta\.pod$")),
    Source("rust-doc", ("rust-doc",), "train",
           each_file(*(f"{RUST}/{book}/**/*.html" for book in RUST_BOOKS), skip=r"/(print|toc|404|SUMMARY)\.html$"),
           max_mb=12),
    Source("apache2-doc", ("apache2-doc",), "train",
           each_file("usr/share/doc/apache2-doc/manual/en/**/*.html")),
    Source("vim-doc", ("vim-runtime",), "train", each_file("usr/share/vim/vim*/doc/*.txt")),
    Source("nodejs-doc", ("nodejs-doc",), "train", each_file("usr/share/doc/nodejs/api/*.md.gz")),
    Source("debian-handbook", ("debian-handbook",), "train",
           each_file("usr/share/doc/debian-handbook/html/en-US/*.html")),
    Source("debian-policy", ("debian-policy", "developers-reference", "maint-guide"), "train",
           each_file("usr/share/doc/debian-policy/*.txt.gz", "usr/share/developers-reference/_sources/*.rst.txt",
                      "usr/share/doc/maint-guide/html/*.en.html")),
    Source("erlang-doc", ("erlang-doc",), "train",
           each_file("usr/share/doc/erlang-doc/**/*.html", skip=r"/wx-|/chunks/"), max_mb=10),
    Source("gnu-info", ("octave-doc", "zsh-doc", "guile-3.0-doc"), "train",
           each_file("usr/share/info/octave.info*.gz", "usr/share/info/zsh.info*.gz",
                      "usr/share/info/guile-3.0/guile.info*.gz")),
    Source("gnuplot-doc", ("gnuplot-doc",), "train", each_file("usr/share/doc/gnuplot/htmldocs/*.html")),
    Source("bind9-doc", ("bind9-doc",), "train", each_file("usr/share/doc/bind9-doc/arm/*.html")),
    Source("docker-doc", ("docker-doc",), "train", each_file("usr/share/doc/docker-doc/**/*.md*")),
    # more manuals and references (session 17; no Python or SQL documentation: the held-out sets are those)
    Source("libreoffice-help", ("libreoffice-help-en-us",), "train",
           each_file("usr/share/libreoffice/help/en-US/text/**/*.html")),
    Source("libvirt-doc", ("libvirt-doc",), "train",
           each_file("usr/share/doc/libvirt-doc/html/**/*.html", skip=r"/html/html/")),  # skip: the C API listing
    Source("postfix-doc", ("postfix-doc",), "train", each_file("usr/share/doc/postfix/html/*.html")),
    Source("maxima-doc", ("maxima-doc",), "train",
           each_file("usr/share/doc/maxima-doc/html/maxima_*.html", skip=r"maxima_(37[78]|singlepage)\.html$")),
    Source("cmake-doc", ("cmake-doc",), "train",
           each_file("usr/share/doc/cmake-data/html/_sources/**/*.rst.txt", skip=r"/_sources/module/")),
    Source("llvm-doc", ("llvm-14-doc", "clang-14-doc"), "train",  # skip: instruction and status tables
           each_file("usr/share/doc/llvm-14-doc/html/_sources/**/*.txt",
                     "usr/share/doc/clang-14/html/_sources/**/*.txt", skip=r"AMDGPU|ClangFormattedStatus")),
    Source("grass-doc", ("grass-doc",), "train",
           each_file("usr/share/doc/grass-doc/html/*.html",
                     skip=r"/(index|full_index|keywords|topics?_.*|.*_graphical|manual_gallery|raster|vector|imagery"
                          r"|database|display|general|miscellaneous|postscript|raster3d|temporal)\.html$")),
    Source("dpdk-doc", ("dpdk-doc",), "train",
           each_file("usr/share/doc/dpdk/guides/_sources/**/*.rst.txt", skip=r"/rel_notes/")),
    Source("gcl-doc", ("gcl-doc",), "train", each_file("usr/share/info/gcl*.info*.gz")),
    Source("gimp-help", ("gimp-help-en",), "train", each_file("usr/share/gimp/2.0/help/en/*.html")),
    Source("exim4-doc", ("exim4-doc-html",), "train",
           each_file("usr/share/doc/exim4-doc-html/spec_html/*.html", skip=r"index\.html$")),
    Source("ghc-doc", ("ghc-doc",), "train", each_file("usr/share/doc/ghc-doc/html/users_guide/_sources/**/*.rst.txt")),
    Source("man-pages", ("manpages", "manpages-dev"), "train", man_pages("usr/share/man/man*/*.gz")),
    Source("racket-doc", ("racket-doc",), "train",
           each_file("usr/share/doc/racket/**/*.html", skip=r"/(db|deinprogramm)/", clean=_after(r"← prev.*?next →")),
           max_mb=8),  # clean: the page's text starts after its navigation bar; index pages have none
    Source("lilypond-doc", ("lilypond-doc-html",), "train",
           each_file(*(f"usr/share/doc/lilypond/html/Documentation/{m}/*.html" for m in
                       ("notation", "learning", "usage", "extending", "essay", "contributor", "music-glossary")),
                     clean=lambda text: text.split("This page is for LilyPond")[0])),  # then the site's sidebar
    # validation: technical manuals from further publishers, never trained on, for choosing settings
    Source("django-doc", ("python-django-doc",), "val",  # clean: the page between its navigation bar and sidebar
           each_file(f"{DJANGO}/**/*.html", skip=r"/_modules/|genindex|py-modindex|search\.html",
                     clean=lambda text: re.split(r"\n(?:Table of Contents|Previous topic)\n",
                                                 _after(r"next »")(text))[0])),
    Source("sqlite-doc", ("sqlite3-doc",), "val",
           each_file("usr/share/doc/sqlite3/*.html", clean=_after(r"Search Changelog"))),  # after the site's menu
    Source("sphinx-doc", ("sphinx-doc",), "val", each_file("usr/share/doc/sphinx-doc/html/_sources/**/*.rst.txt")),
    Source("kicad-doc", ("kicad-doc-en",), "val", each_file("usr/share/doc/kicad/help/en/*.html")),
    # held out: technical manuals from publishers the student never reads in training
    Source("python-doc", ("python3.11-doc",), "eval", each_file(f"{PY}/html/_sources/**/*.rst.txt")),
    Source("postgresql-doc", ("postgresql-doc-15",), "eval", each_file(f"{PG}/html/*.html")),
]
