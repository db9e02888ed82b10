"""A device's hardware: the BareMetalHost it runs on, its install disk hints, reinstall and retire.

A TalosDevice is linked to the BareMetalHost its ``bareMetalHostRef`` names, or else to the one
host in its namespace whose boot MAC is the device's MAC. Through the link:

- the host's ``rootDeviceHints`` choose the install disk when the device names none (recorded in
  ``status.hostDisk``, which both render paths read);
- reinstall (annotation ``talos.trellis.dev/reinstall`` set to a new value) wipes on the next boot
  and asks the host for a one-time network boot and a power cycle (annotation
  ``baremetalhost.trellis.dev/reprovision``);
- retire (the device is deleted) resets the machine through the Talos API when it answers, then
  powers the host off (``spec.online: false``), as a consumer of the host does.

Deleting the host leaves the device and the running machine alone; the link is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from trellis.api.common import normalize_mac

log = logging.getLogger(__name__)

HOSTS = "baremetalhosts"
REINSTALL_ANNOTATION = "talos.trellis.dev/reinstall"
RETIRE_ANNOTATION = "talos.trellis.dev/retire-on-delete"
REPROVISION_ANNOTATION = "baremetalhost.trellis.dev/reprovision"
GIGABYTE = "GB"


def hosts_in(kube: Any, namespace: str) -> list[dict[str, Any]]:
    """The namespace's BareMetalHosts; none when the BareMetalHost CRD is not installed."""
    try:
        return list(kube.list_objects(HOSTS, namespace).get("items", []))
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise


def linked_host(device: Mapping[str, Any], hosts: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The device's BareMetalHost: by reference, else the single host booting from its MAC."""
    spec = device.get("spec") or {}
    live = [h for h in hosts if not h["metadata"].get("deletionTimestamp")]
    ref = spec.get("bareMetalHostRef")
    if ref:
        return next((h for h in live if h["metadata"]["name"] == ref), None)
    mac = normalize_mac(spec.get("mac", ""))
    matches = [h for h in live if normalize_mac((h.get("spec") or {}).get("bootMACAddress", "")) == mac]
    return matches[0] if len(matches) == 1 else None


@dataclass(frozen=True)
class DiskChoice:
    """Status ``hostDisk``: what the hints translate to, and the hints Talos cannot express."""

    status: dict[str, Any] | None
    ignored: tuple[str, ...] = ()


def host_disk(host: Mapping[str, Any] | None) -> DiskChoice:
    """Talos' install disk (path or selector) from metal3-style rootDeviceHints.

    deviceName becomes the disk; otherwise serialNumber, wwn, model and minSizeGigabytes become a
    Talos disk selector (every field must match, like metal3's hints), rotational true becomes
    type hdd. Talos has no vendor or SCSI address selector and "not rotational" spans ssd and nvme,
    so those hints are reported, not guessed.
    """
    if host is None:
        return DiskChoice(None)
    hints = (host.get("spec") or {}).get("rootDeviceHints") or {}
    name = host["metadata"]["name"]
    if not hints:
        return DiskChoice(None)
    if hints.get("deviceName"):
        others = tuple(sorted(k for k in hints if k != "deviceName"))
        return DiskChoice({"disk": hints["deviceName"], "host": name}, others)
    selector: dict[str, Any] = {}
    if hints.get("serialNumber"):
        selector["serial"] = hints["serialNumber"]
    if hints.get("wwn"):
        selector["wwid"] = hints["wwn"]
    if hints.get("model"):
        selector["model"] = f"*{hints['model']}*"  # metal3 matches a substring, Talos a glob
    if hints.get("minSizeGigabytes") is not None:
        selector["size"] = f">= {int(hints['minSizeGigabytes'])}{GIGABYTE}"
    if hints.get("rotational") is True:
        selector["type"] = "hdd"
    ignored = tuple(
        sorted(k for k in ("vendor", "hctl") if hints.get(k))
        + (["rotational"] if hints.get("rotational") is False else [])
    )
    if not selector:
        return DiskChoice(None, ignored)
    return DiskChoice({"diskSelector": selector, "host": name}, ignored)


def reinstall_request(device: Mapping[str, Any]) -> str | None:
    """The reinstall annotation's value when it has not been acted on yet."""
    value = (device["metadata"].get("annotations") or {}).get(REINSTALL_ANNOTATION)
    if not value or value == (device.get("status") or {}).get("reinstalledFor"):
        return None
    return str(value)


def retire_wanted(device: Mapping[str, Any]) -> bool:
    value = (device["metadata"].get("annotations") or {}).get(RETIRE_ANNOTATION, "true")
    return value.lower() not in ("false", "no", "0")


def hardware_status(device: Mapping[str, Any], host: Mapping[str, Any] | None) -> dict[str, Any]:
    """Status fields of the link: the host's name and, while linked, the install disk from its hints.

    Without a host the recorded disk stays: it is what the machine was installed with, and dropping
    it would change the rendered config of a running machine for no reason.
    """
    out: dict[str, Any] = {"bareMetalHost": host["metadata"]["name"] if host else None}
    if host is not None:
        choice = host_disk(host)
        out["hostDisk"] = (
            {**choice.status, "ignored": list(choice.ignored) or None} if choice.status else None
        )
    return out


def link_events(device: Mapping[str, Any], host: Mapping[str, Any] | None) -> list[tuple[str, str, bool]]:
    before = (device.get("status") or {}).get("bareMetalHost")
    after = host["metadata"]["name"] if host else None
    ref = (device.get("spec") or {}).get("bareMetalHostRef")
    if before == after:
        # A dangling reference is reported once per spec change (observedGeneration catches up
        # in the same pass), not on every resync.
        fresh = (device.get("status") or {}).get("observedGeneration") != device["metadata"].get("generation")
        if ref and after is None and fresh:
            return [("HostNotFound", f"BareMetalHost {ref} (spec.bareMetalHostRef) does not exist", True)]
        return []
    if after:
        ignored = host_disk(host).ignored
        note = f"; rootDeviceHints not expressible in Talos, ignored: {', '.join(ignored)}" if ignored else ""
        return [("HostLinked", f"runs on BareMetalHost {after}{note}", bool(ignored))]
    if ref:
        return [("HostNotFound", f"BareMetalHost {ref} (spec.bareMetalHostRef) does not exist", True)]
    return [("HostUnlinked", f"BareMetalHost {before} is gone; the machine is left as it is", False)]


def start_reinstall(
    kube: Any, device: Mapping[str, Any], host: Mapping[str, Any] | None, request: str
) -> tuple[str, str, bool]:
    """Wipe on the next boot and ask the host for it; returns the Event to record."""
    meta = device["metadata"]
    kube.patch("talosdevices", meta["namespace"], meta["name"], {"spec": {"wipeOnNextBoot": True}})
    if host is None:
        return (
            "ReinstallWaiting",
            "no BareMetalHost is linked: the disk is wiped on the machine's next network boot; "
            "boot it from the network by hand",
            True,
        )
    kube.patch(
        HOSTS,
        meta["namespace"],
        host["metadata"]["name"],
        {"metadata": {"annotations": {REPROVISION_ANNOTATION: f"{meta['uid']}/{request}"}}},
    )
    return (
        "Reinstalling",
        f"wipe and one-time network boot requested from BareMetalHost {host['metadata']['name']}",
        False,
    )
