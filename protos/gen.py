"""Regenerate the committed protobuf/gRPC Python code: `python -m protos.gen [OUT_ROOT]`.

Writes `protos/gpufleet/v1/fleet_pb2.py`, `fleet_pb2.pyi` and `fleet_pb2_grpc.py` under OUT_ROOT
(default: the repository root). A test regenerates into a temp dir and diffs against the
committed files, so the committed code always matches the .proto.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_FILES = ("protos/gpufleet/v1/fleet.proto",)
REPO_ROOT = Path(__file__).resolve().parent.parent


def generate(out_root: Path) -> list[Path]:
    """Run protoc (grpc_tools) for every proto; return the files written."""
    from grpc_tools import protoc  # dev dependency: imported only when generating

    out_root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for proto in PROTO_FILES:
        args = [
            "grpc_tools.protoc",
            f"-I{REPO_ROOT}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            str(REPO_ROOT / proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed for {proto}")
        stem = proto.removesuffix(".proto")
        suffixes = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
        written += [out_root / f"{stem}{suffix}" for suffix in suffixes]
    return written


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT
    for path in generate(out):
        print(path.relative_to(out))


if __name__ == "__main__":
    main()
