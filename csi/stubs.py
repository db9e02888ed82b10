"""The protobuf/gRPC stubs of the driver, generated at build time and never committed.

Two protos: the CSI spec's ``csi.proto`` and kubelet's plugin registration API
(``pluginregistration/v1/api.proto`` of the ``k8s.io/kubelet`` module, saved as
``pluginregistration.proto``). ``make tools`` (and so ``make test`` / ``make up``) runs
``python -m trellis.csi.stubs build/proto/<name>.proto``, which writes ``csi/_gen/``. If the package
is imported before that, `load` / `load_registration` generate them on the fly from the environment
variable or the repository's ``build/proto/`` and fail with a clear message when neither exists.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

GEN_DIR = Path(__file__).resolve().parent / "_gen"
PROTO_DIR = Path(__file__).resolve().parents[1] / "build" / "proto"
REPO_PROTO = PROTO_DIR / "csi.proto"
# name -> environment variable that may point at its proto
PROTOS = {"csi": "TRELLIS_CSI_PROTO", "pluginregistration": "TRELLIS_PLUGINREGISTRATION_PROTO"}
_lock = threading.Lock()

# Older k8s.io/kubelet releases (v0.29, for one) import gogo.proto and set gogoproto options in
# api.proto; the pinned one has none. Those options only steer Go code generation (marshalers,
# stringers, getters), never the wire format, so they are stripped rather than provided: providing
# them would mean fetching gogo.proto from another Go module and shipping a generated gogo_pb2 that
# the runtime imports for nothing. Any gogoproto left after stripping fails generation loudly.
_GOGO_IMPORT = re.compile(r'^\s*import\s+"github\.com/gogo/protobuf/gogoproto/gogo\.proto"\s*;\s*$', re.M)
_GOGO_FILE_OPTION = re.compile(r"^\s*option\s+\(gogoproto\.[a-z_]+\)\s*=\s*[^;]*;\s*$", re.M)
_GOGO_FIELD_OPTIONS = re.compile(r"\s*\[\s*\(gogoproto\.[a-z_]+\)\s*=\s*[^\]]*\]")


def strip_gogoproto(text: str) -> str:
    text = _GOGO_FIELD_OPTIONS.sub("", _GOGO_FILE_OPTION.sub("", _GOGO_IMPORT.sub("", text)))
    if "gogoproto" in text:
        raise RuntimeError("the proto uses gogoproto in a form the stub generator cannot strip")
    return text


def generate(proto: Path, out: Path = GEN_DIR, name: str | None = None) -> None:
    """Write ``<name>_pb2.py`` and ``<name>_pb2_grpc.py`` into ``out`` as ``trellis.csi._gen``.

    ``name`` defaults to the proto's file stem. The proto is compiled as
    ``trellis/csi/_gen/<name>.proto`` inside a scratch tree so the generated gRPC module imports its
    messages as ``trellis.csi._gen.<name>_pb2`` instead of a top-level module. The proto's own
    ``package`` is kept: it is part of the gRPC method paths the peers call.
    """
    from grpc_tools import protoc  # build-time dependency only

    name = name or proto.stem
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "trellis" / "csi" / "_gen"
        tree.mkdir(parents=True)
        (tree / f"{name}.proto").write_text(strip_gogoproto(proto.read_text()))
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
                f"trellis/csi/_gen/{name}.proto",
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {proto} (exit {status})")
        out.mkdir(parents=True, exist_ok=True)
        for module in (f"{name}_pb2.py", f"{name}_pb2_grpc.py"):
            shutil.copyfile(staging / "trellis" / "csi" / "_gen" / module, out / module)
        (out / "__init__.py").write_text('"""Generated from build/proto/ at build time; not committed."""\n')


def _proto_source(name: str) -> Path | None:
    env = os.environ.get(PROTOS[name])
    for candidate in (Path(env) if env else None, PROTO_DIR / f"{name}.proto"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _load(name: str) -> tuple[ModuleType, ModuleType]:
    modules = (f"trellis.csi._gen.{name}_pb2", f"trellis.csi._gen.{name}_pb2_grpc")
    with _lock:
        try:
            return importlib.import_module(modules[0]), importlib.import_module(modules[1])
        except ImportError:
            proto = _proto_source(name)
            if proto is None:
                raise ImportError(
                    f"{name} stubs are missing and no {name}.proto was found: run `make tools` "
                    f"(or `python -m trellis.csi.stubs PATH/TO/{name}.proto`, or set {PROTOS[name]})"
                ) from None
            generate(proto, name=name)
            importlib.invalidate_caches()
            for module in (*reversed(modules), "trellis.csi._gen"):
                sys.modules.pop(module, None)
            return importlib.import_module(modules[0]), importlib.import_module(modules[1])


def load() -> tuple[ModuleType, ModuleType]:
    """``(csi_pb2, csi_pb2_grpc)``, generating them first if they are missing."""
    return _load("csi")


def load_registration() -> tuple[ModuleType, ModuleType]:
    """``(pluginregistration_pb2, pluginregistration_pb2_grpc)``: kubelet's plugin registration API."""
    return _load("pluginregistration")


def main() -> None:
    protos = [Path(arg) for arg in sys.argv[1:]] or [p for p in map(_proto_source, PROTOS) if p]
    if not protos:
        raise SystemExit("usage: python -m trellis.csi.stubs PATH/TO/{csi,pluginregistration}.proto ...")
    for proto in protos:
        if proto.stem not in PROTOS or not proto.is_file():
            raise SystemExit(f"{proto}: expected an existing file named one of {', '.join(PROTOS)} + .proto")
        generate(proto)
        print(f"{proto.stem} stubs generated from {proto} into {GEN_DIR}")


if __name__ == "__main__":
    main()
