"""The nvme transport's attach/detach logic against a fake sysfs tree and a stand-in nvme-cli.

No NVMe/TCP target can run here (no nvme-tcp/nvmet kernel modules), so ``nvme`` on PATH is a
small script that records its arguments and creates or removes the sysfs entries the kernel
would; the transport itself is the production code.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from trellis.csi.params import parse_context
from trellis.csi.transport import AttachError
from trellis.csi.transport.nvme import NvmeTransport

VOLUME = "csi-0123456789abcdef0123456789ab"
NQN = f"nqn.2000-02.com.mikrotik:{VOLUME}"
FAKE_NVME = r"""#!/bin/sh
# Stand-in for nvme-cli: logs its arguments; `connect` creates the subsystem, `disconnect` removes it.
echo "$*" >> "$FAKE_ROOT/calls"
verb=$1; shift
nqn=""
for arg in "$@"; do case "$arg" in --nqn=*) nqn=${arg#--nqn=};; esac; done
case "$verb" in
  connect)
    [ -f "$FAKE_ROOT/fail" ] && { echo "Failed to write to /dev/nvme-fabrics: Connection refused" >&2; \
      exit 1; }
    [ -f "$FAKE_ROOT/already" ] && { echo "already connected" >&2; exit 1; }
    [ -f "$FAKE_ROOT/no-namespace" ] && { mkdir -p "$FAKE_SYS/class/nvme-subsystem/nvme-subsys7"; \
      echo "$nqn" > "$FAKE_SYS/class/nvme-subsystem/nvme-subsys7/subsysnqn"; exit 0; }
    sub="$FAKE_SYS/class/nvme-subsystem/nvme-subsys7"
    mkdir -p "$sub/nvme7n1" "$sub/nvme7" "$FAKE_SYS/class/block/nvme7n1"
    echo "$nqn" > "$sub/subsysnqn"; echo 1 > "$FAKE_SYS/class/block/nvme7n1/nsid"
    touch "$FAKE_DEV/nvme7n1"
    ;;
  disconnect)
    rm -rf "$FAKE_SYS/class/nvme-subsystem/nvme-subsys7" "$FAKE_DEV/nvme7n1"
    ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    bindir, sysfs, dev = tmp_path / "bin", tmp_path / "sys", tmp_path / "dev"
    for d in (bindir, sysfs / "module" / "nvme_tcp", dev):
        d.mkdir(parents=True)
    script = bindir / "nvme"
    script.write_text(FAKE_NVME)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ROOT", str(tmp_path))
    monkeypatch.setenv("FAKE_SYS", str(sysfs))
    monkeypatch.setenv("FAKE_DEV", str(dev))
    yield tmp_path


def transport(root: Path, timeout: float = 2.0) -> NvmeTransport:
    return NvmeTransport(
        root / "sys", root / "dev", device_timeout=timeout, host_nqn="nqn.2014-08.org.nvmexpress:h"
    )


def ctx() -> object:
    return parse_context(
        {
            "nqn": NQN,
            "nvmeAddress": "10.0.1.5",
            "nvmePort": "4420",
            "filePath": f"storage-pool/csi/{VOLUME}.img",
            "ctrlLossTmo": "600",
            "reconnectDelay": "5",
            "keepAliveTmo": "0",
        }
    )


def calls(root: Path) -> list[str]:
    path = root / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_attach_connects_once_and_finds_the_namespace(fake: Path) -> None:
    t = transport(fake)
    assert t.attach(VOLUME, ctx()) == str(fake / "dev" / "nvme7n1")  # type: ignore[arg-type]
    (connect,) = calls(fake)
    assert connect.split() == [
        "connect", "--transport=tcp", "--traddr=10.0.1.5", "--trsvcid=4420", f"--nqn={NQN}",
        "--ctrl-loss-tmo=600", "--reconnect-delay=5", "--hostnqn=nqn.2014-08.org.nvmexpress:h",
    ]  # fmt: skip
    assert t.attach(VOLUME, ctx()) == str(fake / "dev" / "nvme7n1")  # type: ignore[arg-type]
    assert len(calls(fake)) == 1, "an attached volume is found in sysfs, not connected again"
    assert t.device(VOLUME) == str(fake / "dev" / "nvme7n1")
    t.detach(VOLUME)
    assert calls(fake)[-1] == f"disconnect --nqn={NQN}"
    assert t.device(VOLUME) is None
    t.detach(VOLUME)  # nothing attached: no call, no error
    assert len(calls(fake)) == 2


def test_already_connected_counts_as_success(fake: Path) -> None:
    t = transport(fake)
    t.attach(VOLUME, ctx())  # type: ignore[arg-type]
    (fake / "dev" / "nvme7n1").unlink()  # the /dev node is late (udev); sysfs says connected
    (fake / "already").touch()

    def udev() -> None:
        (fake / "dev" / "nvme7n1").touch()

    threading.Timer(0.3, udev).start()
    assert t.attach(VOLUME, ctx()) == str(fake / "dev" / "nvme7n1")  # type: ignore[arg-type]


def test_connected_without_namespace_is_reconnected(fake: Path) -> None:
    (fake / "no-namespace").touch()
    t = transport(fake, timeout=0.5)
    with pytest.raises(AttachError, match="no block device appeared"):
        t.attach(VOLUME, ctx())  # type: ignore[arg-type]
    (fake / "no-namespace").unlink()
    assert t.attach(VOLUME, ctx()) == str(fake / "dev" / "nvme7n1")  # type: ignore[arg-type]
    verbs = [c.split()[0] for c in calls(fake)]
    assert verbs == ["connect", "disconnect", "connect"]


def test_connect_failure_is_an_attach_error(fake: Path) -> None:
    (fake / "fail").touch()
    with pytest.raises(AttachError, match="Connection refused"):
        transport(fake).attach(VOLUME, ctx())  # type: ignore[arg-type]
