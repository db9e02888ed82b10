"""Python gRPC stubs of Talos' machine API, generated at build time from Talos' own protos, never committed.

The protos come from the Go module ``github.com/siderolabs/talos`` at the version of
``github.com/siderolabs/talos/pkg/machinery`` that hack/talosvalidate pins (the machinery module
holds only the generated Go code; the ``.proto`` sources live in the root module, released in
lockstep). ``make tools`` copies ``api/machine/machine.proto`` and ``api/common/common.proto`` into
``build/proto/talos/`` (hack/module-file.sh) and runs
``python -m trellis.operators.talosdevice.stubs build/proto/talos``, which writes
``operators/talosdevice/_gen/``. If the package is imported before that, `load` generates them
from ``TRELLIS_TALOS_PROTO_DIR`` or the repository's ``build/proto/talos/`` (grpcio-tools needed).
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
PROTO_DIR = Path(__file__).resolve().parents[2] / "build" / "proto" / "talos"
PROTOS = ("common", "machine")
PACKAGE_PATH = "trellis/operators/talosdevice/_gen"
_lock = threading.Lock()

# common.proto types Metadata.status as google.rpc.Status, which grpcio-tools does not ship (it
# lives in googleapis, a dependency the operator would carry for one field it never reads). A
# message field and a bytes field of the same number are the same on the wire (length-delimited),
# so that field becomes bytes and the import goes: every message still parses and serialises
# exactly as Talos' own, only Metadata.status is left undecoded. Nothing else is changed.
_RPC_STATUS_IMPORT = re.compile(r'^\s*import\s+"google/rpc/status\.proto"\s*;\s*$', re.M)
_RPC_STATUS_FIELD = re.compile(r"\bgoogle\.rpc\.Status(\s+\w+\s*=\s*\d+\s*;)")
# Imports between the two protos point into the package so the generated modules import each
# other as trellis.operators.talosdevice._gen.* rather than as top-level modules.
_LOCAL_IMPORT = re.compile(r'^(\s*import\s+")(common|machine)/\2\.proto(";)', re.M)


def prepare(name: str, text: str) -> str:
    """The proto as compiled: see the comments above for the only two rewrites."""
    if name == "common":
        text = _RPC_STATUS_FIELD.sub(r"bytes\1", _RPC_STATUS_IMPORT.sub("", text))
    text = _LOCAL_IMPORT.sub(rf"\g<1>{PACKAGE_PATH}/\g<2>.proto\g<3>", text)
    if "google.rpc" in text or "google/rpc" in text:
        raise RuntimeError(f"{name}.proto uses google.rpc in a form the stub generator cannot strip")
    return text


def generate(proto_dir: Path, out: Path = GEN_DIR) -> None:
    """Write ``{common,machine}_pb2.py`` and ``machine_pb2_grpc.py`` into ``out``.

    ``proto_dir`` holds ``common.proto`` and ``machine.proto``. The protos' own ``package`` names
    are kept: they are part of the gRPC method paths (``/machine.MachineService/Version``).
    """
    from grpc_tools import protoc  # build-time dependency only

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / PACKAGE_PATH
        tree.mkdir(parents=True)
        for name in PROTOS:
            (tree / f"{name}.proto").write_text(prepare(name, (proto_dir / f"{name}.proto").read_text()))
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
                *(f"{PACKAGE_PATH}/{name}.proto" for name in PROTOS),
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on the Talos protos in {proto_dir} (exit {status})")
        out.mkdir(parents=True, exist_ok=True)
        for module in sorted((staging / PACKAGE_PATH).glob("*.py")):
            shutil.copyfile(module, out / module.name)
        (out / "__init__.py").write_text('"""Generated from build/proto/talos/ at build time."""\n')


def _proto_source() -> Path | None:
    env = os.environ.get("TRELLIS_TALOS_PROTO_DIR")
    for candidate in (Path(env) if env else None, PROTO_DIR):
        if candidate is not None and all((candidate / f"{n}.proto").is_file() for n in PROTOS):
            return candidate
    return None


def load() -> tuple[ModuleType, ModuleType]:
    """``(machine_pb2, machine_pb2_grpc)``, generating them first if they are missing."""
    base = "trellis.operators.talosdevice._gen"
    modules = (f"{base}.machine_pb2", f"{base}.machine_pb2_grpc")
    with _lock:
        try:
            return importlib.import_module(modules[0]), importlib.import_module(modules[1])
        except ImportError:
            source = _proto_source()
            if source is None:
                raise ImportError(
                    "Talos API stubs are missing and no Talos protos were found: run `make tools` "
                    "(or `python -m trellis.operators.talosdevice.stubs DIR` with common.proto and "
                    "machine.proto, or set TRELLIS_TALOS_PROTO_DIR)"
                ) from None
            generate(source)
            importlib.invalidate_caches()
            for module in (*reversed(modules), f"{base}.common_pb2", base):
                sys.modules.pop(module, None)
            return importlib.import_module(modules[0]), importlib.import_module(modules[1])


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else _proto_source()
    if source is None or not all((source / f"{n}.proto").is_file() for n in PROTOS):
        raise SystemExit("usage: python -m trellis.operators.talosdevice.stubs DIR  (see the docstring)")
    generate(source)
    print(f"Talos machine API stubs generated from {source} into {GEN_DIR}")


if __name__ == "__main__":
    main()
