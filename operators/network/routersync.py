"""Converge a router to the desired entries of one Network: read once, diff, minimal writes.

Ownership is the comment tag: ``<prefix>:<network>:<role>[:<namespace>/<name>]``. Only items
carrying this Network's tag are ever set or removed. An untagged item identical to one we want
is used as it is (never written, never removed); an untagged item that collides with one we
want but differs is a conflict, and nothing is written for its owner: for a reservation that
reservation is skipped, for the Network's own infrastructure the whole sync is refused.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from trellis.operators.network.desired import (
    ADDRESS,
    BRIDGE,
    BRIDGE_PORT,
    DHCP_NETWORK,
    DHCP_OPTION,
    DHCP_RELAY,
    DHCP_SERVER,
    DNS_STATIC,
    LEASE,
    MENU_ORDER,
    POOL,
    VLAN,
    Entry,
    network_tag_prefix,
)
from trellis.routeros.api import (
    RouterClient,
    RouterError,
    RouterTrap,
    RouterUnreachable,
    Row,
    Session,
    UnsafeValue,
    canonical,
)


@dataclass(frozen=True)
class MenuSpec:
    path: str
    fields: tuple[str, ...]  # every field we ever manage in this menu
    identities: tuple[tuple[str, ...], ...]  # field sets that must be unique in the menu
    times: frozenset[str] = frozenset()
    macs: frozenset[str] = frozenset()


MENUS: dict[str, MenuSpec] = {
    m.path: m
    for m in (
        MenuSpec(BRIDGE, ("name",), (("name",),)),
        MenuSpec(VLAN, ("name", "vlan-id", "interface"), (("name",), ("interface", "vlan-id"))),
        MenuSpec(BRIDGE_PORT, ("bridge", "interface"), (("interface",),)),
        MenuSpec(ADDRESS, ("address", "interface"), (("address",),)),
        MenuSpec(POOL, ("name", "ranges"), (("name",),)),
        MenuSpec(
            DHCP_SERVER,
            ("name", "interface", "address-pool", "lease-time", "disabled"),
            (("name",), ("interface",)),
            times=frozenset({"lease-time"}),
        ),
        MenuSpec(
            DHCP_NETWORK,
            ("address", "gateway", "dns-server", "domain", "ntp-server", "next-server", "boot-file-name"),
            (("address",),),
        ),
        MenuSpec(
            DHCP_RELAY,
            ("name", "interface", "dhcp-server", "local-address", "disabled"),
            (("name",), ("interface",)),
        ),
        MenuSpec(DHCP_OPTION, ("name", "code", "value"), (("name",),)),
        MenuSpec(
            LEASE,
            ("address", "mac-address", "server", "dhcp-option"),
            (("mac-address", "server"), ("address", "server")),
            macs=frozenset({"mac-address"}),
        ),
        MenuSpec(DNS_STATIC, ("name", "address"), (("name",),)),
    )
}

_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")


def duration_seconds(text: str) -> float | None:
    """RouterOS time values: ``1h30m``, ``1d``, ``01:00:00``, ``3600`` (seconds)."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    if ":" in text:
        days, _, clock = text.rpartition("d") if "d" in text else ("0", "", text)
        parts = clock.split(":")
        if len(parts) == 3 and all(p.replace(".", "", 1).isdigit() for p in parts):
            return int(days or 0) * 86400 + int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
        return None
    m = _DURATION.fullmatch(text)
    if not m or not text:
        return None
    w, d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return w * 604800 + d * 86400 + h * 3600 + mi * 60 + s + ms / 1000


def same_value(menu: MenuSpec, name: str, want: str | None, have: str | None) -> bool:
    if want is None or want == "":
        return have is None or have == ""
    if have is None:
        return False
    if name in menu.times:
        a, b = duration_seconds(want), duration_seconds(have)
        if a is not None and b is not None:
            return a == b
    if name in menu.macs:
        return want.upper() == have.upper()
    return canonical(want) == canonical(have)


def to_wire(value: str) -> str:
    """Booleans go out as yes/no, which every RouterOS version and interface accepts."""
    return {"true": "yes", "false": "no"}.get(value, value)


@dataclass(frozen=True)
class Write:
    kind: str  # add | set | unset | remove
    menu: str
    tag: str = ""
    item_id: str = ""  # set/unset: one id; remove: comma list
    fields: tuple[tuple[str, str], ...] = ()
    owner: str | None = None

    def describe(self) -> str:
        what = " ".join(f"{k}={v}" for k, v in self.fields)
        return f"{self.kind} {self.menu} {self.item_id or self.tag} {what}".strip()


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    conflicts: dict[str | None, list[str]] = field(default_factory=dict)  # owner (None = network) -> why
    adopted: list[str] = field(default_factory=list)  # descriptions of untagged items we use

    @property
    def blocked(self) -> bool:
        return None in self.conflicts


def _matches(row: Row, entry: Mapping[str, str | None], keys: Sequence[str], menu: MenuSpec) -> bool:
    return all(same_value(menu, k, entry.get(k), row.get(k)) and entry.get(k) for k in keys)


def _identical(row: Row, entry: Mapping[str, str | None], menu: MenuSpec) -> bool:
    return all(same_value(menu, k, v, row.get(k)) for k, v in entry.items())


def _label(row: Row) -> str:
    keys = ("name", "address", "mac-address", "interface", "comment")
    return ", ".join(f"{k}={row[k]}" for k in keys if row.get(k))


def plan_changes(
    desired: Sequence[Entry], actual: Mapping[str, Sequence[Row]], prefix: str, network: str
) -> Plan:
    """Compare desired entries with what the router holds; return the minimal writes.

    ``actual`` holds every row of every menu in MENU_ORDER (as printed). Dynamic rows are
    ignored: the router owns them.
    """
    plan = Plan()
    ours_prefix = network_tag_prefix(prefix, network)
    removes: dict[str, list[str]] = defaultdict(list)
    by_menu: dict[str, list[Entry]] = defaultdict(list)
    for e in desired:
        by_menu[e.menu].append(e)
    per_owner_writes: list[Write] = []

    for path in MENU_ORDER:
        spec = MENUS[path]
        rows = [r for r in actual.get(path, ()) if r.get("dynamic") != "true"]
        ours: dict[str, list[Row]] = defaultdict(list)
        foreign: list[Row] = []
        for row in rows:
            comment = row.get("comment", "")
            if comment.startswith(ours_prefix):
                ours[comment].append(row)
            else:
                foreign.append(row)
        wanted_tags = {e.tag for e in by_menu.get(path, ())}
        for tag_, rows_ in ours.items():
            if tag_ not in wanted_tags:
                removes[path].extend(r[".id"] for r in rows_)
        for entry in by_menu.get(path, ()):
            want = entry.field_map()
            existing = ours.get(entry.tag, [])
            if existing:
                # Keep the closest copy; extra copies (from a concurrent writer) go away.
                keep = max(
                    existing, key=lambda r: sum(same_value(spec, k, v, r.get(k)) for k, v in want.items())
                )
                removes[path].extend(r[".id"] for r in existing if r is not keep)
                set_fields = tuple(
                    (k, to_wire(v)) for k, v in want.items() if v and not same_value(spec, k, v, keep.get(k))
                )
                unset = [k for k, v in want.items() if not v and not same_value(spec, k, v, keep.get(k))]
                blocker = _collision(spec, want, foreign, exclude=keep)
                if blocker:
                    plan.conflicts.setdefault(entry.owner, []).append(blocker)
                    continue
                if set_fields:
                    per_owner_writes.append(
                        Write("set", path, entry.tag, keep[".id"], set_fields, entry.owner)
                    )
                for name in unset:
                    per_owner_writes.append(
                        Write("unset", path, entry.tag, keep[".id"], (("value-name", name),), entry.owner)
                    )
                continue
            twin = next(
                (
                    r
                    for r in foreign
                    if not r.get("comment", "").startswith(f"{prefix}:") and _identical(r, want, spec)
                ),
                None,
            )
            if twin is not None:
                plan.adopted.append(f"{path}: {_label(twin)}")
                continue
            blocker = _collision(spec, want, foreign)
            if blocker:
                plan.conflicts.setdefault(entry.owner, []).append(blocker)
                continue
            fields = (*tuple((k, to_wire(v)) for k, v in want.items() if v), ("comment", entry.tag))
            per_owner_writes.append(Write("add", path, entry.tag, fields=fields, owner=entry.owner))

    if plan.blocked:
        plan.writes = []
        return plan
    # Removals first, children before parents (reverse menu order), one command per menu.
    for path in reversed(MENU_ORDER):
        if removes.get(path):
            plan.writes.append(Write("remove", path, item_id=",".join(removes[path])))
    plan.writes.extend(w for w in per_owner_writes if w.owner not in plan.conflicts)
    return plan


def _collision(
    spec: MenuSpec, want: Mapping[str, str | None], foreign: Iterable[Row], exclude: Row | None = None
) -> str:
    for keys in spec.identities:
        for row in foreign:
            if row is exclude or not _matches(row, want, keys, spec):
                continue
            owner = row.get("comment") or "untagged"
            return f"{spec.path}: an item not managed by this Network ({owner}) already has {_label(row)}"
    return ""


def _reader(path: str, lease_server: str | None) -> Callable[[Session], list[Row]]:
    spec = MENUS[path]
    props = (".id", "comment", "dynamic", *spec.fields)
    where = {"server": lease_server} if path == LEASE and lease_server else None
    return lambda sess: sess.print(path, props, where)


def read_state(sess: Session, lease_server: str | None = None) -> dict[str, list[Row]]:
    """One print per managed menu, limited to the properties we compare.

    Leases are only ever ours or in conflict with ours on our own DHCP server, so with
    ``lease_server`` only that server's leases are read (a router holds every Network's).
    """
    return {path: _reader(path, lease_server)(sess) for path in MENU_ORDER}


def read_state_parallel(client: RouterClient, lease_server: str | None = None) -> dict[str, list[Row]]:
    """``read_state`` with the menus spread over the connection pool (still one print per menu).

    A read that lost its connection (a pooled one the router dropped) is retried once.
    """
    readers = [_reader(path, lease_server) for path in MENU_ORDER]
    state: dict[str, list[Row]] = {}
    for path, reader, rows in zip(MENU_ORDER, readers, client.run_parallel(readers), strict=True):
        if isinstance(rows, RouterUnreachable):
            rows = client.call(reader, retries=1)
        if isinstance(rows, RouterError):
            raise rows
        state[path] = rows
    return state


@dataclass
class ApplyResult:
    writes: int = 0
    errors: list[tuple[Write, RouterError]] = field(default_factory=list)


def apply_plan(client: RouterClient, plan: Plan) -> ApplyResult:
    """Issue the writes phase by phase; independent writes of one phase run in parallel.

    A failing write is recorded and the remaining phases still run for other owners, except
    that a failure in the Network's own infrastructure stops everything after it.
    """
    result = ApplyResult()
    phases: list[list[Write]] = []
    for w in plan.writes:
        phase_key = (w.kind == "remove", w.menu)
        if phases and (phases[-1][0].kind == "remove", phases[-1][0].menu) == phase_key:
            phases[-1].append(w)
        else:
            phases.append([w])
    failed_owners: set[str | None] = set()
    for phase in phases:
        todo = [w for w in phase if w.owner not in failed_owners]
        ops: list[Callable[[Session], None]] = [_operation(w) for w in todo]
        for write, outcome in zip(todo, _chunked_parallel(client, ops), strict=True):
            result.writes += 1
            if isinstance(outcome, RouterError):
                result.errors.append((write, outcome))
                failed_owners.add(write.owner)
        if None in failed_owners:
            break
    return result


def _operation(w: Write) -> Callable[[Session], None]:
    def run(sess: Session) -> None:
        if w.kind == "add":
            sess.add(w.menu, dict(w.fields))
        elif w.kind == "set":
            sess.set(w.menu, w.item_id, dict(w.fields))
        elif w.kind == "unset":
            sess.command(f"{w.menu}/unset", {".id": w.item_id, **dict(w.fields)})
        elif w.kind == "remove":
            sess.remove(w.menu, w.item_id.split(","))

    return run


def _chunked_parallel(client: RouterClient, ops: list[Callable[[Session], None]]) -> list[RouterError | None]:
    """Run ops over the pool: worker i takes every n-th op, all on one connection."""
    if not ops:
        return []
    workers = min(client.max_connections, len(ops))
    chunks = [ops[i::workers] for i in range(workers)]

    def run_chunk(chunk: list[Callable[[Session], None]]) -> Callable[[Session], list[RouterError | None]]:
        def inner(sess: Session) -> list[RouterError | None]:
            out: list[RouterError | None] = []
            for op in chunk:
                try:
                    op(sess)
                    out.append(None)
                except RouterError as exc:
                    out.append(exc)
                    if not _recoverable(exc):
                        raise
            return out

        return inner

    chunk_results = client.run_parallel([run_chunk(c) for c in chunks])
    results: list[RouterError | None] = [None] * len(ops)
    for w, outcome in enumerate(chunk_results):
        positions = range(w, len(ops), workers)
        if isinstance(outcome, RouterError):
            # The connection died mid-chunk: we do not know which writes landed; the next read tells.
            for pos in positions:
                results[pos] = outcome
            continue
        for pos, item in zip(positions, outcome, strict=False):
            results[pos] = item
    return results


def _recoverable(exc: RouterError) -> bool:
    return isinstance(exc, RouterTrap | UnsafeValue)
