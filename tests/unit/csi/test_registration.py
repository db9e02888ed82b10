"""Kubelet plugin registration: the Registration service over a real unix socket, its socket's life
cycle, the node flags that turn it on, and the stubs generated from kubelet's proto."""

from __future__ import annotations

import logging
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from trellis.csi import DRIVER_NAME, metrics, stubs
from trellis.csi.main import parser, registration_dir
from trellis.csi.registration import (
    Registration,
    RegistrationError,
    kubelet_endpoint,
    socket_name,
)

reg_pb, reg_pb_grpc = stubs.load_registration()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """pytest's tmp_path can exceed the 107 bytes a unix socket path may have."""
    with tempfile.TemporaryDirectory(prefix="reg-", dir="/tmp") as tmp:
        yield Path(tmp)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def stub(path: Path) -> tuple[grpc.Channel, object]:
    channel = grpc.insecure_channel(f"unix://{path}")
    return channel, reg_pb_grpc.RegistrationStub(channel)


def test_get_info_says_what_node_driver_registrar_says(short_dir: Path) -> None:
    failures: list[str] = []
    reg = Registration(
        short_dir / "registry", DRIVER_NAME, "/var/lib/kubelet/plugins/x/csi.sock", failures.append
    )
    reg.start()
    try:
        assert reg.socket == short_dir / "registry" / f"{DRIVER_NAME}-reg.sock"
        channel, registration = stub(reg.socket)
        with channel:
            info = registration.GetInfo(reg_pb.InfoRequest(), timeout=5)  # type: ignore[attr-defined]
        assert info.type == "CSIPlugin"
        assert info.name == DRIVER_NAME
        assert info.endpoint == "/var/lib/kubelet/plugins/x/csi.sock"
        assert list(info.supported_versions) == ["1.0.0"]
        assert reg.service.asked.is_set()
        assert failures == []
    finally:
        reg.stop()


def test_registration_status_is_recorded_and_a_refusal_asks_to_exit(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[str] = []
    reg = Registration(short_dir, DRIVER_NAME, "/csi/csi.sock", failures.append)
    name = "trellis_csi_kubelet_registration_notifications_total"
    registered, failed = sample(name, result="registered"), sample(name, result="failed")
    reg.start()
    try:
        assert sample("trellis_csi_kubelet_registered") == 0
        channel, registration = stub(reg.socket)
        with channel, caplog.at_level(logging.INFO, logger="trellis.csi.registration"):
            status = reg_pb.RegistrationStatus(plugin_registered=True)
            registration.NotifyRegistrationStatus(status, timeout=5)  # type: ignore[attr-defined]
            assert sample("trellis_csi_kubelet_registered") == 1
            assert sample(name, result="registered") == registered + 1
            assert failures == []
            refusal = reg_pb.RegistrationStatus(plugin_registered=False, error="driver name is taken")
            registration.NotifyRegistrationStatus(refusal, timeout=5)  # type: ignore[attr-defined]
        assert failures == ["driver name is taken"]
        assert sample("trellis_csi_kubelet_registered") == 0
        assert sample(name, result="failed") == failed + 1
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and getattr(errors[0], "error", None) == "driver name is taken"
    finally:
        reg.stop()


def test_socket_is_private_replaces_a_stale_one_and_goes_at_stop(short_dir: Path) -> None:
    path = short_dir / socket_name(DRIVER_NAME)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # what a killed plugin leaves behind
    stale.close()
    os.link(path, short_dir / "held")  # keeps the stale inode from being reused by the new socket
    stale_inode = path.stat().st_ino
    reg = Registration(short_dir, DRIVER_NAME, "/csi/csi.sock", lambda _: None)
    reg.start()
    try:
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode) and st.st_ino != stale_inode
        assert st.st_mode & 0o077 == 0, oct(st.st_mode)
        channel, registration = stub(path)
        with channel:
            assert registration.GetInfo(reg_pb.InfoRequest(), timeout=5).name == DRIVER_NAME  # type: ignore[attr-defined]
    finally:
        reg.stop()
    assert not path.exists()
    reg.stop()  # idempotent


def test_a_file_that_is_not_a_socket_is_left_alone(short_dir: Path) -> None:
    path = short_dir / socket_name(DRIVER_NAME)
    path.write_text("not a socket")
    with pytest.raises(RegistrationError, match="not a socket"):
        Registration(short_dir, DRIVER_NAME, "/csi/csi.sock", lambda _: None).start()
    assert path.read_text() == "not a socket"


def test_too_long_socket_paths_are_refused_clearly(short_dir: Path) -> None:
    with pytest.raises(RegistrationError, match="too long"):
        Registration(short_dir / ("d" * 100), DRIVER_NAME, "/csi/csi.sock", lambda _: None).start()


def test_warns_when_kubelet_never_asks(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = Registration(short_dir, DRIVER_NAME, "/csi/csi.sock", lambda _: None, warn_after=0.05)
    with caplog.at_level(logging.WARNING, logger="trellis.csi.registration"):
        reg.start()
        try:
            assert reg._timer is not None
            reg._timer.join(5)
        finally:
            reg.stop()
    assert any("has not asked" in r.getMessage() for r in caplog.records)


HOST_SOCKET = "/var/lib/kubelet/plugins/d/csi.sock"


@pytest.mark.parametrize(
    ("value", "endpoint", "expected"),
    [
        (None, "unix:///csi/csi.sock", "/csi/csi.sock"),
        (None, "unix://var/run/x.sock", "/var/run/x.sock"),
        ("/var/lib/kubelet/plugins/d/csi.sock", "unix:///csi/csi.sock", HOST_SOCKET),
        ("unix:///var/lib/kubelet/plugins/d/csi.sock", "unix:///csi/csi.sock", HOST_SOCKET),
    ],
)
def test_kubelet_endpoint(value: str | None, endpoint: str, expected: str) -> None:
    assert kubelet_endpoint(value, endpoint) == expected


def test_kubelet_endpoint_must_be_absolute() -> None:
    with pytest.raises(RegistrationError, match="absolute"):
        kubelet_endpoint("plugins/csi.sock", "unix:///csi/csi.sock")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--mode", "node"], Path("/var/lib/kubelet/plugins_registry")),
        (["--mode", "node", "--registration-dir", "/registration"], Path("/registration")),
        (["--mode", "node", "--registration-dir", ""], None),
        (["--mode", "all"], None),  # dev runs and csi-sanity: no kubelet
        (["--mode", "all", "--registration-dir", "/tmp/registry"], Path("/tmp/registry")),
        (["--mode", "controller", "--registration-dir", "/registration"], None),
    ],
)
def test_registration_flags(argv: list[str], expected: Path | None) -> None:
    assert registration_dir(parser().parse_args(argv)) == expected


def test_main_refuses_a_bad_kubelet_registration_path(short_dir: Path) -> None:
    from trellis.csi.main import main

    argv = ["--mode", "node", "--transport", "loop", "--loop-root", str(short_dir), "--metrics-address", ""]
    argv += ["--endpoint", f"unix://{short_dir}/csi.sock", "--registration-dir", str(short_dir / "reg")]
    with pytest.raises(SystemExit, match="absolute path"):
        main([*argv, "--kubelet-registration-path", "csi.sock"])
    assert not (short_dir / "csi.sock").exists()  # refused before serving anything


OLD_KUBELET_PROTO = """syntax = "proto3";

package pluginregistration; // This should have been v1.
option go_package = "k8s.io/kubelet/pkg/apis/pluginregistration/v1";

import "github.com/gogo/protobuf/gogoproto/gogo.proto";

option (gogoproto.goproto_stringer_all) = false;
option (gogoproto.stringer_all) =  true;
option (gogoproto.marshaler_all) = true;

message PluginInfo {
	string type = 1;
	string name = 2 [(gogoproto.customname) = "Name"];
}
message InfoRequest {
}
service Registration {
	rpc GetInfo(InfoRequest) returns (PluginInfo) {}
}
"""


def test_gogoproto_is_stripped_and_the_stubs_still_generate(tmp_path: Path) -> None:
    """k8s.io/kubelet before the pinned version imported gogo.proto; generation must not need it."""
    stripped = stubs.strip_gogoproto(OLD_KUBELET_PROTO)
    assert "gogo" not in stripped and "string name = 2;" in stripped
    proto = tmp_path / "pluginregistration.proto"
    proto.write_text(OLD_KUBELET_PROTO)
    stubs.generate(proto, out=tmp_path / "gen")
    grpc_module = (tmp_path / "gen" / "pluginregistration_pb2_grpc.py").read_text()
    assert "/pluginregistration.Registration/GetInfo" in grpc_module
    assert "from trellis.csi._gen import pluginregistration_pb2" in grpc_module


def test_unknown_gogoproto_use_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="gogoproto"):
        stubs.strip_gogoproto(
            'message M {\n  string n = 1 [json_name = "n", (gogoproto.nullable) = false];\n}\n'
        )


def test_generated_stubs_keep_kubelets_method_paths() -> None:
    """Kubelet calls /pluginregistration.Registration/...: the proto package must survive generation."""
    assert reg_pb.DESCRIPTOR.package == "pluginregistration"
    service = reg_pb.DESCRIPTOR.services_by_name["Registration"]
    assert sorted(m.name for m in service.methods) == ["GetInfo", "NotifyRegistrationStatus"]
    assert os.path.basename(reg_pb.__file__) == "pluginregistration_pb2.py"
