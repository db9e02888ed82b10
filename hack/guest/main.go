// trellis-guest: a Talos Linux stand-in for test VMs. It is PID 1 of a small initramfs (after the
// busybox /init has mounted the pseudo file systems and loaded the virtio modules) and does what
// Talos does as far as the boot service and the TalosDevice operator can see: fetch
// talos.config= until it is served, "install" to the disk, reboot, then answer on the Talos API port.
//
// Modes, chosen from the kernel command line and the disk:
//
//	pxe   talos.config=<URL> given. A valid config already stored on /dev/vda is used as it is
//	      (an installed Talos ignores the network config), unless talos.experimental.wipe=system.
//	      Otherwise: DHCP, GET the URL every 5 s until 200 and a valid machine config, write the
//	      image from trellis.standin.image=<URL> raw to /dev/vda, store the config in the disk's
//	      last 4 MiB, reboot.
//	disk  no talos.config, a valid config stored on /dev/vda: DHCP, then the Talos API on :50000:
//	      a gRPC server (TLS 1.2+, ALPN h2, client certificates verified against machine.ca.crt)
//	      with Talos' own MachineService (github.com/siderolabs/talos/pkg/machinery/api/machine):
//	      Version, ApplyConfiguration, Upgrade and Reset (lifecycle.go); every other call is gRPC
//	      status 12 Unimplemented. Version answers with the installed version: at first the tag of
//	      machine.install.image when it is a version (v1.12.0), else v1.12.0-trellis-standin; an
//	      Upgrade's image tag after the reboot. Control planes (machine.ca.key present) sign their
//	      API certificate with the machine CA and serve trustd's SecurityService on :50001;
//	      workers ask that trustd (cluster.controlPlane.endpoint's host, port 50001) for theirs.
//	      State (config, staged config, version) persists in the disk's last 4 MiB; faults come
//	      from SMBIOS OEM strings trellis-guest.fault=<fault> (/sys/firmware/dmi/tables/DMI).
//	iso   neither: DHCP, then idle (Talos would wait in maintenance mode).
//
// `trellis-guest api --config FILE [--listen ADDR] [--state-dir DIR] [--fault F] [--reboot-seconds N]
// [--trustd-listen ADDR] [--trustd ADDR]` serves the disk mode's Talos API as an ordinary process on
// the host (tests): no PID 1, DHCP or disk; reboots close the listener for N seconds; see apiCommand.
//
// Console markers, one line each on /dev/console (and ttyS0 when that is not the console), for
// tests that read the serial log to tell where a boot stopped. Format:
//
//	trellis-guest: stage=<stage> key=value ...      (values with spaces or quotes are Go-quoted)
//
// Stages and their fields:
//
//	init            mode=pxe|disk|iso kernel=<release>
//	lease           ip= mask= router= mac= hostname= iface=   (first DHCP lease)
//	config-fetch    attempt=N url=<expanded URL> status=<HTTP code>|error [error=...]
//	config-invalid  error=...          (200 but not a Talos machine config; retried like a 403)
//	config          source=url|disk bytes=N sha256=<hex> type=<machine.type>
//	install         image=<URL> bytes=N sha256=<hex> disk=/dev/vda   (image written)
//	install-error   error=...          (download or write failed; retried every 5 s)
//	stored          offset=N bytes=N   (config written to the disk's last 4 MiB)
//	reboot          reason=installed
//	installed       api=<ip>:50000 addresses=<ip,...> hostname= ca=machine|trustd version=<tag>
//	faults          faults=a,b source=smbios-oem-strings|flag
//	staged-applied  sha256=<hex>       (a STAGED config became the config at this boot)
//	upgraded        from=<tag> to=<tag>                  (a pending upgrade took effect)
//	upgrade-rollback version=<old> attempted=<new> fault=upgrade-rollback
//	trustd          listen=<addr>      (control plane)
//	trustd-call     result=signed|error subject= addresses= | code= error=
//	trustd-request  attempt=N endpoint=<host:50001> result=ok|error [error=...]   (worker)
//	api-call        method=ApplyConfiguration mode=<MODE> result=applied|try|staged|reboot|dry-run|error [code=<gRPC code>] [dry_run=true]
//	                method=Upgrade image=<ref> staged= force= preserve= result=accepted|error [code=]
//	                method=Reset reboot= graceful= mode=ALL|SYSTEM_DISK|USER_DISKS result=accepted|error [code=]
//	                (Version calls are not recorded: the operator polls it)
//	wiped           full=true|false    (Reset: the install, or only the config)
//	reboot          reason=installed|apply-config|upgrade|reset [seconds=N in api mode]
//	poweroff        reason=reset
//	halt            reason=...         (api mode: Reset with reboot, nothing left to serve; exit 0)
//	iso             ip= mac=            (live ISO without a config: idles)
//	error           error=...          (fatal; the guest idles so the log shows it)
//
// ca=trustd: a worker's config carries machine.ca.crt without the key; like a real worker it
// sends a CSR to trustd (token machine.token in the gRPC metadata), retrying every 5 s (2 s in api
// mode) until a control plane answers, so its API certificate is issued by the cluster's OS CA.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	disk          = "/dev/vda"
	retryInterval = 5 * time.Second
)

var (
	consoleMu    sync.Mutex
	extraConsole *os.File
)

// mark prints one marker line; kv alternates keys and values.
func mark(stage string, kv ...string) {
	var b strings.Builder
	b.WriteString("trellis-guest: stage=" + stage)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if v == "" || strings.ContainsAny(v, " \t\"'\\\n") {
			v = strconv.Quote(v)
		}
		b.WriteString(" " + kv[i] + "=" + v)
	}
	b.WriteString("\n")
	consoleMu.Lock()
	defer consoleMu.Unlock()
	os.Stdout.WriteString(b.String())
	if extraConsole != nil {
		extraConsole.WriteString(b.String())
	}
}

func logf(format string, args ...any) {
	consoleMu.Lock()
	defer consoleMu.Unlock()
	fmt.Fprintf(os.Stdout, "trellis-guest: "+format+"\n", args...)
}

// fatal keeps PID 1 alive: the kernel would panic if it exited and the marker would scroll away.
func fatal(err error) {
	mark("error", "error", err.Error())
	idle()
}

func idle() {
	for {
		time.Sleep(time.Hour)
	}
}

// Tests read ttyS0; /dev/console is ttyS0 only when it is the last console= argument.
func openExtraConsole() {
	active, _ := os.ReadFile("/sys/class/tty/console/active")
	if strings.Contains(string(active), "ttyS0") {
		return
	}
	if f, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
		extraConsole = f
	}
}

func cmdline() map[string]string {
	raw, _ := os.ReadFile("/proc/cmdline")
	args := map[string]string{}
	for _, f := range strings.Fields(string(raw)) {
		k, v, _ := strings.Cut(f, "=")
		args[k] = v
	}
	return args
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "api" {
		os.Exit(apiCommand(os.Args[2:]))
	}
	openExtraConsole()
	// Only PID 1 is the guest; run elsewhere (by mistake) it must not reboot the machine.
	if os.Getpid() != 1 && os.Getenv("TRELLIS_GUEST_FORCE") == "" {
		fmt.Fprintln(os.Stderr, "trellis-guest runs as PID 1 of the stand-in initramfs")
		os.Exit(2)
	}
	args := cmdline()
	configURL, pxe := args["talos.config"]
	wipe := args["talos.experimental.wipe"] == "system"

	waitForDisk()
	_, storedErr := readStoredConfig(disk)
	mode := "iso"
	switch {
	case pxe:
		mode = "pxe"
	case storedErr == nil:
		mode = "disk"
	}
	mark("init", "mode", mode, "kernel", kernelRelease())
	if storedErr != nil && !os.IsNotExist(storedErr) && storedErr != errNoConfig {
		logf("no stored config on %s: %v", disk, storedErr)
	}

	lease, err := startDHCP()
	if err != nil {
		fatal(err)
	}
	mark("lease", "ip", lease.IP, "mask", lease.Mask, "router", lease.Router, "mac", lease.MAC,
		"hostname", lease.Hostname, "iface", lease.Iface)

	switch {
	case pxe && (storedErr != nil || wipe):
		cfg := fetchConfig(expandURL(configURL, lease))
		install(args["trellis.standin.image"], cfg)
	case storedErr == nil:
		serveAPI(lease)
	default:
		mark("iso", "ip", lease.IP, "mac", lease.MAC)
		idle()
	}
}

// virtio_blk probes asynchronously after insmod; the device node can lag /init by a moment.
func waitForDisk() {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(disk); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
