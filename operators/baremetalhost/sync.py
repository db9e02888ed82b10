"""Keeps a host's DHCPReservations equal to ``reservations.desired_reservations`` and reports on them."""

from __future__ import annotations

import time
from typing import Any

from trellis.operators.baremetalhost import conflicts, reservations
from trellis.operators.baremetalhost.bmc import UnsupportedError
from trellis.operators.baremetalhost.context import Context, info, warn


class WaitingFor(Exception):
    """An input outside the BMC is not ready yet (an ISOCDROM); look again later."""


class ReservationSync:
    def __init__(self, ctx: Context, namespace: str, name: str, uid: str) -> None:
        self.ctx, self.namespace, self.name, self.uid = ctx, namespace, name, uid
        self.key: str | None = None
        self.synced = 0.0
        self.condition: tuple[str, str, str] = ("Unknown", "Pending", "reservations not computed yet")
        self.duplicate: tuple[str, str, str] = ("False", "Unique", "")
        self._reported: dict[str, str] = {}
        # The boot NIC's reservation: (None, "") without a boot NIC, else (Ready?, what it is).
        self.boot: tuple[bool | None, str] = (None, "")
        self._waiting: str | None = None

    def note_waiting(self, message: str) -> None:
        self._waiting = message

    def _event_once(self, body: dict[str, Any], topic: str, reason: str, message: str) -> None:
        if message and self._reported.get(topic) != message:
            warn(body, reason=reason, message=message)
        self._reported[topic] = message

    async def _isocdrom(self, ref: str) -> dict[str, Any]:
        obj = await self.ctx.kube.get_cluster_object("isocdroms", ref)
        if obj is None:
            raise WaitingFor(f"ISOCDROM {ref} not found")
        return obj

    async def require_iscsi_export(self, ref: str) -> str:
        """The root-path for booting ISOCDROM ``ref`` over iSCSI; waits until it is exported."""
        obj = await self._isocdrom(ref)
        status = obj.get("status") or {}
        if status.get("phase") != "Ready" or not status.get("iqn") or not status.get("portalAddress"):
            raise WaitingFor(f"ISOCDROM {ref} is not exported yet (phase {status.get('phase') or 'Pending'})")
        try:
            return reservations.iscsi_root_path(
                status["iqn"], status["portalAddress"], status.get("portalPort"), status.get("lun")
            )
        except ValueError as exc:
            raise UnsupportedError(str(exc)) from exc

    async def virtual_media_url(self, ref: str) -> str:
        obj = await self._isocdrom(ref)
        url = ((obj.get("spec") or {}).get("source") or {}).get("url")
        if not url:
            raise UnsupportedError(f"ISOCDROM {ref} has no source.url to hand to the BMC as virtual media")
        return str(url)

    async def run(self, body: dict[str, Any], new: dict[str, Any], index: Any) -> None:
        meta, spec = body["metadata"], body["spec"]
        me = conflicts.Holder(str(meta.get("creationTimestamp") or ""), self.namespace, self.name)
        found = conflicts.find_conflicts(me, spec, index) if index is not None else []
        text = conflicts.describe(found)
        self.duplicate = ("True", "DuplicateMAC", text) if found else ("False", "Unique", "")
        self._event_once(body, "duplicate", "DuplicateMAC", text)
        loser = any(c.loser for c in found)
        problem: tuple[str, str] | None = None
        missing: list[str] = []
        desired: list[reservations.Desired] = []
        if loser:
            problem = ("DuplicateMAC", f"no reservations while another host holds the MAC: {text}")
        else:
            root_path = None
            prov = new.get("provisioning") or {}
            applied = prov.get("bootSource") or {}
            once_done = applied.get("mode", "once") == "once" and prov.get("installBootObserved")
            if applied.get("type") == "isocdrom" and applied.get("via", "iscsi") == "iscsi" and not once_done:
                try:
                    root_path = await self.require_iscsi_export(applied["isocdromRef"])
                except (WaitingFor, UnsupportedError) as exc:
                    problem = ("ISOCDROMNotReady", str(exc))
            networks = sorted({nic["networkRef"] for nic in spec.get("nics") or []})
            missing = [n for n in networks if not await self.ctx.network_exists(n)]
            desired = reservations.desired_reservations(self.name, spec, root_path, frozenset(missing))
            if missing:
                problem = ("NetworkNotFound", f"Network {', '.join(missing)} not found: no reservation on it")
        self._event_once(body, "missing", "NetworkNotFound", problem[1] if problem and missing else "")
        key = repr(desired)
        host_key = (self.namespace, self.name)
        due = time.monotonic() - self.synced > self.ctx.settings.resync_interval
        if key != self.key or due or host_key in self.ctx.dirty_reservations:
            self.ctx.dirty_reservations.discard(host_key)
            conflict = await self._apply(body, desired)
            self.key, self.synced = (key if not conflict else None), time.monotonic()
            if conflict:
                problem = ("ReservationConflict", conflict)
        self._report(spec, new, desired, problem)
        self.boot = self._boot_reservation(spec, missing, loser)

    def _boot_reservation(
        self, spec: dict[str, Any], missing: list[str], loser: bool
    ) -> tuple[bool | None, str]:
        nic = next((n for n in spec.get("nics") or [] if n.get("role") == "boot"), None)
        if nic is None:
            return None, ""
        name = reservations.reservation_name(self.name, nic["name"])
        what = f"DHCPReservation {name} on Network {nic['networkRef']}"
        if loser:
            return False, f"{what} (none while another host holds the MAC)"
        if nic["networkRef"] in missing:
            return False, f"{what} (the Network does not exist)"
        info = self.ctx.reservation_info.get((self.namespace, name))
        if info is None:
            return False, f"{what} (not created yet)"
        if info.get("phase") != "Ready" or not info.get("current"):
            phase = info.get("phase") or "Pending"
            return (
                False,
                f"{what} (it is {phase}{'' if info.get('current') else ', its change not served yet'})",
            )
        return True, what

    async def _apply(self, body: dict[str, Any], desired: list[reservations.Desired]) -> str:
        live = await self.ctx.kube.reservations_of(self.namespace, self.name, [d.name for d in desired])
        kube, ns = self.ctx.kube, self.namespace
        problems = []
        wanted = {d.name: d for d in desired}
        for op in reservations.plan_reservations(desired, live, self.uid):
            if op.kind == "conflict":
                problems.append(f"{op.name}: {op.reason}")
                continue
            if op.kind in ("delete", "recreate"):
                await kube.delete_reservation(ns, op.name)
            if op.kind in ("create", "recreate"):
                obj = reservations.reservation_object(ns, self.name, self.uid, wanted[op.name])
                await kube.create_reservation(ns, obj)
            if op.kind == "replace":
                assert op.spec is not None
                await kube.replace_reservation_spec(ns, op.name, op.spec)
            # What the Network operator served before this write is not what we asked for now.
            seen = self.ctx.reservation_info.get((ns, op.name))
            if seen is not None:
                self.ctx.reservation_info[(ns, op.name)] = {**seen, "current": False}
            info(body, reason=f"Reservation{op.kind.capitalize()}", message=f"DHCPReservation {op.name}")
        text = "; ".join(problems)
        self._event_once(body, "conflict", "ReservationConflict", text)
        return text

    def _report(
        self,
        spec: dict[str, Any],
        new: dict[str, Any],
        desired: list[reservations.Desired],
        problem: tuple[str, str] | None,
    ) -> None:
        roles = {nic["name"]: nic.get("role", "secondary") for nic in spec.get("nics") or []}
        entries, pending, boot_ip = [], [], None
        for want in desired:
            info = self.ctx.reservation_info.get((self.namespace, want.name)) or {}
            entry: dict[str, Any] = {"nic": want.nic, "name": want.name}
            if info.get("ip"):
                entry["ip"] = info["ip"]
                if roles.get(want.nic) == "boot":
                    boot_ip = info["ip"]
            if info.get("phase") != "Ready":
                pending.append(f"{want.name} is {info.get('phase') or 'Pending'}")
            entries.append(entry)
        for key, value in (("reservations", entries), ("ip", boot_ip)):
            if value:
                new[key] = value
            else:
                new.pop(key, None)
        if problem is None and self._waiting:
            problem = ("ISOCDROMNotReady", self._waiting)
        self._waiting = None
        if problem:
            self.condition = ("False", problem[0], problem[1])
        elif not desired:
            self.condition = ("True", "NoNICs", "spec.nics lists no NIC to reserve an address for")
        elif pending:
            self.condition = ("False", "ReservationPending", "; ".join(pending))
        else:
            self.condition = ("True", "Ready", f"{len(desired)} reservations served")
