"""Day 2 of installed machines: push changed configs and roll Talos upgrades through a cluster.

One pass looks at every installed machine of a cluster (phase Installed) and decides, in order:

1. Upgrades. A machine whose reported version differs from the cluster's ``talosVersion`` gets
   ``Upgrade`` with the cluster's installer image: control planes first, one at a time and only
   while every other control plane answers (etcd keeps quorum), then workers in batches of
   ``upgrade.workerBatch``. A machine has upgraded when ``Version`` reports the target; it has
   failed when it comes back from its reboot with another version (Talos boots the previous
   release when an install fails), when Talos refuses the call, or after ``timeoutSeconds``. The
   first failure stops the rollout until the cluster's retry annotation changes.
2. Config drift. A machine whose rendered config differs from the one it runs gets it with
   ``ApplyConfiguration`` in NO_REBOOT mode; when Talos refuses that because the change needs a
   reboot, the cluster's ``configUpdates.policy`` decides: Reboot, Staged, or leave
   it pending. Machines waiting for an upgrade are skipped (a config for the next release may not
   suit the running one); control planes are changed one per pass and rebooted one at a time.

The hold annotation on a device keeps both away from it. The decisions are here; the calls go
through a ``TalosCalls`` object (talosapi.py in the operator, a fake in unit tests), and the
result is status to write and Events to post after the write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import takewhile
from typing import Any, Protocol

from trellis.api.talos import TalosClusterSpec
from trellis.operators.talosdevice.render import installer_image
from trellis.operators.talosdevice.talosapi import Applied, TalosApiError

HOLD_ANNOTATION = "talos.trellis.dev/hold"
RETRY_UPGRADE_ANNOTATION = "talos.trellis.dev/retry-upgrade"
# How soon the cluster is judged again while something is under way, and while only staged
# configs wait for a reboot that Trellis does not cause.
BUSY_AGAIN_SECONDS = 3.0
STAGED_AGAIN_SECONDS = 30.0
# A reboot apply counts as done once the machine answers again after this long, even when no pass
# happened to catch it down.
REBOOT_GRACE_SECONDS = 120.0
RETRY_AGAIN_SECONDS = 10.0
IMMEDIATE_REFUSAL = "can't be applied in immediate mode"
# Answers that say nothing about the config: the call is tried again rather than marked failed.
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})
# "another apply configuration is already in progress" is FAILED_PRECONDITION too: retried.


class TalosCalls(Protocol):
    def version(self, address: str) -> str | None: ...

    def apply(self, address: str, config: str, mode: str) -> Applied: ...

    def upgrade(self, address: str, image: str) -> str: ...


@dataclass
class Machine:
    """One installed device as day 2 sees it; ``config``/``upgrade`` are its status sections."""

    name: str
    role: str
    address: str | None
    held: bool
    version: str | None
    desired_text: str
    desired_hash: str
    config: dict[str, Any]
    upgrade: dict[str, Any] | None
    answered: str | None = None  # version reported in this pass, None when it did not answer
    asked: bool = False


@dataclass
class Day2Result:
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # status sections to write
    cluster_upgrade: dict[str, Any] | None = None
    events: list[tuple[str, str, str, bool]] = field(default_factory=list)  # (device|"", reason, msg, warn)
    again_in: float | None = None

    def soon(self, seconds: float) -> None:
        self.again_in = seconds if self.again_in is None else min(self.again_in, seconds)


def needs_reboot(exc: TalosApiError) -> bool:
    """Talos' refusal of a NO_REBOOT apply because the change needs a reboot.

    Talos 1.12 answers INVALID_ARGUMENT with CanApplyImmediate's "this config change can't be
    applied in immediate mode" (v1alpha1_runtime.go), the same code as for an invalid config, so
    the text tells them apart; FAILED_PRECONDITION is accepted too in case a release changes it.
    """
    if exc.code == "FAILED_PRECONDITION":
        return "another apply configuration is already in progress" not in exc.details
    return exc.code == "INVALID_ARGUMENT" and IMMEDIATE_REFUSAL in exc.details


def held(annotations: Mapping[str, str] | None) -> bool:
    value = (annotations or {}).get(HOLD_ANNOTATION)
    return value is not None and value.lower() not in ("", "false", "no", "0")


def version_matches(reported: str | None, target: str) -> bool:
    """A target without a patch level (v1.12) is met by any release of that line."""
    if not reported:
        return False
    return reported == target or (target.count(".") == 1 and reported.startswith(target + "."))


def initial_config(served_hash: str | None, desired_hash: str) -> dict[str, Any]:
    """Config bookkeeping of a machine just found installed: it runs the config it was served."""
    applied = served_hash or desired_hash
    return {
        "appliedHash": applied,
        "appliedGeneration": 1,
        "desiredHash": applied,
        "desiredGeneration": 1,
        "state": "InSync",
    }


def track_desired(config: Mapping[str, Any], desired_hash: str) -> dict[str, Any]:
    out = dict(config)
    if out.get("desiredHash") != desired_hash:
        out["desiredHash"] = desired_hash
        out["desiredGeneration"] = int(out.get("desiredGeneration") or 1) + 1
    if out.get("appliedHash") == desired_hash:
        out["appliedGeneration"] = out["desiredGeneration"]
    return out


def _elapsed(since: str | None, now: datetime) -> float:
    if not since:
        return 0.0
    return (now - datetime.fromisoformat(since.replace("Z", "+00:00"))).total_seconds()


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Day2Pass:
    def __init__(
        self,
        spec: TalosClusterSpec,
        cluster_upgrade: Mapping[str, Any] | None,
        retry_request: str | None,
        machines: Sequence[Machine],
        calls: TalosCalls,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.spec = spec
        self.target = spec.talos_version
        self.rollout = dict(cluster_upgrade or {})
        self.retry_request = retry_request
        self.machines = sorted(machines, key=lambda m: (m.role != "controlplane", m.name))
        self.calls = calls
        self.now = now
        self.result = Day2Result()
        self.policy = spec.config_updates.policy if spec.config_updates else "Reboot"
        self.settings = spec.upgrade

    # --- bookkeeping -------------------------------------------------------------------------
    def run(self) -> Day2Result:
        for m in self.machines:
            m.config = track_desired(m.config, m.desired_hash)
        if self._work_pending():
            self._ask_versions()
        self._follow_upgrades()
        self._roll_upgrades()
        self._apply_configs()
        for m in self.machines:
            self.result.devices[m.name] = {"config": m.config, "upgrade": m.upgrade}
            if m.answered:
                self.result.devices[m.name]["talosVersion"] = m.answered
        return self.result

    def _work_pending(self) -> bool:
        for m in self.machines:
            if not version_matches(m.version, self.target) and not m.held:
                return True
            if m.upgrade and m.upgrade.get("phase") == "Upgrading":
                return True
            if m.config.get("state") in ("Rebooting", "Staged", "Pending"):
                return True
            if m.config.get("desiredHash") != m.config.get("appliedHash") and not m.held:
                return True
        return False

    def _ask_versions(self) -> None:
        reachable = [m for m in self.machines if m.address]
        if not reachable:
            return
        with ThreadPoolExecutor(max_workers=min(16, len(reachable))) as pool:
            answers = list(pool.map(lambda m: self.calls.version(m.address or ""), reachable))
        for m, answer in zip(reachable, answers, strict=True):
            m.asked, m.answered = True, answer
            if answer:
                m.version = answer

    def _event(self, m: Machine | None, reason: str, message: str, warning: bool = False) -> None:
        self.result.events.append((m.name if m else "", reason, message, warning))

    # --- upgrades ----------------------------------------------------------------------------
    def _follow_upgrades(self) -> None:
        timeout = self.settings.timeout_seconds if self.settings else 1200
        now = self.now()
        for m in self.machines:
            up = m.upgrade
            if not up or up.get("phase") != "Upgrading":
                continue
            up = m.upgrade = dict(up)
            target = up["targetVersion"]
            if m.asked and m.answered is None:
                up["downSeen"] = True
            if version_matches(m.answered, target):
                up.update(phase="Succeeded", message=f"reports {m.answered}")
                self._event(m, "Upgraded", f"Talos {up.get('fromVersion')} → {m.answered}")
                if m.config.get("state") == "Staged":
                    self._staged_applied(m)
            elif m.answered and up.get("downSeen"):
                up.update(phase="Failed", message=f"came back from the upgrade reboot with {m.answered}")
                self._event(m, "UpgradeFailed", f"upgrade to {target} failed: {up['message']}", True)
            elif _elapsed(up.get("started"), now) > timeout:
                up.update(phase="Failed", message=f"did not report {target} within {timeout}s")
                self._event(m, "UpgradeFailed", f"upgrade to {target} failed: {up['message']}", True)
            else:
                self.result.soon(BUSY_AGAIN_SECONDS)

    def _roll_upgrades(self) -> None:
        r = self.rollout
        if r.get("targetVersion") != self.target:
            r = self.rollout = {"targetVersion": self.target, "phase": "Progressing"}
        if r.get("phase") == "Failed" and self.retry_request and self.retry_request != r.get("retryFor"):
            r.update(phase="Progressing", failedDevice=None, retryFor=self.retry_request)
            for m in self.machines:
                if m.upgrade and m.upgrade.get("phase") == "Failed":
                    m.upgrade = None
        inflight = [m for m in self.machines if m.upgrade and m.upgrade.get("phase") == "Upgrading"]
        failed = [
            m
            for m in self.machines
            if m.upgrade
            and m.upgrade.get("phase") == "Failed"
            and m.upgrade.get("targetVersion") == self.target
        ]
        todo = [
            m
            for m in self.machines
            if not version_matches(m.version, self.target) and not m.held and m not in inflight
        ]
        r["total"] = len(self.machines)
        r["upgraded"] = sum(1 for m in self.machines if version_matches(m.version, self.target))
        r["held"] = (
            sorted(m.name for m in self.machines if m.held and not version_matches(m.version, self.target))
            or None
        )
        r["current"] = [m.name for m in inflight] or None
        if failed:
            r.update(
                phase="Failed",
                failedDevice=failed[0].name,
                message=f"{failed[0].name}: {failed[0].upgrade.get('message') if failed[0].upgrade else ''}; "
                f"set annotation {RETRY_UPGRADE_ANNOTATION} to a new value to try again",
            )
            self.result.cluster_upgrade = r
            return
        if not todo and not inflight:
            r.update(phase="Completed", message=None, failedDevice=None)
            self.result.cluster_upgrade = r
            return
        if self.settings is not None and self.settings.paused:
            r.update(phase="Paused", message="spec.upgrade.paused is set")
            self.result.cluster_upgrade = r
            return
        r.update(phase="Progressing", message=None)
        self.result.soon(BUSY_AGAIN_SECONDS)
        for m in self._next_batch(todo, inflight):
            self._start_upgrade(m)
        upgrading = [m.name for m in self.machines if m.upgrade and m.upgrade.get("phase") == "Upgrading"]
        r["current"] = upgrading or None
        self.result.cluster_upgrade = r

    def _next_batch(self, todo: list[Machine], inflight: list[Machine]) -> list[Machine]:
        silent = [m.name for m in todo if not m.answered]
        if silent:
            self.rollout["message"] = f"waiting for {', '.join(silent)} to answer"
        if any(m.role == "controlplane" for m in inflight):
            return []
        cps = [m for m in todo if m.role == "controlplane"]
        if cps:
            if inflight or not cps[0].answered or not self._other_controlplanes_answer(cps[0]):
                self.rollout["message"] = "waiting for every control plane to answer before the next one"
                return []
            return cps[:1]
        batch = self.settings.worker_batch if self.settings else 1
        # Strictly in order: a worker that does not answer holds the ones after it (hold it to
        # let the rollout pass it by).
        return list(takewhile(lambda m: bool(m.answered), todo[: max(0, batch - len(inflight))]))

    def _other_controlplanes_answer(self, m: Machine) -> bool:
        return all(o.answered for o in self.machines if o.role == "controlplane" and o is not m)

    def _start_upgrade(self, m: Machine) -> None:
        image = installer_image(self.spec)
        base = {"targetVersion": self.target, "fromVersion": m.version, "started": _stamp(self.now())}
        try:
            ack = self.calls.upgrade(m.address or "", image)
        except TalosApiError as exc:
            m.upgrade = {**base, "phase": "Failed", "message": f"Upgrade refused: {exc.code}: {exc.details}"}
            self._event(m, "UpgradeFailed", f"upgrade to {self.target} refused: {exc.details}", True)
            return
        m.upgrade = {**base, "phase": "Upgrading", "downSeen": False, "message": ack}
        self._event(m, "UpgradeStarted", f"upgrading {m.version} → {self.target} with {image}")
        self.result.soon(BUSY_AGAIN_SECONDS)

    # --- config drift ------------------------------------------------------------------------
    def _apply_configs(self) -> None:
        now = self.now()
        cp_changed = False
        for m in self.machines:
            c = m.config
            if c.get("state") == "Rebooting":
                if m.asked and m.answered is None:
                    c["downSeen"] = True
                if m.answered and (
                    c.get("downSeen") or _elapsed(c.get("lastApplied"), now) > REBOOT_GRACE_SECONDS
                ):
                    c.update(
                        state="InSync", downSeen=None, message="running the applied config after its reboot"
                    )
                else:
                    self.result.soon(BUSY_AGAIN_SECONDS)
                    if m.role == "controlplane":
                        cp_changed = True
                    continue
            if c.get("state") == "Staged":
                if m.asked and m.answered is None:
                    c["downSeen"] = True
                elif m.answered and c.get("downSeen"):
                    self._staged_applied(m)
            if c.get("desiredHash") == c.get("appliedHash"):
                if c.get("state") != "Staged":
                    c.update(state="InSync", message=None)
                continue
            blocked = self._blocked(m, cp_changed)
            if blocked:
                state, message = blocked
                c.update(state=state, message=message)
                continue
            if self._apply(m):
                cp_changed = cp_changed or m.role == "controlplane"

    def _blocked(self, m: Machine, cp_changed: bool) -> tuple[str, str] | None:
        if m.held:
            return "Held", f"annotation {HOLD_ANNOTATION} holds config changes"
        if self.policy == "Manual":
            return "Manual", "configUpdates.policy is Manual: apply with talosctl apply-config"
        if m.upgrade and m.upgrade.get("phase") == "Upgrading":
            self.result.soon(BUSY_AGAIN_SECONDS)
            return "Pending", "waits for the upgrade under way"
        if not version_matches(m.version, self.target):
            return "Pending", f"waits for the upgrade to {self.target} (runs {m.version})"
        if m.config.get("state") == "RebootRequired" and m.config.get("pendingHash") == m.desired_hash:
            return "RebootRequired", str(m.config.get("message") or "the change needs a reboot")
        if m.config.get("state") == "Failed" and m.config.get("pendingHash") == m.desired_hash:
            return "Failed", str(m.config.get("message") or "")
        if m.role == "controlplane" and (cp_changed or not self._other_controlplanes_answer(m)):
            self.result.soon(BUSY_AGAIN_SECONDS)
            return "Pending", "control planes change one at a time"
        if not m.address or not m.answered:
            self.result.soon(BUSY_AGAIN_SECONDS)
            return "Pending", "the machine's Talos API does not answer"
        return None

    def _apply(self, m: Machine) -> bool:
        c = m.config
        generation = c.get("desiredGeneration")
        try:
            applied = self.calls.apply(m.address or "", m.desired_text, "NO_REBOOT")
        except TalosApiError as exc:
            if exc.code in TRANSIENT_CODES or (exc.code == "FAILED_PRECONDITION" and not needs_reboot(exc)):
                c.update(state="Pending", message=f"{exc.code}: {exc.details}")
                self.result.soon(RETRY_AGAIN_SECONDS)
                return False
            if not needs_reboot(exc):
                c.update(state="Failed", pendingHash=m.desired_hash, message=f"{exc.code}: {exc.details}")
                self._event(
                    m, "ConfigApplyFailed", f"generation {generation}: {exc.code}: {exc.details}", True
                )
                return False
            return self._apply_with_reboot(m, exc.details)
        self._applied(m, applied, "InSync")
        self._event(m, "ConfigApplied", f"config generation {generation} applied without a reboot")
        return True

    def _apply_with_reboot(self, m: Machine, why: str) -> bool:
        c = m.config
        generation = c.get("desiredGeneration")
        if self.policy == "NoRebootOnly":
            c.update(state="RebootRequired", pendingHash=m.desired_hash, message=f"needs a reboot: {why}")
            self._event(m, "RebootRequired", f"config generation {generation} needs a reboot: {why}", True)
            return False
        if m.role == "worker" and self.policy == "Reboot":
            batch = self.settings.worker_batch if self.settings else 1
            rebooting = sum(
                1 for o in self.machines if o.role == "worker" and o.config.get("state") == "Rebooting"
            )
            if rebooting >= batch:
                c.update(state="Pending", message="waits for other workers to come back from their reboot")
                self.result.soon(BUSY_AGAIN_SECONDS)
                return False
        mode = "STAGED" if self.policy == "Staged" else "REBOOT"
        try:
            applied = self.calls.apply(m.address or "", m.desired_text, mode)
        except TalosApiError as exc:
            c.update(state="Failed", pendingHash=m.desired_hash, message=f"{exc.code}: {exc.details}")
            self._event(m, "ConfigApplyFailed", f"generation {generation} ({mode}): {exc.details}", True)
            return False
        if mode == "STAGED":
            c.update(
                state="Staged",
                stagedHash=m.desired_hash,
                stagedGeneration=generation,
                downSeen=False,
                lastApplyMode=applied.mode,
                lastApplied=_stamp(self.now()),
                message=f"staged for the next reboot: {why}",
            )
            self._event(m, "ConfigStaged", f"config generation {generation} staged for the next reboot")
            self.result.soon(STAGED_AGAIN_SECONDS)
            return True
        self._applied(m, applied, "Rebooting")
        c["downSeen"] = False
        self._event(m, "ConfigApplied", f"config generation {generation} applied with a reboot ({why})")
        self.result.soon(BUSY_AGAIN_SECONDS)
        return True

    def _applied(self, m: Machine, applied: Applied, state: str) -> None:
        c = m.config
        c.update(
            state=state,
            appliedHash=m.desired_hash,
            appliedGeneration=c.get("desiredGeneration"),
            lastApplyMode=applied.mode,
            lastApplied=_stamp(self.now()),
            message=applied.details or None,
            pendingHash=None,
        )

    def _staged_applied(self, m: Machine) -> None:
        c = m.config
        c.update(
            state="InSync",
            appliedHash=c.get("stagedHash"),
            appliedGeneration=c.get("stagedGeneration"),
            stagedHash=None,
            stagedGeneration=None,
            downSeen=None,
            message="the staged config took effect at the machine's reboot",
        )
        if c.get("appliedHash") != c.get("desiredHash"):
            c["state"] = "Pending"
