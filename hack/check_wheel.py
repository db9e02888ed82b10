"""Checks that a built Trellis wheel holds everything the image needs, before an image is built from it.

    python hack/check_wheel.py build/wheelhouse/trellis-0.1.0-py3-none-any.whl

The folders operators/ and csi/ reach the wheel only through the trellis/operators and trellis/csi
symlinks, the CSI and Talos API stubs only when they were generated before the wheel was built, and
the templates only through package-data: each of those has its own check here. Standard library only.
"""

from __future__ import annotations

import fnmatch
import sys
import zipfile
from pathlib import Path

# (glob over the wheel's file names, what is missing when nothing matches)
REQUIRED = (
    ("trellis/__init__.py", "the trellis package"),
    ("trellis/operators/__init__.py", "trellis.operators (operators/ through the trellis/operators symlink)"),
    ("trellis/operators/network/*.py", "the Network operator"),
    ("trellis/operators/network/ifpicker.py", "the dnsmasq init container's interface picker"),
    ("trellis/operators/baremetalhost/*.py", "the BareMetalHost operator"),
    ("trellis/operators/talosdevice/*.py", "the TalosDevice operator and boot service"),
    ("trellis/csi/__init__.py", "trellis.csi (csi/ through the trellis/csi symlink)"),
    ("trellis/csi/main.py", "the CSI plugin's entry point"),
    ("trellis/csi/_gen/__init__.py", "the generated CSI stubs package (make tools)"),
    ("trellis/csi/_gen/csi_pb2.py", "the generated CSI messages (make tools)"),
    ("trellis/csi/_gen/csi_pb2_grpc.py", "the generated CSI services (make tools)"),
    ("trellis/csi/_gen/pluginregistration_pb2.py", "the generated kubelet registration messages"),
    ("trellis/csi/_gen/pluginregistration_pb2_grpc.py", "the generated kubelet registration service"),
    ("trellis/operators/talosdevice/_gen/__init__.py", "the generated Talos API stubs package (make tools)"),
    ("trellis/operators/talosdevice/_gen/common_pb2.py", "the generated Talos common messages"),
    ("trellis/operators/talosdevice/_gen/machine_pb2.py", "the generated Talos machine messages"),
    ("trellis/operators/talosdevice/_gen/machine_pb2_grpc.py", "the generated Talos MachineService client"),
    ("trellis/**.j2", "the jinja templates (package-data)"),
    ("trellis/operators/network/templates/dnsmasq.conf.j2", "the dnsmasq config template"),
    ("trellis-*.dist-info/entry_points.txt", "the console scripts"),
)
# Nothing of the work tree beyond the packages.
FORBIDDEN = ("*.pem", "*.key", "*id_rsa*", "*/.git/*", ".venv/*", "*/tests/*", "tests/*", "*/__pycache__/*")
CONSOLE_SCRIPTS = (
    "trellis-csi",
    "trellis-crdgen",
    "trellis-registry-operator",
    "trellis-isocdrom-operator",
    "trellis-network-operator",
    "trellis-baremetalhost-operator",
    "trellis-talosdevice-operator",
    "trellis-boot-service",
)


def problems(wheel: Path) -> list[str]:
    """What is missing from or should not be in the wheel (empty when it is fine)."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(
            (archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), ""
        )
    found: list[str] = []
    for pattern, what in REQUIRED:
        if not any(fnmatch.fnmatch(name, pattern) for name in names):
            found.append(f"missing {pattern}: {what}")
    for pattern in FORBIDDEN:
        found += [f"should not be in the wheel: {name}" for name in names if fnmatch.fnmatch(name, pattern)]
    found += [
        f"console script {script} missing" for script in CONSOLE_SCRIPTS if f"{script} =" not in entry_points
    ]
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_wheel.py WHEEL", file=sys.stderr)
        return 2
    found = problems(Path(argv[1]))
    for problem in found:
        print(f"{argv[1]}: {problem}", file=sys.stderr)
    if not found:
        print(f"{argv[1]}: operators, csi, CSI and Talos API stubs, templates and console scripts present")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
