"""Generate the Python gRPC code for proto/streamret/v1/streamret.proto into streamret/service/proto_gen/.

    python scripts/gen_proto.py            # rewrite the committed code
    python scripts/gen_proto.py --out DIR  # write elsewhere (tests/test_proto_drift.py compares the two)

protoc names modules after the .proto path (`streamret/v1/streamret_pb2.py`, imported as `streamret.v1`),
which would clash with our own `streamret` package. So the files are generated into a temporary folder,
moved flat into proto_gen/, and two lines are rewritten, both deterministically:

- `_pb2_grpc` imports its `_pb2` relatively (`from . import streamret_pb2`), inside the package;
- `GRPC_GENERATED_VERSION` names the series floor (1.84.x -> '1.84.0'): patch releases of one grpcio-tools
  series generate the same code, and the stubs refuse to import under a grpcio older than this version
  (the GPU machine runs grpcio 1.84.0).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO_FILE = "streamret/v1/streamret.proto"
DEFAULT_OUT = ROOT / "streamret" / "service" / "proto_gen"
GENERATED = ("streamret_pb2.py", "streamret_pb2.pyi", "streamret_pb2_grpc.py")


def _fix_grpc_module(text: str) -> str:
    absolute = "from streamret.v1 import streamret_pb2 as streamret_dot_v1_dot_streamret__pb2"
    if absolute not in text:
        raise RuntimeError(f"generated _pb2_grpc no longer contains {absolute!r}; update scripts/gen_proto.py")
    text = text.replace(absolute, "from . import streamret_pb2 as streamret_dot_v1_dot_streamret__pb2")
    version = re.search(r"^GRPC_GENERATED_VERSION = '(\d+)\.(\d+)\.\d+'$", text, flags=re.M)
    if version is None:
        raise RuntimeError("generated _pb2_grpc has no GRPC_GENERATED_VERSION line; update scripts/gen_proto.py")
    floor = f"GRPC_GENERATED_VERSION = '{version[1]}.{version[2]}.0'"
    return text[: version.start()] + floor + text[version.end() :]


def generate(out: Path) -> list[Path]:
    """Write the generated modules into `out` (created if missing); return their paths."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", str(PROTO_ROOT / PROTO_FILE)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_ROOT / PROTO_FILE}")
        written = []
        for name in GENERATED:
            text = (Path(tmp) / "streamret" / "v1" / name).read_text()
            if name.endswith("_grpc.py"):
                text = _fix_grpc_module(text)
            (out / name).write_text(text)
            written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
