"""The vocabulary of the BareMetalHost state machine: states, events, the view ``plan`` reads and
the actions it returns (all plain data; ``machine`` holds the rules)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from trellis.operators.baremetalhost.bmc import BootDevice


class State(enum.StrEnum):
    UNMANAGED = "Unmanaged"  # no spec.bmc (a discovered host): nothing is sent anywhere
    REGISTERING = "Registering"
    INSPECTING = "Inspecting"
    AVAILABLE = "Available"
    PROVISIONING = "Provisioning"
    PROVISIONED = "Provisioned"
    EXTERNALLY_PROVISIONED = "ExternallyProvisioned"
    DEPROVISIONING = "Deprovisioning"
    POWERING_OFF_BEFORE_DELETE = "PoweringOffBeforeDelete"
    DELETING = "Deleting"


class Event(enum.StrEnum):
    CREATED = "Created"
    ADOPTED = "Adopted"  # spec.bmc set on an Unmanaged host
    REGISTERED = "Registered"
    REGISTERED_NO_INSPECTION = "RegisteredInspectionDisabled"
    REGISTERED_EXTERNAL = "RegisteredExternallyProvisioned"
    INSPECTED = "Inspected"
    INSPECT_REQUESTED = "InspectRequested"
    BOOT_SOURCE_SET = "BootSourceSet"
    BOOT_SOURCE_CLEARED = "BootSourceCleared"
    BOOT_SOURCE_CHANGED = "BootSourceChanged"
    PROVISIONED = "ProvisioningDone"
    DEPROVISIONED = "DeprovisioningDone"
    EXTERNAL_SET = "ExternallyProvisionedSet"
    EXTERNAL_CLEARED = "ExternallyProvisionedCleared"
    DELETE_REQUESTED = "DeleteRequested"
    POWERED_OFF_FOR_DELETE = "PoweredOffForDelete"
    REPROVISION_REQUESTED = "ReprovisionRequested"  # a new value of the reprovision annotation


S, E = State, Event


# Provisioning sub-steps, in order.
STEP_POWER_OFF = "PowerOff"
STEP_CONFIGURE_BOOT = "ConfigureBoot"
STEP_POWER_ON = "PowerOn"
STEP_AWAIT_INSTALL = "AwaitInstall"  # linked TalosDevice: booted, waiting for the device's report
# Inspecting / Provisioned markers.
STEP_INVENTORY_READ = "InventoryRead"
STEP_LOCAL_BOOT = "LocalBoot"


@dataclass(frozen=True)
class View:
    """What ``plan`` needs to know about one host."""

    state: State | None
    step: str | None = None
    online: bool = False
    boot_source: dict[str, Any] | None = None  # spec.bootSource
    applied_boot_source: dict[str, Any] | None = None  # status.provisioning.bootSource
    install_boot_observed: bool = False
    inspection_enabled: bool = True
    externally_provisioned: bool = False
    inspect_requested: bool = False
    reboot: str | None = None  # "soft" or "hard" while a reboot annotation is present
    registered: bool = False  # current address + credentials verified against the BMC
    powered_on: bool | None = None
    # The boot NIC's DHCPReservation: None when the boot NIC has no Network (nothing to wait for),
    # else whether it is Ready; ``boot_reservation`` says which one and what is missing.
    boot_reservation_ready: bool | None = None
    boot_reservation: str = ""
    # The TalosDevice linked to this host (spec.bareMetalHostRef, or its MAC = bootMACAddress).
    device: str | None = None
    device_phase: str | None = None
    device_config_served: bool = False  # the device fetched its config since the install boot
    install_boot_age: float | None = None  # seconds since the install boot of this attempt
    provisioning_timeout: float = 1800.0
    # The reprovision annotation's value when it has not been acted on (a consumer, e.g. the
    # TalosDevice operator reinstalling a machine, asks for the install boot again).
    reprovision: str | None = None


# -- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    reason: str = ""


@dataclass(frozen=True)
class Transition(Action):
    to: State = S.REGISTERING
    event: Event = E.CREATED
    clear_provisioning: bool = False
    install_boot_observed: bool | None = None
    reprovision_for: str | None = None


@dataclass(frozen=True)
class SetStep(Action):
    step: str = ""


@dataclass(frozen=True)
class Register(Action):
    """Read the credentials Secret and prove them against the BMC."""


@dataclass(frozen=True)
class Inspect(Action):
    """Read the inventory into status.hardware; consumes the inspect annotation."""


@dataclass(frozen=True)
class PowerOn(Action):
    pass


@dataclass(frozen=True)
class PowerOff(Action):
    hard: bool = False


@dataclass(frozen=True)
class ConfigureBoot(Action):
    """Attach the boot source (virtual media if any) and set the boot device; records it as applied."""

    device: BootDevice = BootDevice.DISK
    persistent: bool = True


@dataclass(frozen=True)
class SwitchToLocalDisk(Action):
    """bootSource mode once: after the install boot, boot the local disk from now on."""


@dataclass(frozen=True)
class Deprovision(Action):
    """Detach virtual media and make the local disk the boot device."""


@dataclass(frozen=True)
class MarkInstallBootObserved(Action):
    pass


@dataclass(frozen=True)
class FinishReboot(Action):
    """The host was seen off for a reboot request: drop the annotation (online brings it back)."""


@dataclass(frozen=True)
class MarkDeviceConfigServed(Action):
    """The linked TalosDevice was seen fetching its config after the install boot: record it."""


@dataclass(frozen=True)
class InstallTimedOut(Action):
    """The linked device did not report its install in time: an error, then a new install boot."""

    message: str = ""


@dataclass(frozen=True)
class Wait(Action):
    """Nothing to send now; look again soon (a power change is landing, or input is missing).

    ``watched`` waits end with a watch event (a reservation, Network or TalosDevice changing), so
    the executor need not look again before the next poll or ``recheck`` seconds.
    """

    message: str = ""
    watched: bool = False
    recheck: float | None = None


@dataclass(frozen=True)
class Idle(Action):
    """Converged: only the periodic power poll remains."""
