package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The udhcpc hook script (/etc/udhcpc.script in the initramfs) configures the link and writes
// the lease here; udhcpc itself keeps running to renew it.
const leaseFile = "/run/lease"

type Lease struct {
	Iface, MAC, IP, Mask, Router, Hostname string
}

// bootNIC is the first Ethernet interface by name: the VMs have one NIC, which is the one they
// network-booted from.
func bootNIC(wait time.Duration) (string, string, error) {
	deadline := time.Now().Add(wait)
	for {
		entries, _ := os.ReadDir("/sys/class/net")
		var names []string
		for _, e := range entries {
			t, _ := os.ReadFile("/sys/class/net/" + e.Name() + "/type")
			if e.Name() != "lo" && strings.TrimSpace(string(t)) == "1" {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		if len(names) > 0 {
			mac, _ := os.ReadFile("/sys/class/net/" + names[0] + "/address")
			return names[0], strings.TrimSpace(string(mac)), nil
		}
		if time.Now().After(deadline) {
			return "", "", errors.New("no Ethernet interface (virtio_net not loaded?)")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func startDHCP() (*Lease, error) {
	iface, mac, err := bootNIC(20 * time.Second)
	if err != nil {
		return nil, err
	}
	_ = run("ip", "link", "set", "lo", "up")
	if err := run("ip", "link", "set", iface, "up"); err != nil {
		return nil, err
	}
	// Foreground udhcpc without -n retries discovery forever and renews the lease, as Talos does.
	cmd := exec.Command("udhcpc", "-f", "-i", iface, "-s", "/etc/udhcpc.script", "-t", "4", "-T", "3", "-A", "5", "-O", "hostname")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); mark("error", "error", "udhcpc exited") }()
	start := time.Now()
	for {
		if l, err := readLease(); err == nil {
			l.Iface, l.MAC = iface, mac
			if l.Hostname == "" {
				l.Hostname = fallbackHostname(mac)
				_ = syscall.Sethostname([]byte(l.Hostname))
			}
			return l, nil
		}
		if time.Since(start) > 30*time.Second {
			logf("still waiting for a DHCP lease on %s (%s)", iface, mac)
			start = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Talos names an unnamed machine talos-<random>; a MAC-derived name is as unique and stable.
func fallbackHostname(mac string) string {
	h := strings.ReplaceAll(mac, ":", "")
	if len(h) > 6 {
		h = h[len(h)-6:]
	}
	return "talos-" + h
}

func readLease() (*Lease, error) {
	b, err := os.ReadFile(leaseFile)
	if err != nil {
		return nil, err
	}
	l := &Lease{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "ip":
			l.IP = v
		case "mask":
			l.Mask = v
		case "router":
			l.Router = strings.Fields(v + " ")[0]
		case "hostname":
			l.Hostname = v
		}
	}
	if l.IP == "" {
		return nil, errors.New("lease without an address")
	}
	return l, nil
}

// applyStatic adds the config's static addresses for this NIC next to the DHCP one, so the
// operator's probe of the first static address reaches the API as on a real install.
func applyStatic(cfg *MachineConfig, l *Lease) {
	if cfg.Hostname != "" {
		if err := syscall.Sethostname([]byte(cfg.Hostname)); err == nil {
			l.Hostname = cfg.Hostname
		}
	}
	for _, si := range cfg.Interfaces {
		if !(si.HardwareAddr == l.MAC || (si.Name != "" && si.Name == l.Iface)) {
			continue
		}
		for _, a := range si.Addresses {
			if err := run("ip", "addr", "replace", a, "dev", l.Iface); err != nil {
				logf("static address %s: %v", a, err)
			}
		}
		for _, gw := range si.Gateways {
			if err := run("ip", "route", "replace", "default", "via", gw, "dev", l.Iface); err != nil {
				logf("default route via %s: %v", gw, err)
			}
		}
	}
}

// addresses lists the machine's global unicast IPs, static ones first (the operator probes the
// first static address).
func addresses(cfg *MachineConfig, l *Lease) []net.IP {
	var out []net.IP
	seen := map[string]bool{}
	add := func(ip net.IP) {
		if ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !seen[ip.String()] {
			seen[ip.String()] = true
			out = append(out, ip)
		}
	}
	for _, si := range cfg.Interfaces {
		if si.HardwareAddr == l.MAC || (si.Name != "" && si.Name == l.Iface) {
			for _, a := range si.Addresses {
				ip, _, err := net.ParseCIDR(a)
				if err != nil {
					ip = net.ParseIP(a)
				}
				add(ip)
			}
		}
	}
	add(net.ParseIP(l.IP))
	if ifaces, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifaces {
			if n, ok := a.(*net.IPNet); ok {
				add(n.IP)
			}
		}
	}
	return out
}
