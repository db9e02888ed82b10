"""One ISOCDROM reconcile (synchronous, run in a worker thread): transfer, verify, export, recover."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paramiko

from trellis.api.isocdrom import ISOCDROMSpec
from trellis.operators.isocdrom import desired, transfer
from trellis.operators.isocdrom.cluster import CliCache, Cluster, ConfigProblem, RouterAccess
from trellis.operators.isocdrom.rds import RDSExports, rds_path
from trellis.opkit.conditions import now_rfc3339, set_condition, without_times
from trellis.routeros.cli import RouterOSError
from trellis.routeros.ssh import TransportError

log = logging.getLogger(__name__)
PROGRESS_EVERY = 5.0


class Retry(Exception):
    """A transient failure; the handler turns it into a kopf retry after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass
class Engine:
    cluster: Cluster
    clis: CliCache
    default_pool: str
    # Routers whose SFTP server failed a transfer with large write requests: they get the safe size.
    small_writes: set[str] = field(default_factory=set)

    def write_size(self, router: str) -> int:
        return transfer.SAFE_WRITE_SIZE if router in self.small_writes else transfer.SFTP_WRITE_SIZE

    def demote(self, router: str) -> None:
        if transfer.SFTP_WRITE_SIZE > transfer.SAFE_WRITE_SIZE and router not in self.small_writes:
            log.warning("SFTP transfer to %s failed with %d-byte writes; using %d from now on",
                        router, transfer.SFTP_WRITE_SIZE, transfer.SAFE_WRITE_SIZE)  # fmt: skip
            self.small_writes.add(router)


@dataclass
class Run:
    """State of one reconcile: the object's status as we last wrote it, and Events to post."""

    engine: Engine
    name: str
    generation: int
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def write(self, ready: tuple[bool, str, str] | None = None, /, **fields: Any) -> None:
        wanted = {**fields, "observedGeneration": self.generation}
        changes = desired.status_changes(self.status, wanted)
        if ready is not None:
            old = self.status.get("conditions") or []
            conditions = set_condition(old, "Ready", *ready, self.generation)
            if without_times(conditions) != without_times(old):
                changes["conditions"] = conditions
                if not ready[0]:
                    self.events.append(("Warning", ready[1], ready[2]))
                elif ready[1] == "Exported":
                    self.events.append(("Normal", ready[1], ready[2]))
        if changes:
            self.engine.cluster.patch_status(self.name, changes)
            self.status.update(changes)

    def event(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))


@contextlib.contextmanager
def sftp_session(access: RouterAccess) -> Iterator[paramiko.SFTPClient]:
    transport = transfer.open_transport(access.ssh)
    try:
        yield transfer.open_sftp(transport)
    finally:
        transport.close()


def _hash_remote(sftp: paramiko.SFTPClient, path: str, size: int) -> str:
    digest = hashlib.sha256()
    with sftp.open(path, "rb") as fh:
        fh.prefetch(size)
        while block := fh.read(transfer.CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _fetch(run: Run, spec: ISOCDROMSpec, access: RouterAccess, path: str) -> tuple[int, str]:
    """Make sure the verified image sits at ``path``; returns (size, sha256)."""
    expected = spec.source.sha256 or ""
    with sftp_session(access) as sftp:
        size = transfer.remote_size(sftp, path)
        if size is not None and run.status.get("sha256") == expected and run.status.get("size") == size:
            return size, expected
        if size is not None:
            actual = _hash_remote(sftp, path, size)
            if actual != expected:
                raise ConfigProblem(
                    "FileExists",
                    f"{path} already exists on the RDS with different content (sha256 {actual}); "
                    "it was not created by this ISOCDROM and is left alone",
                )
            return size, actual
        transfer.ensure_directory(sftp, path.rsplit("/", 1)[0])
        temp = transfer.temp_name(path)
        run.write(
            phase="Transferring", message=f"downloading {spec.source.url}", path=path, transferredBytes=0
        )
        last = [time.monotonic()]

        def progress(done: int, total: int | None) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                run.write(transferredBytes=done, **({"size": total} if total else {}))

        try:
            result = transfer.transfer(
                sftp,
                transfer.HTTPSource(str(spec.source.url)),
                temp,
                progress,
                run.engine.write_size(access.name),
            )
        except transfer.UploadError:
            run.engine.demote(access.name)
            raise
        if result.resumed_from:
            log.info("transfer of %s resumed at byte %d", path, result.resumed_from)
        run.write(
            phase="Verifying",
            message="checking size and sha256",
            transferredBytes=result.size,
            size=result.size,
        )
        transfer.finalize(sftp, temp, path, expected, result)
        return result.size, result.sha256


def _existing(spec: ISOCDROMSpec, access: RouterAccess, path: str, run: Run) -> tuple[int, str | None]:
    with sftp_session(access) as sftp:
        size = transfer.remote_size(sftp, path)
        if size is None:
            raise ConfigProblem("SourceNotFound", f"{path} does not exist on the RDS")
        if not spec.source.sha256:
            return size, None
        if run.status.get("sha256") == spec.source.sha256 and run.status.get("size") == size:
            return size, spec.source.sha256
        actual = _hash_remote(sftp, path, size)
    if actual != spec.source.sha256:
        raise transfer.ChecksumMismatch(spec.source.sha256, actual)
    return size, actual


PERMANENT = ("ChecksumMismatch", "TransferFailed")


def _failed_for_good(status: dict[str, Any], generation: int) -> bool:
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    return bool(
        status.get("phase") == "Error"
        and ready
        and ready.get("reason") in PERMANENT
        and ready.get("observedGeneration") == generation
    )


def reconcile(
    engine: Engine, name: str, generation: int, raw_spec: dict[str, Any], status: dict[str, Any]
) -> Run:
    run = Run(engine, name, generation, dict(status))
    spec = ISOCDROMSpec.model_validate(raw_spec)
    subs = desired.subscribers(engine.cluster.baremetalhosts(), name)
    place = desired.placement(name, spec, engine.default_pool)
    slot = desired.slot_name(name, spec)
    run.write(
        subscribers=subs, slot=slot, path=place.path, **({} if status.get("phase") else {"phase": "Pending"})
    )
    if _failed_for_good(status, generation):
        return run  # a checksum mismatch does not heal by retrying the same spec
    try:
        access = engine.cluster.router_access(spec.target.router_ref)
        exports = RDSExports(engine.clis.cli(access))
        if status.get("phase") == "Ready" and status.get("path") == place.path:
            current = exports.find(slot)
            if current and current.exported and current.file_path == rds_path(place.path):
                run.write(lastExportCheck=status.get("lastExportCheck") or now_rfc3339())
                return run
            run.event("Warning", "ExportMissing", f"iSCSI export {slot} is gone from the RDS; re-creating it")
        sha: str | None
        if place.created_by_us:
            size, sha = _fetch(run, spec, access, place.path)
        else:
            size, sha = _existing(spec, access, place.path, run)
        export = exports.ensure(slot, place.path)
    except transfer.ChecksumMismatch as exc:
        run.write(
            (False, "ChecksumMismatch", str(exc)),
            phase="Error",
            message=f"{exc}; nothing was exported and the partial file was removed",
        )
        return run
    except ConfigProblem as exc:
        run.write((False, exc.reason, exc.message), phase="Error", message=exc.message)
        raise Retry(exc.message, delay=10) from exc
    except transfer.ConnectError as exc:
        # Never a permanent Error: host keys and credentials get fixed, routers come back.
        run.write((False, "RouterError", str(exc)), message=str(exc))
        raise Retry(str(exc), delay=10) from exc
    except transfer.TransferError as exc:
        if not exc.retryable:
            run.write((False, "TransferFailed", str(exc)), phase="Error", message=str(exc))
            return run
        run.write((False, "TransferInterrupted", str(exc)), message=f"retrying: {exc}")
        raise Retry(str(exc), delay=2) from exc
    except (RouterOSError, TransportError) as exc:
        run.write((False, "RouterError", str(exc)), message=str(exc))
        raise Retry(str(exc)) from exc
    run.write(
        (True, "Exported", f"exported as {export.iqn}"),
        phase="Ready",
        message=f"exported as {export.iqn}",
        size=size,
        transferredBytes=size,
        **({"sha256": sha} if sha else {}),
        iqn=export.iqn,
        itemId=export.item_id,
        portalAddress=access.portal_address or None,
        portalPort=export.port,
        lun=access.lun,
        lastExportCheck=now_rfc3339(),
    )
    return run


def subscribers_of(engine: Engine, name: str) -> list[dict[str, str]]:
    return desired.subscribers(engine.cluster.baremetalhosts(), name)


def tear_down(engine: Engine, name: str, raw_spec: dict[str, Any]) -> list[str]:
    """Unexport, remove the disk item, and remove our files per deletePolicy; returns what was done."""
    spec = ISOCDROMSpec.model_validate(raw_spec)
    place = desired.placement(name, spec, engine.default_pool)
    slot = desired.slot_name(name, spec)
    try:
        access = engine.cluster.router_access(spec.target.router_ref)
    except ConfigProblem as exc:
        if exc.reason == "RouterNotFound":
            return [f"Router {spec.target.router_ref} is gone; nothing to clean up on it"]
        raise
    done = []
    RDSExports(engine.clis.cli(access)).remove(slot)
    done.append(f"removed export {slot}")
    if place.created_by_us:
        with sftp_session(access) as sftp:
            transfer.remove_quietly(sftp, transfer.temp_name(place.path))
            if spec.delete_policy == "Delete":
                transfer.remove_quietly(sftp, place.path)
                done.append(f"deleted {place.path}")
    return done
