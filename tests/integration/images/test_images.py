"""The container images `make image` builds: what runs in them, who they run as, what is in their
layers, and that a registry serves them back by the digest images.json records.

Marked `images`: `pytest -m images` runs only these. The session builds the images once through
`make image` (cached by inputs, so cheap after the first build) and uses the OCI archives it lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import check_wheel  # hack/check_wheel.py
import grpc
import ociarchive  # hack/ociarchive.py
import pytest
import requests

from tests.support import images
from tests.support.images import Container
from tests.support.oci import registry_binary
from tests.support.operators import free_port
from tests.support.wait import wait_for
from trellis import __version__
from trellis.operators.network.dnsmasq import DEFAULT_BIOS_FILE, DEFAULT_EFI_FILE, DEFAULT_TFTP_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.images, pytest.mark.root]
REPO = images.REPO
SCRIPTS = sorted(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])
NAMES = {"trellis", "dnsmasq", "csi-provisioner", "csi-snapshotter", "snapshot-controller"}
SIDECARS = ("csi-provisioner", "csi-snapshotter", "snapshot-controller")


@pytest.fixture(scope="session")
def listing() -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("buildah with vfs storage needs root here")
    return images.build()


@pytest.fixture(scope="session")
def built(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return images.by_name(listing)


@pytest.fixture(scope="module")
def trellis(built: dict[str, dict[str, Any]]) -> Iterator[Container]:
    with images.container(REPO / built["trellis"]["archive"]) as ctr:
        yield ctr


def test_images_json_lists_every_image_with_its_archive_and_digest(listing: dict[str, Any]) -> None:
    assert listing["version"] == 1
    assert listing["appVersion"] == __version__
    assert {image["name"] for image in listing["images"]} == NAMES
    for image in listing["images"]:
        archive = REPO / image["archive"]
        assert archive.is_file(), image
        read = ociarchive.read(archive)
        assert image["digest"] == read.digest
        assert read.ref_name == image["references"][0]
        assert image["archive_size"] == archive.stat().st_size
        assert 0 < image["compressed_size"] < image["size"]
        assert all(ref.startswith(f"ghcr.io/trellis-dev/{image['name']}:") for ref in image["references"])
    by_name = images.by_name(listing)
    for name in ("trellis", "dnsmasq"):
        assert by_name[name]["references"][0].endswith(f":{__version__}")
        # The dev tag (when there is one) carries the revision images.json records.
        for ref in by_name[name]["references"][1:]:
            assert f"-g{listing['revision'][:12]}" in ref


def test_images_are_within_their_size_budget(built: dict[str, dict[str, Any]]) -> None:
    assert built["trellis"]["size"] < 250e6, built["trellis"]["size"]
    assert built["dnsmasq"]["size"] < 60e6, built["dnsmasq"]["size"]


def test_the_wheel_in_the_image_holds_operators_csi_stubs_and_templates(listing: dict[str, Any]) -> None:
    wheels = sorted((REPO / "build" / "wheelhouse").glob("trellis-*.whl"))
    assert len(wheels) == 1, wheels
    assert check_wheel.problems(wheels[0]) == []


def test_the_wheel_check_finds_what_is_missing(tmp_path: Path) -> None:
    import zipfile

    wheel = tmp_path / "trellis-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("trellis/__init__.py", "")
        archive.writestr("trellis/csi/__init__.py", "")
        archive.writestr("tests/test_x.py", "")
    found = check_wheel.problems(wheel)
    assert any("trellis/csi/_gen/csi_pb2.py" in p for p in found)
    assert any("trellis/operators/__init__.py" in p for p in found)
    assert any("*.j2" in p for p in found)
    assert any("tests/test_x.py" in p for p in found)
    assert any("trellis-boot-service" in p for p in found)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_entry_point_answers_help_in_the_image(trellis: Container, script: str) -> None:
    proc = trellis.run(script, "--help")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage" in (proc.stdout + proc.stderr).lower()


def test_every_trellis_module_imports_in_the_image(trellis: Container) -> None:
    # Also guards the Containerfile's size cuts in the kubernetes client (kubernetes/aio removed,
    # client/api and models as docstring-less bytecode).
    code = (
        "import importlib, pkgutil, trellis\n"
        "names = [m.name for m in pkgutil.walk_packages(trellis.__path__, 'trellis.')"
        " if not m.name.endswith('__main__')]\n"
        "for name in names: importlib.import_module(name)\n"
        "import kubernetes.client as k; k.CoreV1Api; k.V1Pod(metadata=k.V1ObjectMeta(name='x'))\n"
        "print(len(names))\n"
    )
    proc = trellis.run("python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) > 50


def test_the_trellis_image_runs_as_the_charts_non_root_user(
    trellis: Container, built: dict[str, Any]
) -> None:
    assert built["trellis"]["user"] == "65532:65532"
    proc = trellis.run("id")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "uid=65532(trellis)"
    # The chart's operators and boot service run as that uid.
    for template in ("network/deployment.yaml", "registry/deployment.yaml", "talosdevice/bootservice.yaml"):
        assert "runAsUser: 65532" in (REPO / "charts/trellis/templates" / template).read_text()


def test_the_node_plugins_tools_run_in_the_image(trellis: Container) -> None:
    for argv in (
        ["nvme", "version"],
        ["mkfs.ext4", "-V"],
        ["mkfs.xfs", "-V"],
        ["xfs_growfs", "-V"],
        ["resize2fs"],
        ["blkid", "-V"],
        ["losetup", "--version"],
        ["mount", "--version"],
        ["ipmitool", "-V"],
    ):
        proc = trellis.run(*argv)
        out = proc.stdout + proc.stderr
        assert "not found" not in out and "error while loading shared libraries" not in out, (argv, out)
        assert proc.returncode in (0, 1), (argv, out)  # resize2fs without arguments prints usage and exits 1
    # No compilers or package build tools in the final stage.
    proc = trellis.run("sh", "-c", "command -v gcc cc strip pip ; true")
    assert proc.stdout.strip() == ""


def test_the_csi_plugin_answers_get_plugin_info_from_a_container(trellis: Container) -> None:
    from trellis.csi import stubs

    pb, pb_grpc = stubs.load()
    socket_dir = Path(tempfile.mkdtemp(prefix="csi-img-", dir="/tmp"))  # short: unix socket paths
    loop_root = Path(tempfile.mkdtemp(prefix="csi-loop-", dir="/tmp"))
    # As the chart runs it: node mode, root (runAsUser 0), the socket in a host directory.
    argv = trellis.command(
        "trellis-csi",
        "--mode=node",
        "--endpoint=unix:///csi/csi.sock",
        "--node-id=image-test",
        "--transport=loop",
        "--loop-root=/rds",
        "--metrics-address=",
        "--log-format=text",
        user="0:0",
        volumes=[f"{socket_dir}:/csi", f"{loop_root}:/rds"],
    )
    log = socket_dir.with_suffix(".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        sock = socket_dir / "csi.sock"

        def listening() -> bool:
            assert proc.poll() is None, log.read_text()
            return sock.exists()

        wait_for(listening, timeout=60, interval=0.2, what="the plugin's socket")
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            info = pb_grpc.IdentityStub(channel).GetPluginInfo(pb.GetPluginInfoRequest(), timeout=10)
            probe = pb_grpc.IdentityStub(channel).Probe(pb.ProbeRequest(), timeout=10)
        assert info.name == "rds.csi.trellis.dev"
        assert info.vendor_version == __version__
        assert probe.ready.value
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for path in (socket_dir, loop_root):
            subprocess.run(["rm", "-rf", str(path)], check=False)
        log.unlink(missing_ok=True)


def test_the_dnsmasq_image_has_dnsmasq_and_the_ipxe_files(built: dict[str, dict[str, Any]]) -> None:
    archive = REPO / built["dnsmasq"]["archive"]
    names = {entry.name.removeprefix("./") for _, entry, _ in ociarchive.layers(archive)}
    for boot_file in (DEFAULT_BIOS_FILE, DEFAULT_EFI_FILE, "snponly.efi"):
        assert f"{DEFAULT_TFTP_ROOT.lstrip('/')}/{boot_file}" in names
    chart = (REPO / "charts/trellis/values.yaml").read_text()
    assert f"tftpRoot: {DEFAULT_TFTP_ROOT}\n" in chart
    assert {"usr/sbin/dnsmasq", "etc/passwd", "etc/group"} <= names
    with images.container(archive) as ctr:
        proc = ctr.run("/usr/sbin/dnsmasq", "--version")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("Dnsmasq version")
        # The operator's readiness probe: `dnsmasq --test` on the rendered config, as nobody/nogroup.
        conf = Path(tempfile.mkdtemp(prefix="dnsmasq-img-", dir="/tmp"))
        try:
            (conf / "dnsmasq.conf").write_text(
                "port=0\nuser=nobody\ngroup=nogroup\nenable-tftp\ntftp-root=/usr/lib/ipxe\n"
                "dhcp-range=10.99.0.10,10.99.0.20,12h\n"
            )
            proc = ctr.run(
                "/usr/sbin/dnsmasq", "--test", "--conf-file=/conf/dnsmasq.conf", volumes=[f"{conf}:/conf"]
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
        finally:
            subprocess.run(["rm", "-rf", str(conf)], check=False)


@pytest.mark.parametrize("name", SIDECARS)
def test_sidecar_images_run_their_binary_as_non_root(built: dict[str, dict[str, Any]], name: str) -> None:
    image = built[name]
    assert image["user"] == "65532:65532"
    with images.container(REPO / image["archive"]) as ctr:
        proc = ctr.run(f"/{name}", "--version")
    assert proc.returncode == 0, proc.stderr
    version = image["references"][0].rsplit(":", 1)[1]
    assert version in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(NAMES))
def test_no_layer_holds_secrets_git_or_the_work_tree(built: dict[str, dict[str, Any]], name: str) -> None:
    assert images.findings(REPO / built[name]["archive"]) == []


def test_the_layer_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    key = (
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
        b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
        b"-----END OPENSSH PRIVATE KEY-----\n"
    )
    archive = images.write_archive(
        tmp_path / "bad.tar",
        {
            "app/.git/config": b"[core]\n",
            "root/.venv/bin/python": b"",
            "opt/trellis/lib/python3.11/site-packages/tests/test_a.py": b"",
            "etc/innocent.conf": key,
            "home/u/.netrc": b"machine x login y password z\n",
            "usr/share/ok.txt": b"nothing to see",
        },
    )
    found = "\n".join(images.findings(archive))
    for what in (
        ".git/config",
        ".venv/bin",
        "site-packages/tests/",
        "innocent.conf: holds a private key",
        ".netrc",
    ):
        assert what in found, found
    assert "ok.txt" not in found


@pytest.fixture(scope="module")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("image-registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'storage'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    with registry_binary(config, f"http://127.0.0.1:{port}"):
        yield f"127.0.0.1:{port}"


@pytest.mark.parametrize("name", ["trellis", "dnsmasq"])
def test_push_to_a_registry_and_pull_back_by_digest(
    built: dict[str, dict[str, Any]], local_registry: str, tmp_path: Path, name: str
) -> None:
    image = built[name]
    repo_tag = image["references"][0].split("/", 1)[1]  # trellis-dev/<name>:<tag>
    repo = repo_tag.rsplit(":", 1)[0]
    copy = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]
    pushed = subprocess.run(
        [*copy, f"oci-archive:{REPO / image['archive']}", f"docker://{local_registry}/{repo_tag}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pushed.returncode == 0, pushed.stderr
    # The registry serves the very manifest images.json names, by digest and by tag.
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    by_digest = requests.get(
        f"http://{local_registry}/v2/{repo}/manifests/{image['digest']}", headers=accept, timeout=30
    )
    assert by_digest.status_code == 200
    assert "sha256:" + hashlib.sha256(by_digest.content).hexdigest() == image["digest"]
    by_tag = requests.get(
        f"http://{local_registry}/v2/{repo}/manifests/{repo_tag.rsplit(':', 1)[1]}",
        headers=accept,
        timeout=30,
    )
    assert by_tag.headers["Docker-Content-Digest"] == image["digest"]
    # And a client pulling by digest gets the same image back.
    back = tmp_path / "back.tar"
    pulled = subprocess.run(
        [*copy, f"docker://{local_registry}/{repo}@{image['digest']}", f"oci-archive:{back}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert ociarchive.read(back).digest == image["digest"]
    assert json.loads(by_digest.content)["layers"] == ociarchive.read(back).manifest["layers"]
