package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const apiPort = "50000"

// parseKeyPEM reads the CA key whatever its label: Talos writes Ed25519 PKCS#8 under
// "ED25519 PRIVATE KEY" and EC keys as SEC 1 "EC PRIVATE KEY".
func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("CA key is not PEM")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("CA key (%s) is not PKCS#8, SEC 1 or PKCS#1", block.Type)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// serverCert issues the API certificate at boot, as apid does on a control plane, signed by the
// machine CA (the config carries its key). Workers get theirs from trustd (trustd.go).
func serverCert(cfg *MachineConfig, ips []net.IP, hostname string) (tls.Certificate, error) {
	caCert, err := parseCertPEM(cfg.CACrt)
	if err != nil {
		return tls.Certificate{}, err
	}
	if len(cfg.CAKey) == 0 {
		return tls.Certificate{}, errors.New("machine.ca.key is empty: a worker's certificate comes from trustd")
	}
	caKey, err := parseKeyPEM(cfg.CAKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	// An hour back: the VM's RTC and the host may disagree slightly.
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: hostname},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips, DNSNames: []string{hostname, "localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing the API certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caCert.Raw}, PrivateKey: key}, nil
}

// standinTag is what Version reports when the config's machine.install.image carries no version
// tag (a digest, "latest", a custom build): recognisably not a real Talos release.
const standinTag = "v1.12.0-trellis-standin"

func versionResponse(tag string) *machine.VersionResponse {
	return &machine.VersionResponse{Messages: []*machine.Version{{
		Version: &machine.VersionInfo{
			Tag: tag, Sha: "trellis-standin", GoVersion: runtime.Version(), Os: runtime.GOOS, Arch: runtime.GOARCH,
		},
		Platform: &machine.PlatformInfo{Name: "metal", Mode: "metal"},
	}}}
}

func versionOf(cfg *MachineConfig) string {
	if cfg.TalosVersion != "" {
		return cfg.TalosVersion
	}
	return standinTag
}

// serveOpts are one boot's API settings.
type serveOpts struct {
	listen       string   // the Talos API, host:port
	trustdListen string   // control planes: trustd's host:port ("" = none)
	trustd       string   // workers: trustd to ask ("" = cluster.controlPlane.endpoint's host:50001)
	ips          []net.IP // addresses the API certificate names (127.0.0.1 is added)
	hostname     string
	trustdRetry  time.Duration
}

// serveBoot serves the Talos API (and trustd on a control plane) for one boot of n, until an API
// call asks for a reboot, power-off or reset; it returns that event once the call has answered.
func serveBoot(n *node, o serveOpts) (lifecycleEvent, error) {
	n.mu.Lock()
	cfg, version := n.cfg, n.st.Version
	n.mu.Unlock()
	ips := append(append([]net.IP{}, o.ips...), net.IPv4(127, 0, 0, 1))
	var cert tls.Certificate
	var err error
	source := "machine"
	if len(cfg.CAKey) > 0 {
		cert, err = serverCert(cfg, ips, o.hostname)
	} else {
		source = "trustd"
		endpoint := o.trustd
		if endpoint == "" {
			if endpoint, err = trustdEndpoint(cfg); err != nil {
				return lifecycleEvent{}, err
			}
		}
		cert, err = workerCert(cfg, endpoint, ips, o.hostname, o.trustdRetry, nil)
	}
	if err != nil {
		return lifecycleEvent{}, err
	}
	n.mu.Lock()
	n.cert, n.busy = cert, false
	n.mu.Unlock()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return lifecycleEvent{}, err
	}
	strs := make([]string, len(o.ips))
	for i, ip := range o.ips {
		strs[i] = ip.String()
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	mark("installed", "api", net.JoinHostPort(strs[0], port), "addresses", strings.Join(strs, ","),
		"hostname", o.hostname, "ca", source, "version", version)
	// trustd after the installed marker: tests read that marker as the first line.
	var tsrv *grpc.Server
	if len(cfg.CAKey) > 0 && o.trustdListen != "" {
		srv, tln, err := listenTrustd(cfg, cert, o.trustdListen)
		if err != nil {
			mark("trustd-error", "error", err.Error())
		} else {
			tsrv = srv
			go func() { _ = srv.Serve(tln) }()
		}
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(n.tlsConfig())))
	machine.RegisterMachineServiceServer(srv, n)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case ev := <-n.events:
		// The call that asked has answered once GracefulStop returns (bounded: a client may hold
		// its connection open).
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			srv.Stop()
		}
		if tsrv != nil {
			tsrv.Stop()
		}
		return ev, nil
	case err := <-errc:
		if tsrv != nil {
			tsrv.Stop()
		}
		return lifecycleEvent{}, err
	}
}

// loadBoot reads the stored state, boots it (staged config, pending upgrade) and saves the result.
func loadBoot(store nodeStore, faults map[string]bool) (*nodeState, *MachineConfig, error) {
	st, err := store.Load()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := boot(st, faults)
	if err != nil {
		return nil, nil, err
	}
	return st, cfg, store.Save(st)
}

// serveAPI is the VM's disk mode: the state on the disk, faults from SMBIOS OEM strings, reboots
// and power-offs for real (QEMU runs with -no-reboot: the rack restarts a reset machine with its
// next boot device and keeps a powered-off one off).
func serveAPI(l *Lease) {
	store := diskStore{disk}
	faults := vmFaults()
	st, cfg, err := loadBoot(store, faults)
	if err != nil {
		fatal(err)
	}
	mark("config", "source", "disk", "bytes", strconv.Itoa(len(cfg.Raw)), "sha256", cfg.SHA256, "type", cfg.Type)
	applyStatic(cfg, l)
	n := newNode(store, st, cfg, faults)
	ev, err := serveBoot(n, serveOpts{listen: ":" + apiPort, trustdListen: ":" + trustdPort,
		ips: addresses(cfg, l), hostname: l.Hostname, trustdRetry: retryInterval})
	if err != nil {
		fatal(err)
	}
	// Talos takes seconds to get from the answer to the reboot; the answer (and its trailers) must
	// leave the machine before QEMU ends (user-mode networking drops what it still buffers).
	time.Sleep(time.Second)
	if ev.wipe {
		if err := store.Wipe(ev.full); err != nil {
			mark("wipe-error", "error", err.Error())
		} else {
			mark("wiped", "full", strconv.FormatBool(ev.full))
		}
	}
	syscall.Sync()
	cmd := syscall.LINUX_REBOOT_CMD_RESTART
	if ev.kind == "poweroff" {
		cmd = syscall.LINUX_REBOOT_CMD_POWER_OFF
		mark("poweroff", "reason", ev.reason)
	} else {
		mark("reboot", "reason", ev.reason)
	}
	time.Sleep(200 * time.Millisecond) // let the serial line drain
	_ = syscall.Reboot(cmd)
	idle()
}

// apiCommand is `trellis-guest api --config FILE [--listen ADDR] [--state-dir DIR] [--fault F]
// [--reboot-seconds N] [--trustd-listen ADDR] [--trustd ADDR]`: the disk mode's Talos API as an
// ordinary process (not PID 1, no DHCP, no disk), for tests on the host. The certificate names
// the listen address, the config's static addresses and 127.0.0.1.
//
// The state lives in --state-dir (a temporary directory when not given): config.yaml (the
// installed config; when present at start it wins over --config, as a disk's install does),
// staged.yaml, version, pending-version, and calls.jsonl (one JSON object per API call). A
// reboot closes the listeners, waits --reboot-seconds and serves again from the new state.
// Reset wipes the state; with reboot=false the process exits 0 (powered off), with reboot=true
// it exits 0 as well (the next boot would go to PXE: nothing installed to serve).
func apiCommand(args []string) int {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	path := fs.String("config", "", "Talos machine config (YAML) as the boot service serves it")
	listen := fs.String("listen", "127.0.0.1:"+apiPort, "address:port to serve the Talos API on")
	stateDir := fs.String("state-dir", "", "directory keeping config, version, staged config and calls.jsonl")
	var faultFlags []string
	fs.Func("fault", "inject a fault (upgrade-rollback); repeatable or comma-separated", func(v string) error {
		faultFlags = append(faultFlags, "trellis-guest.fault="+v)
		return nil
	})
	rebootSeconds := fs.Float64("reboot-seconds", 2, "seconds a reboot keeps the API down")
	trustdListen := fs.String("trustd-listen", "", "control planes: trustd address (default: the --listen host, port 50001; off to disable)")
	trustdAddr := fs.String("trustd", "", "workers: trustd to ask for the API certificate (default: cluster.controlPlane.endpoint host, port 50001)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, err error) int {
		fmt.Fprintln(os.Stderr, "trellis-guest api:", err)
		return code
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fail(2, err)
	}
	dir := *stateDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "trellis-guest-"); err != nil {
			return fail(1, err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(1, err)
	}
	store := dirStore{dir}
	if _, err := os.Stat(store.path("config.yaml")); err != nil {
		raw, err := os.ReadFile(*path)
		if err != nil {
			return fail(2, err)
		}
		if _, err := parseConfig(raw); err != nil {
			return fail(2, err)
		}
		if err := store.Save(&nodeState{Config: raw}); err != nil {
			return fail(1, err)
		}
	}
	faults := faultsFrom(faultFlags)
	if len(faults) > 0 {
		mark("faults", "faults", strings.Join(sortedKeys(faults), ","), "source", "flag")
	}
	calls, err := os.OpenFile(store.path("calls.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fail(1, err)
	}
	defer calls.Close()
	tl := *trustdListen
	switch tl {
	case "":
		tl = net.JoinHostPort(host, trustdPort)
	case "off":
		tl = ""
	}
	var n *node
	for {
		st, cfg, err := loadBoot(store, faults)
		if err != nil {
			return fail(2, err)
		}
		if n == nil {
			n = newNode(store, st, cfg, faults)
			n.calls = calls
		} else {
			n.mu.Lock()
			n.st, n.cfg = st, cfg
			n.mu.Unlock()
		}
		var ips []net.IP
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			ips = append(ips, ip)
		}
		for _, si := range cfg.Interfaces {
			for _, a := range si.Addresses {
				if ip, _, err := net.ParseCIDR(a); err == nil {
					ips = append(ips, ip)
				}
			}
		}
		if len(ips) == 0 {
			ips = append(ips, net.IPv4(127, 0, 0, 1))
		}
		hostname := cfg.Hostname
		if hostname == "" {
			hostname = "localhost"
		}
		ev, err := serveBoot(n, serveOpts{listen: *listen, trustdListen: tl, trustd: *trustdAddr,
			ips: ips, hostname: hostname, trustdRetry: 2 * time.Second})
		if err != nil {
			return fail(1, err)
		}
		if ev.wipe {
			if err := store.Wipe(ev.full); err != nil {
				return fail(1, err)
			}
			mark("wiped", "full", strconv.FormatBool(ev.full))
		}
		if ev.kind == "poweroff" {
			mark("poweroff", "reason", ev.reason)
			return 0
		}
		mark("reboot", "reason", ev.reason, "seconds", strconv.FormatFloat(*rebootSeconds, 'f', -1, 64))
		if ev.wipe {
			mark("halt", "reason", "nothing installed: a machine would boot from the network now")
			return 0
		}
		time.Sleep(time.Duration(*rebootSeconds * float64(time.Second)))
	}
}
