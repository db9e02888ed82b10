"""iPXE scripts and dnsmasq snippets (Jinja2) and the checks on values placed into them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.talos import check_golden
from trellis.operators.talosdevice.ipxe import (
    AssetLayout,
    DnsmasqSnippet,
    TalosBoot,
    UnsafeValue,
    config_url,
    dnsmasq_snippet,
    entry_script,
    exit_script,
    talos_arch,
    talos_script,
)

PUBLIC = "http://10.0.0.2:8080"


def boot(**overrides: object) -> TalosBoot:
    assets = AssetLayout(f"{PUBLIC}/assets")
    fields: dict[str, object] = {
        "namespace": "rack",
        "name": "cp-1",
        "cluster": "lab",
        "role": "controlplane",
        "mac": "52:54:00:aa:bb:01",
        "kernel_url": assets.kernel("v1.12.0", "amd64"),
        "initramfs_url": assets.initramfs("v1.12.0", "amd64"),
        "config_url": config_url(PUBLIC, "52:54:00:aa:bb:01", "tok3n"),
        "console_args": ("console=ttyS0,115200",),
    }
    fields.update(overrides)
    return TalosBoot(**fields)  # type: ignore[arg-type]


def test_golden_talos_script() -> None:
    check_golden("talos.ipxe", talos_script(boot()))


def test_golden_wipe_script() -> None:
    check_golden("talos-wipe.ipxe", talos_script(boot(wipe=True)))


def test_script_has_required_args_and_config_url() -> None:
    script = talos_script(boot())
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    for arg in ("talos.platform=metal", "slab_nomerge", "pti=on"):
        assert f" {arg}" in kernel
    assert "talos.config=http://10.0.0.2:8080/config?mac=52:54:00:aa:bb:01&token=tok3n&uuid=${uuid}" in kernel
    assert "talos.experimental.wipe" not in script
    assert "initrd --name initramfs.xz http://10.0.0.2:8080/assets/v1.12.0/initramfs-amd64.xz" in script
    assert " initrd=initramfs.xz " in script


def test_exit_script_and_entry_script() -> None:
    check_golden("exit.ipxe", exit_script("Pending", "52:54:00:aa:bb:01 is waiting for approval"))
    check_golden("entry.ipxe", entry_script(PUBLIC + "/"))


def test_exit_script_neutralises_text() -> None:
    script = exit_script("x", "bad\nkernel http://evil ${x} || shell")
    assert script.count("\n") == 6
    assert "${" not in script and "||" not in script.replace("|| ", "")


@pytest.mark.parametrize(
    "extra",
    [("a b",), ("x\nshell",), ("${net0/ip}",), ("a||b",), ("quote'",)],
)
def test_unsafe_kernel_args_are_refused(extra: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeValue):
        talos_script(boot(extra_args=extra))


def test_unsafe_urls_are_refused() -> None:
    with pytest.raises(UnsafeValue):
        AssetLayout("http://x/${evil}").kernel("v1.12.0", "amd64")
    with pytest.raises(UnsafeValue):
        talos_script(boot(kernel_url="http://x/a b"))
    with pytest.raises(UnsafeValue):
        AssetLayout("http://x").kernel("v1.12.0 ; shell", "amd64")


def test_flat_layout_for_a_cluster_assets_url() -> None:
    layout = AssetLayout("http://10.0.0.2:8080/assets/v1.12.0/", layout="flat")
    assert layout.kernel("v1.12.0", "amd64") == "http://10.0.0.2:8080/assets/v1.12.0/vmlinuz-amd64"
    assert layout.initramfs("v1.12.0", "arm64") == "http://10.0.0.2:8080/assets/v1.12.0/initramfs-arm64.xz"


def test_factory_layout() -> None:
    layout = AssetLayout("https://factory.talos.dev", layout="factory")
    assert (
        layout.kernel("v1.12.0", "arm64", "abc123")
        == "https://factory.talos.dev/image/abc123/v1.12.0/kernel-arm64"
    )
    assert layout.initramfs("v1.12.0", "amd64", "abc123").endswith("/abc123/v1.12.0/initramfs-amd64.xz")
    with pytest.raises(UnsafeValue, match="schematic"):
        layout.kernel("v1.12.0", "amd64")


@pytest.mark.parametrize(
    ("ipxe", "talos"),
    [("x86_64", "amd64"), ("i386", "amd64"), ("arm64", "arm64"), (None, "amd64"), ("mips", "amd64")],
)
def test_arch_mapping(ipxe: str | None, talos: str) -> None:
    assert talos_arch(ipxe) == talos


def _dnsmasq_test(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(binary).exists():
        pytest.skip("dnsmasq is not installed (hack/install-deps.sh installs dnsmasq-base)")
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(text)
    return subprocess.run(
        [binary, "--test", f"--conf-file={conf}"], capture_output=True, text=True, check=False, timeout=30
    )


def test_dnsmasq_proxy_snippet_is_accepted_by_dnsmasq(tmp_path: Path) -> None:
    text = dnsmasq_snippet(DnsmasqSnippet(PUBLIC, mode="proxy", network="10.0.0.0", interface="br-lab"))
    check_golden("dnsmasq-proxy.conf", text)
    proc = _dnsmasq_test(tmp_path, text)
    assert proc.returncode == 0 and "syntax check OK" in (proc.stdout + proc.stderr), proc.stderr


def test_dnsmasq_server_snippet_is_accepted_by_dnsmasq(tmp_path: Path) -> None:
    text = dnsmasq_snippet(
        DnsmasqSnippet(
            PUBLIC,
            mode="server",
            range_start="10.0.0.100",
            range_end="10.0.0.199",
            tftp_server="10.0.0.2",
            http_boot_url=f"{PUBLIC}/assets/ipxe/ipxe.efi",
        )
    )
    check_golden("dnsmasq-server.conf", text)
    lines = text.splitlines()
    first_boot = next(line for line in lines if line.startswith("dhcp-boot="))
    assert first_boot == f"dhcp-boot=tag:ipxe,{PUBLIC}/boot.ipxe", "iPXE clients must match first"
    proc = _dnsmasq_test(tmp_path, text)
    assert proc.returncode == 0, proc.stderr


def test_dnsmasq_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        dnsmasq_snippet(DnsmasqSnippet(PUBLIC, mode="proxy", network="10.0.0.0\ndhcp-script=/bin/sh"))
    with pytest.raises(UnsafeValue):
        dnsmasq_snippet(DnsmasqSnippet(PUBLIC, mode="server"))
    with pytest.raises(UnsafeValue):
        dnsmasq_snippet(DnsmasqSnippet(PUBLIC, mode="proxy", network="10.0.0.0", interface="eth0\nport=53"))
