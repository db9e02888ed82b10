"""Day-2 decisions: which machine gets which call, in which order, and what status says afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trellis.api.talos import TalosClusterSpec
from trellis.operators.talosdevice.day2 import (
    Day2Pass,
    Machine,
    held,
    initial_config,
    track_desired,
    version_matches,
)
from trellis.operators.talosdevice.talosapi import Applied, TalosApiError

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@dataclass
class FakeTalos:
    """Answers as Talos would; records every call. ``needs_reboot`` holds config hashes (texts)."""

    versions: dict[str, str | None]
    needs_reboot: set[str] = field(default_factory=set)
    refuse_upgrade: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def version(self, address: str) -> str | None:
        return self.versions.get(address)

    def apply(self, address: str, config: str, mode: str) -> Applied:
        self.calls.append(("apply", address, mode))
        if mode == "NO_REBOOT" and config in self.needs_reboot:
            raise TalosApiError(
                "ApplyConfiguration", "FAILED_PRECONDITION", "this config change can't be applied"
            )
        return Applied(mode, f"applied ({mode})", ())

    def upgrade(self, address: str, image: str) -> str:
        self.calls.append(("upgrade", address, image))
        if address in self.refuse_upgrade:
            raise TalosApiError("Upgrade", "INVALID_ARGUMENT", "image not found")
        return "Upgrade request received"


def spec(version: str = "v1.12.0", **extra: Any) -> TalosClusterSpec:
    return TalosClusterSpec.model_validate(
        {
            "endpoint": "https://10.0.0.10:6443",
            "talosVersion": version,
            "kubernetesVersion": "1.35.0",
            **extra,
        }
    )


def machine(
    name: str, role: str = "worker", version: str = "v1.12.0", text: str = "cfg-a", **kw: Any
) -> Machine:
    base = initial_config("cfg-a", "cfg-a")
    return Machine(
        name=name,
        role=role,
        address=name,
        held=kw.pop("held", False),
        version=version,
        desired_text=text,
        desired_hash=text,
        config=kw.pop("config", base),
        upgrade=kw.pop("upgrade", None),
    )


def run(
    s: TalosClusterSpec,
    machines: list[Machine],
    talos: FakeTalos,
    rollout: Any = None,
    retry: str | None = None,
):
    return Day2Pass(s, rollout, retry, machines, talos, now=lambda: NOW).run()


def test_helpers() -> None:
    assert held({"talos.trellis.dev/hold": "true"}) and not held({"talos.trellis.dev/hold": "false"})
    assert not held(None)
    assert version_matches("v1.12.3", "v1.12") and version_matches("v1.12.0", "v1.12.0")
    assert not version_matches("v1.12.0", "v1.12.1") and not version_matches(None, "v1.12.0")
    config = track_desired(initial_config("a", "a"), "b")
    assert (config["desiredGeneration"], config["appliedGeneration"]) == (2, 1)
    assert track_desired(config, "b") == config  # no new generation for the same config


def test_idle_pass_calls_nothing() -> None:
    talos = FakeTalos({"cp1": "v1.12.0", "w1": "v1.12.0"})
    result = run(spec(), [machine("cp1", "controlplane"), machine("w1")], talos)
    assert talos.calls == [] and result.again_in is None
    assert result.devices["w1"]["config"]["state"] == "InSync"
    assert result.cluster_upgrade is not None and result.cluster_upgrade["phase"] == "Completed"


def test_change_applied_without_reboot_one_control_plane_per_pass() -> None:
    talos = FakeTalos({"cp1": "v1.12.0", "cp2": "v1.12.0", "w1": "v1.12.0", "w2": "v1.12.0"})
    machines = [
        machine(n, "controlplane" if n.startswith("cp") else "worker", text="cfg-b") for n in talos.versions
    ]
    result = run(spec(), machines, talos)
    assert talos.calls == [
        ("apply", "cp1", "NO_REBOOT"),
        ("apply", "w1", "NO_REBOOT"),
        ("apply", "w2", "NO_REBOOT"),
    ]
    assert result.devices["cp2"]["config"]["state"] == "Pending"
    assert result.devices["cp1"]["config"]["appliedGeneration"] == 2
    assert [e[1] for e in result.events] == ["ConfigApplied"] * 3
    assert result.again_in is not None


def test_reboot_needed_follows_policy() -> None:
    for policy, mode, state in (("Reboot", "REBOOT", "Rebooting"), ("Staged", "STAGED", "Staged")):
        talos = FakeTalos({"w1": "v1.12.0"}, needs_reboot={"cfg-b"})
        result = run(spec(configUpdates={"policy": policy}), [machine("w1", text="cfg-b")], talos)
        assert talos.calls == [("apply", "w1", "NO_REBOOT"), ("apply", "w1", mode)]
        assert result.devices["w1"]["config"]["state"] == state
    talos = FakeTalos({"w1": "v1.12.0"}, needs_reboot={"cfg-b"})
    m = machine("w1", text="cfg-b")
    result = run(spec(configUpdates={"policy": "NoRebootOnly"}), [m], talos)
    assert result.devices["w1"]["config"]["state"] == "RebootRequired"
    assert result.events[0][1] == "RebootRequired" and result.events[0][3]
    again = run(
        spec(configUpdates={"policy": "NoRebootOnly"}), [machine("w1", text="cfg-b", config=m.config)], talos
    )
    assert len(talos.calls) == 1 and again.events == []  # not asked again for the same config


def test_reboot_apply_waits_for_the_machine_to_come_back() -> None:
    talos = FakeTalos({"w1": "v1.12.0"}, needs_reboot={"cfg-b"})
    first = run(spec(), [machine("w1", text="cfg-b")], talos)
    config = first.devices["w1"]["config"]
    talos.versions["w1"] = None
    down = run(spec(), [machine("w1", text="cfg-b", config=config)], talos)
    assert down.devices["w1"]["config"]["state"] == "Rebooting" and down.devices["w1"]["config"]["downSeen"]
    talos.versions["w1"] = "v1.12.0"
    up = run(spec(), [machine("w1", text="cfg-b", config=down.devices["w1"]["config"])], talos)
    assert up.devices["w1"]["config"]["state"] == "InSync"


def test_hold_and_manual_apply_nothing() -> None:
    talos = FakeTalos({"w1": "v1.12.0", "w2": "v1.12.1"})
    result = run(spec(), [machine("w1", text="cfg-b", held=True)], talos)
    assert talos.calls == [] and result.devices["w1"]["config"]["state"] == "Held"
    result = run(spec(configUpdates={"policy": "Manual"}), [machine("w1", text="cfg-b")], talos)
    assert talos.calls == [] and result.devices["w1"]["config"]["state"] == "Manual"
    result = run(spec("v1.12.1"), [machine("w2", version="v1.12.0", held=True)], talos)
    assert talos.calls == [] and result.cluster_upgrade["held"] == ["w2"]


def _upgrade_round(talos: FakeTalos, machines: list[Machine], s: TalosClusterSpec, rollout: Any) -> Any:
    result = run(s, machines, talos, rollout)
    for m in machines:
        m.upgrade = result.devices[m.name]["upgrade"]
        m.config = result.devices[m.name]["config"]
    return result


def test_rolling_upgrade_control_planes_first_then_workers_stops_on_failure() -> None:
    names = {"cp1": "controlplane", "w1": "worker", "w2": "worker"}
    talos = FakeTalos(dict.fromkeys(names, "v1.12.0"))
    machines = [machine(n, r) for n, r in names.items()]
    s = spec("v1.12.1")
    result = _upgrade_round(talos, machines, s, None)
    assert talos.calls == [("upgrade", "cp1", "ghcr.io/siderolabs/installer:v1.12.1")]
    assert result.cluster_upgrade["phase"] == "Progressing" and result.cluster_upgrade["current"] == ["cp1"]
    # cp1 reboots: down, then up with the new version; only then w1 (batch of 1).
    talos.versions["cp1"] = None
    result = _upgrade_round(talos, machines, s, result.cluster_upgrade)
    assert len(talos.calls) == 1
    talos.versions["cp1"] = "v1.12.1"
    result = _upgrade_round(talos, machines, s, result.cluster_upgrade)
    assert machines[0].upgrade["phase"] == "Succeeded"
    assert talos.calls[-1] == ("upgrade", "w1", "ghcr.io/siderolabs/installer:v1.12.1")
    talos.versions["w1"] = "v1.12.1"
    result = _upgrade_round(talos, machines, s, result.cluster_upgrade)
    assert talos.calls[-1][1] == "w2"
    # w2 reboots and comes back with the old release: failed, rollout stops.
    talos.versions["w2"] = None
    result = _upgrade_round(talos, machines, s, result.cluster_upgrade)
    talos.versions["w2"] = "v1.12.0"
    result = _upgrade_round(talos, machines, s, result.cluster_upgrade)
    assert machines[2].upgrade["phase"] == "Failed"
    assert result.cluster_upgrade["phase"] == "Failed" and result.cluster_upgrade["failedDevice"] == "w2"
    assert ("w2", "UpgradeFailed") in [(e[0], e[1]) for e in result.events]
    calls = len(talos.calls)
    result = _upgrade_round(talos, machines, s, result.cluster_upgrade)
    assert len(talos.calls) == calls and result.cluster_upgrade["phase"] == "Failed"
    # The retry annotation starts it again.
    result = run(s, machines, talos, result.cluster_upgrade, retry="1")
    assert talos.calls[-1][1] == "w2" and result.cluster_upgrade["retryFor"] == "1"


def test_control_plane_waits_for_the_others_to_answer() -> None:
    talos = FakeTalos({"cp1": "v1.12.0", "cp2": None})
    machines = [machine("cp1", "controlplane"), machine("cp2", "controlplane")]
    result = run(spec("v1.12.1"), machines, talos)
    assert talos.calls == [] and "answer" in result.cluster_upgrade["message"]


def test_refused_upgrade_fails_at_once_and_timeout_fails() -> None:
    talos = FakeTalos({"w1": "v1.12.0"}, refuse_upgrade={"w1"})
    result = run(spec("v1.12.1"), [machine("w1")], talos)
    assert result.devices["w1"]["upgrade"]["phase"] == "Failed"
    started = (NOW - timedelta(seconds=2000)).strftime("%Y-%m-%dT%H:%M:%SZ")
    upgrading = {
        "targetVersion": "v1.12.1",
        "phase": "Upgrading",
        "started": started,
        "fromVersion": "v1.12.0",
    }
    result = run(spec("v1.12.1"), [machine("w1", upgrade=upgrading)], FakeTalos({"w1": "v1.12.0"}))
    assert result.devices["w1"]["upgrade"]["phase"] == "Failed"
    assert "within 1200s" in result.devices["w1"]["upgrade"]["message"]


def test_config_waits_for_the_upgrade() -> None:
    talos = FakeTalos({"w1": "v1.11.5"}, refuse_upgrade={"w1"})
    result = run(spec("v1.12.0"), [machine("w1", version="v1.11.5", text="cfg-b")], talos)
    assert result.devices["w1"]["config"]["state"] == "Pending"
    assert all(c[0] != "apply" for c in talos.calls)


@pytest.mark.parametrize("code,state", [("UNAVAILABLE", "Pending"), ("INVALID_ARGUMENT", "Failed")])
def test_apply_errors(code: str, state: str) -> None:
    class Refusing(FakeTalos):
        def apply(self, address: str, config: str, mode: str) -> Applied:
            raise TalosApiError("ApplyConfiguration", code, "no")

    result = run(spec(), [machine("w1", text="cfg-b")], Refusing({"w1": "v1.12.0"}))
    assert result.devices["w1"]["config"]["state"] == state


def test_a_silent_worker_holds_the_ones_after_it() -> None:
    talos = FakeTalos({"w1": None, "w2": "v1.12.0"})
    result = run(spec("v1.12.1"), [machine("w1"), machine("w2")], talos)
    assert talos.calls == [] and "w1" in result.cluster_upgrade["message"]
    talos = FakeTalos({"w1": None, "w2": "v1.12.0"})
    run(spec("v1.12.1"), [machine("w1", held=True), machine("w2")], talos)
    assert talos.calls == [("upgrade", "w2", "ghcr.io/siderolabs/installer:v1.12.1")]
