"""Network (cluster-scoped) and DHCPReservation (namespaced): IPAM, DHCP and PXE for one L2 segment."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from trellis.api.cel import Cel, immutable, ipv4_le, rules
from trellis.api.common import (
    AGE_COLUMN,
    CIDR,
    HTTPURL,
    READY_COLUMN,
    VLANID,
    Duration,
    Hostname,
    IPAddress,
    IPv4Address,
    LinuxInterfaceName,
    MACAddress,
    ObjectName,
    ObservedStatus,
    PrinterColumn,
    ResourceInfo,
    RouterOSName,
    ShortText,
    Timestamp,
    TrellisModel,
    TrellisResource,
)

BootFileName = Annotated[str, Field(max_length=255, pattern=r"^[^\s;'\"`$\\]+$")]
"""A TFTP/HTTP boot file name or path: no whitespace, quotes or shell/CLI metacharacters."""
RootPath = Annotated[str, Field(max_length=512, pattern=r"^[^\s;'\"`$\\]+$")]


class PXEOptions(TrellisModel):
    """Network boot options handed out by DHCP (per Network, overridable per reservation)."""

    next_server: IPAddress | None = Field(
        default=None,
        description="TFTP server address (DHCP siaddr / option 66). Defaults to the DHCP server.",
    )
    boot_file: BootFileName | None = Field(
        default=None, description="Boot file for legacy BIOS PXE clients (e.g. undionly.kpxe)."
    )
    efi_boot_file: BootFileName | None = Field(
        default=None,
        description="Boot file for x86-64 UEFI PXE clients (client arch 7 and 9, e.g. ipxe.efi).",
    )
    arm64_efi_boot_file: BootFileName | None = Field(
        default=None, description="Boot file for arm64 UEFI PXE clients (client arch 11)."
    )
    ipxe_script_url: HTTPURL | None = Field(
        default=None,
        description="Script URL handed to clients that are already iPXE (user-class iPXE), to chain-load.",
    )
    http_boot_url: HTTPURL | None = Field(
        default=None, description="URL for UEFI HTTP boot clients (client arch 16)."
    )
    root_path: RootPath | None = Field(
        default=None,
        description="DHCP root-path (option 17), e.g. iscsi:10.0.0.1::::iqn... to sanboot an exported ISO.",
    )


_BOOT_FIELDS = (
    "nextServer",
    "bootFile",
    "efiBootFile",
    "arm64EfiBootFile",
    "ipxeScriptURL",
    "httpBootURL",
    "rootPath",
)


class ReservationPXEOptions(PXEOptions):
    """Per-host boot options: overrides of the Network's, or none at all (enabled: false)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "self.enabled || !(" + " || ".join(f"has(self.{f})" for f in _BOOT_FIELDS) + ")",
                "boot options cannot be set when enabled is false",
                reason="FieldValueForbidden",
            )
        )
    )

    enabled: bool = Field(
        default=True,
        description="false: this host gets no boot options at all (no next-server, boot file, iPXE script, "
        "HTTP boot URL or root-path), e.g. secondary and BMC NICs.",
    )


class DHCPRange(TrellisModel):
    """Dynamic pool of a Network: both ends inclusive, IPv4 only."""

    start: IPv4Address = Field(description="First address of the dynamic pool.")
    end: IPv4Address = Field(description="Last address of the dynamic pool (not lower than start).")


class DHCPRelay(TrellisModel):
    """DHCP relay on the router, forwarding to a DHCP server elsewhere."""

    server_address: IPAddress = Field(description="Address of the DHCP server requests are relayed to.")


class NetworkDHCP(TrellisModel):
    """How addresses are handed out on this Network."""

    server: Literal["router", "dnsmasq", "relay", "none"] = Field(
        default="router",
        description="Who serves DHCP: the Router's DHCP server, a managed dnsmasq, a DHCP relay on the "
        "Router, or nobody (IPAM only).",
    )
    mode: Literal["server", "proxy"] = Field(
        default="server",
        description="proxy: dnsmasq only adds boot information (proxy DHCP) next to an existing DHCP server.",
    )
    range: DHCPRange | None = Field(
        default=None, description="Dynamic pool. Without it only reserved MAC addresses get an address."
    )
    lease_time: Duration = Field(default="1h", description="Lease time, e.g. 10m, 1h, 1d.")
    dns: Annotated[list[IPAddress], Field(json_schema_extra={"x-kubernetes-list-type": "set"})] | None = (
        Field(default=None, max_length=8, description="DNS servers handed to clients.")
    )
    domain: Hostname | None = Field(default=None, description="DNS domain handed to clients (option 15).")
    ntp: Annotated[list[IPAddress], Field(json_schema_extra={"x-kubernetes-list-type": "set"})] | None = (
        Field(default=None, max_length=8, description="NTP servers handed to clients (option 42).")
    )
    pxe: PXEOptions | None = Field(default=None, description="Network boot options for all clients.")
    relay: DHCPRelay | None = Field(default=None, description="Relay target; required when server is relay.")


class DnsmasqTFTP(TrellisModel):
    """TFTP service of the managed dnsmasq."""

    enabled: bool = Field(default=True, description="Serve the iPXE binaries over TFTP.")
    root: Annotated[str, Field(max_length=255, pattern=r"^/[^\s;'\"`$\\]*$")] | None = Field(
        default=None, description="TFTP root directory inside the dnsmasq container."
    )


class DnsmasqSettings(TrellisModel):
    """Where and how the managed dnsmasq runs (dhcp.server: dnsmasq)."""

    node_name: ObjectName | None = Field(default=None, description="Node that runs dnsmasq (host network).")
    node_selector: dict[str, ShortText] | None = Field(
        default=None, description="Node labels selecting where dnsmasq may run."
    )
    interface: LinuxInterfaceName | None = Field(
        default=None, description="Host interface carrying this Network on the node; created when missing."
    )
    parent_interface: LinuxInterfaceName | None = Field(
        default=None, description="Parent of the VLAN sub-interface created for this Network's vlan."
    )
    address: IPAddress | None = Field(
        default=None, description="Address dnsmasq uses on the interface; must be inside cidr."
    )
    tftp: DnsmasqTFTP | None = Field(default=None, description="TFTP service settings.")


class NetworkDNS(TrellisModel):
    """DNS records published for this Network."""

    publish_reservations: bool = Field(
        default=True, description="Publish an A/AAAA record for every reservation that has a hostname."
    )
    upstream: (
        Annotated[list[IPAddress], Field(json_schema_extra={"x-kubernetes-list-type": "set"})] | None
    ) = Field(default=None, max_length=8, description="Upstream resolvers for the managed dnsmasq.")


_IN_CIDR = "(!isCIDR(self.cidr) || !isIP({ip}) || cidr(self.cidr).containsIP({ip}))"
_RANGE_SET = "has(self.dhcp) && has(self.dhcp.range)"


class NetworkDiscovery(TrellisModel):
    """Hardware discovery: MACs that ask this Network for DHCP without a reservation."""

    enabled: bool = Field(
        default=True,
        description="Publish unknown MACs in status.observedLeases (RouterOS dynamic leases, dnsmasq's DHCP "
        "log) so the BareMetalHost operator can act on them.",
    )
    purpose: Literal["hosts", "bmcs"] = Field(
        default="hosts",
        description="hosts: an unknown MAC becomes a BareMetalHost without BMC (state Unmanaged); bmcs: the "
        "Network carries BMCs, an unknown MAC is matched to a host by bmc.mac, else reported as unmatched.",
    )
    namespace: ObjectName | None = Field(
        default=None,
        description="Namespace of the discovered BareMetalHosts (default: the BareMetalHost operator's own).",
    )
    max_per_minute: int = Field(
        default=10,
        ge=1,
        le=600,
        description="At most this many hosts are created per minute from this Network.",
    )


class ObservedLease(TrellisModel):
    """A MAC that asked this Network for DHCP and has no DHCPReservation on it."""

    mac: MACAddress = Field(description="Client MAC address (lower case).")
    ip: IPAddress | None = Field(default=None, description="Address it was offered or leased, if any.")
    hostname: ShortText | None = Field(default=None, description="Host name the client sent, if any.")
    first_seen: Timestamp = Field(description="When Trellis first saw it.")
    last_seen: Timestamp = Field(description="When it was last seen (refreshed at most once a minute).")


class NetworkSpec(TrellisModel):
    """Desired state of a Network."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "!has(self.gateway) || " + _IN_CIDR.format(ip="self.gateway"),
                "gateway must be inside cidr",
                field_path=".gateway",
            ),
            Cel(
                "!has(self.gateway) || !isCIDR(self.cidr) || !isIP(self.gateway) || "
                # `!=` on IP values has no cost estimate in the apiserver; `!(==)` does.
                "cidr(self.cidr).prefixLength() >= 31 || !(ip(self.gateway) == cidr(self.cidr).ip())",
                "gateway must not be the network address",
                field_path=".gateway",
            ),
            Cel(
                f"!({_RANGE_SET}) || !isCIDR(self.cidr) || cidr(self.cidr).ip().family() == 4",
                "a DHCP range needs an IPv4 cidr",
                field_path=".dhcp.range",
            ),
            Cel(
                f"!({_RANGE_SET}) || ({_IN_CIDR.format(ip='self.dhcp.range.start')} && "
                f"{_IN_CIDR.format(ip='self.dhcp.range.end')})",
                "dhcp.range must be inside cidr",
                field_path=".dhcp.range",
            ),
            Cel(
                f"!({_RANGE_SET}) || !isIP(self.dhcp.range.start) || !isIP(self.dhcp.range.end) || "
                + ipv4_le("self.dhcp.range.start", "self.dhcp.range.end"),
                "dhcp.range.start must not be after dhcp.range.end",
                field_path=".dhcp.range",
            ),
            Cel(
                f"!({_RANGE_SET}) || !has(self.gateway) || !isIP(self.gateway) || "
                "ip(self.gateway).family() != 4 || !isIP(self.dhcp.range.start) || "
                "!isIP(self.dhcp.range.end) || !("
                + ipv4_le("self.dhcp.range.start", "self.gateway")
                + " && "
                + ipv4_le("self.gateway", "self.dhcp.range.end")
                + ")",
                "gateway must not be inside dhcp.range",
                field_path=".dhcp.range",
            ),
            Cel(
                "!has(self.dhcp) || !(self.dhcp.server in ['router', 'relay']) || has(self.router)",
                "dhcp.server router and relay need spec.router",
                field_path=".router",
            ),
            Cel(
                "!has(self.dhcp) || self.dhcp.server != 'relay' || has(self.dhcp.relay)",
                "dhcp.server relay needs dhcp.relay.serverAddress",
                field_path=".dhcp.relay",
            ),
            Cel(
                "!has(self.dhcp) || self.dhcp.mode != 'proxy' || self.dhcp.server == 'dnsmasq'",
                "proxy DHCP is only served by dnsmasq",
                field_path=".dhcp.mode",
            ),
            Cel(
                "!has(self.dnsmasq) || !has(self.dnsmasq.address) || "
                + _IN_CIDR.format(ip="self.dnsmasq.address"),
                "dnsmasq.address must be inside cidr",
                field_path=".dnsmasq.address",
            ),
        )
    )

    cidr: Annotated[CIDR, immutable("cidr")] = Field(
        description="Network address in CIDR notation (immutable), e.g. 10.20.0.0/24."
    )
    gateway: IPAddress | None = Field(
        default=None,
        description="Default gateway handed to clients; also the router's address on this network.",
    )
    vlan: VLANID | None = Field(default=None, description="802.1Q VLAN id carrying this network, if tagged.")
    router: ObjectName | None = Field(
        default=None,
        description="Name of the Router that carries this network "
        "(bridge, gateway address, DHCP server or relay).",
    )
    bridge: RouterOSName | None = Field(
        default=None, description="RouterOS bridge carrying this network. Defaults to trellis-<network name>."
    )
    interface: RouterOSName | None = Field(
        default=None,
        description="RouterOS interface added to the bridge, "
        "or the VLAN interface's parent when vlan is set.",
    )
    dhcp: NetworkDHCP | None = Field(default=None, description="DHCP service for this network.")
    dnsmasq: DnsmasqSettings | None = Field(
        default=None, description="Managed dnsmasq placement (used when dhcp.server is dnsmasq)."
    )
    dns: NetworkDNS | None = Field(default=None, description="DNS records published for this network.")
    discovery: NetworkDiscovery | None = Field(
        default=None, description="Hardware discovery from DHCP requests without a reservation."
    )


class NetworkStatus(ObservedStatus):
    """Observed state of a Network."""

    size: int | None = Field(default=None, ge=0, description="Usable host addresses in cidr.")
    allocated: int | None = Field(default=None, ge=0, description="Addresses held by reservations.")
    free: int | None = Field(
        default=None, ge=0, description="Addresses neither reserved nor in the dynamic range."
    )
    reservations: int | None = Field(default=None, ge=0, description="DHCPReservations on this network.")
    conflicts: int | None = Field(
        default=None, ge=0, description="Reservations in conflict (same IP or MAC)."
    )
    bridge: ShortText | None = Field(default=None, description="Bridge in use on the Router.")
    last_sync_time: Timestamp | None = Field(default=None, description="Last successful backend sync.")
    allocations: dict[str, Annotated[str, Field(max_length=45)]] | None = Field(
        default=None,
        description="Address held by each reservation (<namespace>/<name> -> IP): the IPAM record, written "
        "only by the operator with optimistic concurrency, that keeps automatic allocations stable.",
    )
    observed_leases: list[ObservedLease] | None = Field(
        default=None,
        max_length=64,
        description="With spec.discovery: MACs that asked for DHCP without a reservation, newest first "
        "(bounded; the oldest are dropped).",
    )


class Network(TrellisResource):
    resource = ResourceInfo(
        kind="Network",
        plural="networks",
        short_names=("net",),
        scope="Cluster",
        description="An IP network (one L2 segment): IPAM, DHCP, PXE options and DNS records, served by a "
        "RouterOS router or a managed dnsmasq.",
        printer_columns=(
            PrinterColumn("CIDR", ".spec.cidr"),
            PrinterColumn("Gateway", ".spec.gateway"),
            PrinterColumn("VLAN", ".spec.vlan", type="integer"),
            PrinterColumn("DHCP", ".spec.dhcp.server"),
            PrinterColumn("Router", ".spec.router"),
            PrinterColumn("Allocated", ".status.allocated", type="integer"),
            PrinterColumn("Free", ".status.free", type="integer"),
            READY_COLUMN,
            AGE_COLUMN,
        ),
    )
    kind: Literal["Network"] = Field(default="Network", description="Kind of the object.")
    spec: NetworkSpec = Field(description="Desired state.")
    status: NetworkStatus | None = Field(default=None, description="Observed state.")


class DHCPReservationSpec(TrellisModel):
    """One MAC -> IP/hostname/PXE binding on a Network."""

    network_ref: Annotated[ObjectName, immutable("networkRef")] = Field(
        description="Name of the Network this reservation belongs to (immutable)."
    )
    mac: Annotated[MACAddress, immutable("mac")] = Field(description="Client MAC address (immutable).")
    ip: IPAddress | None = Field(
        default=None,
        description="Reserved address inside the Network's cidr. Left empty, the lowest free address is "
        "allocated and shown in status.ip.",
    )
    hostname: Hostname | None = Field(default=None, description="Host name handed out and published in DNS.")
    pxe: ReservationPXEOptions | None = Field(
        default=None, description="Per-host boot options overriding the Network's, or disabling them."
    )
    allow_in_dynamic_range: bool = Field(
        default=False, description="Allow ip to lie inside the Network's dynamic range."
    )
    default_gateway: bool = Field(
        default=True, description="Hand out the Network's gateway (false for secondary NICs)."
    )


class DHCPReservationStatus(ObservedStatus):
    """Observed state of a DHCPReservation."""

    ip: IPAddress | None = Field(default=None, description="Address in effect (requested or allocated).")
    phase: Literal["Pending", "Allocated", "Ready", "Conflict", "Error"] | None = Field(
        default=None, description="Pending, Allocated (IPAM done), Ready (served), Conflict or Error."
    )
    message: ShortText | None = Field(default=None, description="Why the reservation is not Ready.")


class DHCPReservation(TrellisResource):
    resource = ResourceInfo(
        kind="DHCPReservation",
        plural="dhcpreservations",
        short_names=("dhcpr",),
        scope="Namespaced",
        description="A fixed DHCP binding (MAC -> IP, hostname, boot options) on a Network, created by users "
        "or owned by a BareMetalHost.",
        printer_columns=(
            PrinterColumn("Network", ".spec.networkRef"),
            PrinterColumn("MAC", ".spec.mac"),
            PrinterColumn("IP", ".status.ip"),
            PrinterColumn("Hostname", ".spec.hostname"),
            PrinterColumn("Phase", ".status.phase"),
            AGE_COLUMN,
        ),
    )
    kind: Literal["DHCPReservation"] = Field(default="DHCPReservation", description="Kind of the object.")
    spec: DHCPReservationSpec = Field(description="Desired state.")
    status: DHCPReservationStatus | None = Field(default=None, description="Observed state.")
