"""How a node attaches an RDS volume as a local block device.

* ``nvme`` (production): NVMe/TCP with nvme-cli, devices found through sysfs.
* ``loop`` (lab and tests): the volume's backing file, visible on this host, attached with
  losetup — used with the RDS simulator, which keeps real sparse files.
"""

from __future__ import annotations

from typing import Protocol

from trellis.csi.params import VolumeContext


class AttachError(RuntimeError):
    """Attaching failed; the message is meant for the CO's events."""


class Transport(Protocol):
    name: str

    def attach(self, volume_id: str, ctx: VolumeContext) -> str:
        """Attach (idempotently) and return the block device path once it exists."""
        ...

    def device(self, volume_id: str) -> str | None:
        """The attached device of ``volume_id``, found from system state alone."""
        ...

    def detach(self, volume_id: str) -> None:
        """Detach (idempotently); no error when nothing is attached."""
        ...

    def refresh(self, volume_id: str, device: str) -> None:
        """Make the kernel pick up a new device size after the volume grew."""
        ...
