package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
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
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/emptypb"
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

// serverCert issues the API certificate at boot, as apid does, signed by the machine CA when the
// config carries its key and by a throw-away CA otherwise (workers: see the markers comment).
func serverCert(cfg *MachineConfig, ips []net.IP, hostname string) (tls.Certificate, string, error) {
	caCert, err := parseCertPEM(cfg.CACrt)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	var caKey crypto.Signer
	source := "machine"
	if len(cfg.CAKey) > 0 {
		if caKey, err = parseKeyPEM(cfg.CAKey); err != nil {
			return tls.Certificate{}, "", err
		}
	} else {
		source = "ephemeral"
		_, edKey, _ := ed25519.GenerateKey(rand.Reader)
		caKey = edKey
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"talos"}, CommonName: "trellis-guest ephemeral CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, edKey.Public(), edKey)
		if err != nil {
			return tls.Certificate{}, "", err
		}
		if caCert, err = x509.ParseCertificate(der); err != nil {
			return tls.Certificate{}, "", err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
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
		return tls.Certificate{}, "", fmt.Errorf("signing the API certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caCert.Raw}, PrivateKey: key}, source, nil
}

// standinTag is what Version reports when the config's machine.install.image carries no version
// tag (a digest, "latest", a custom build): recognisably not a real Talos release.
const standinTag = "v1.12.0-trellis-standin"

// machineAPI serves MachineService.Version from the stored config; every other method answers
// Unimplemented through the embedded type, and other services are unknown to the server.
type machineAPI struct {
	machine.UnimplementedMachineServiceServer
	tag string
}

// Version answers as a Talos node asked directly (no proxying through apid, so no metadata): tag
// is the installed release, the rest describes this binary.
func (m *machineAPI) Version(context.Context, *emptypb.Empty) (*machine.VersionResponse, error) {
	return &machine.VersionResponse{Messages: []*machine.Version{{
		Version: &machine.VersionInfo{
			Tag: m.tag, Sha: "trellis-standin", GoVersion: runtime.Version(), Os: runtime.GOOS, Arch: runtime.GOARCH,
		},
		Platform: &machine.PlatformInfo{Name: "metal", Mode: "metal"},
	}}}, nil
}

func versionOf(cfg *MachineConfig) string {
	if cfg.TalosVersion != "" {
		return cfg.TalosVersion
	}
	return standinTag
}

// newAPIServer is apid's TLS as clients see it: the server certificate, client certificates
// required and verified against machine.ca.crt (grpc adds ALPN h2 itself).
func newAPIServer(cfg *MachineConfig, cert tls.Certificate) *grpc.Server {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cfg.CACrt)
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	})
	srv := grpc.NewServer(grpc.Creds(creds))
	machine.RegisterMachineServiceServer(srv, &machineAPI{tag: versionOf(cfg)})
	return srv
}

// listenAPI issues the certificate for ips, listens on addr and prints the installed marker.
func listenAPI(cfg *MachineConfig, addr string, ips []net.IP, hostname string) (*grpc.Server, net.Listener, error) {
	cert, source, err := serverCert(cfg, append(ips, net.IPv4(127, 0, 0, 1)), hostname)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	strs := make([]string, len(ips))
	for i, ip := range ips {
		strs[i] = ip.String()
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	mark("installed", "api", net.JoinHostPort(strs[0], port), "addresses", strings.Join(strs, ","),
		"hostname", hostname, "ca", source, "version", versionOf(cfg))
	return newAPIServer(cfg, cert), ln, nil
}

func serveAPI(cfg *MachineConfig, l *Lease) {
	applyStatic(cfg, l)
	srv, ln, err := listenAPI(cfg, ":"+apiPort, addresses(cfg, l), l.Hostname)
	if err != nil {
		fatal(err)
	}
	fatal(srv.Serve(ln))
}

// apiCommand is `trellis-guest api --config FILE [--listen ADDR]`: the disk mode's Talos API as
// an ordinary process (not PID 1, no DHCP, no disk), for tests on the host. The certificate names
// the listen address, the config's static addresses and 127.0.0.1.
func apiCommand(args []string) int {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	path := fs.String("config", "", "Talos machine config (YAML) as the boot service serves it")
	listen := fs.String("listen", "127.0.0.1:"+apiPort, "address:port to serve the Talos API on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	raw, err := os.ReadFile(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trellis-guest api:", err)
		return 2
	}
	cfg, err := parseConfig(raw)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trellis-guest api:", err)
		return 2
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trellis-guest api:", err)
		return 2
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
	srv, ln, err := listenAPI(cfg, *listen, ips, hostname)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trellis-guest api:", err)
		return 1
	}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "trellis-guest api:", err)
		return 1
	}
	return 0
}
