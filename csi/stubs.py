"""The CSI protobuf/gRPC stubs, generated at build time from the spec's ``csi.proto``.

They are never committed: ``make tools`` (and so ``make test`` / ``make up``) runs
``python -m trellis.csi.stubs build/proto/csi.proto``, which writes ``csi/_gen/``. If the package is
imported before that, `load` generates them on the fly from ``TRELLIS_CSI_PROTO`` or the
repository's ``build/proto/csi.proto`` and fails with a clear message when neither exists.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

GEN_DIR = Path(__file__).resolve().parent / "_gen"
REPO_PROTO = Path(__file__).resolve().parents[1] / "build" / "proto" / "csi.proto"
_lock = threading.Lock()


def generate(proto: Path, out: Path = GEN_DIR) -> None:
    """Write ``csi_pb2.py`` and ``csi_pb2_grpc.py`` into ``out`` as the package ``trellis.csi._gen``.

    The proto is compiled as ``trellis/csi/_gen/csi.proto`` inside a scratch tree so the generated gRPC
    module imports its messages as ``trellis.csi._gen.csi_pb2`` instead of a top-level ``csi_pb2``.
    """
    from grpc_tools import protoc  # build-time dependency only

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "trellis" / "csi" / "_gen"
        tree.mkdir(parents=True)
        shutil.copyfile(proto, tree / "csi.proto")
        staging = Path(tmp) / "out"
        staging.mkdir()
        include = Path(protoc.__file__).resolve().parent / "_proto"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{tmp}",
                f"-I{include}",
                f"--python_out={staging}",
                f"--grpc_python_out={staging}",
                "trellis/csi/_gen/csi.proto",
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {proto} (exit {status})")
        out.mkdir(parents=True, exist_ok=True)
        for name in ("csi_pb2.py", "csi_pb2_grpc.py"):
            shutil.copyfile(staging / "trellis" / "csi" / "_gen" / name, out / name)
        (out / "__init__.py").write_text('"""Generated from csi.proto at build time; not committed."""\n')


def _proto_source() -> Path | None:
    env = os.environ.get("TRELLIS_CSI_PROTO")
    for candidate in (Path(env) if env else None, REPO_PROTO):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def load() -> tuple[ModuleType, ModuleType]:
    """``(csi_pb2, csi_pb2_grpc)``, generating them first if they are missing."""
    with _lock:
        try:
            return importlib.import_module("trellis.csi._gen.csi_pb2"), importlib.import_module(
                "trellis.csi._gen.csi_pb2_grpc"
            )
        except ImportError:
            proto = _proto_source()
            if proto is None:
                raise ImportError(
                    "CSI stubs are missing and no csi.proto was found: run `make tools` "
                    "(or `python -m trellis.csi.stubs PATH/TO/csi.proto`, or set TRELLIS_CSI_PROTO)"
                ) from None
            generate(proto)
            importlib.invalidate_caches()
            for name in ("trellis.csi._gen.csi_pb2_grpc", "trellis.csi._gen.csi_pb2", "trellis.csi._gen"):
                sys.modules.pop(name, None)
            return importlib.import_module("trellis.csi._gen.csi_pb2"), importlib.import_module(
                "trellis.csi._gen.csi_pb2_grpc"
            )


def main() -> None:
    proto = Path(sys.argv[1]) if len(sys.argv) > 1 else _proto_source()
    if proto is None or not proto.is_file():
        raise SystemExit("usage: python -m trellis.csi.stubs PATH/TO/csi.proto")
    generate(proto)
    print(f"CSI stubs generated from {proto} into {GEN_DIR}")


if __name__ == "__main__":
    main()
