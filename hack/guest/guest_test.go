package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// talosCA returns a CA in the format of operators/talosdevice/bundle.py: Ed25519, the key as
// PKCS#8 under the "ED25519 PRIVATE KEY" label.
func talosCA(t *testing.T) (crtPEM, keyPEM []byte) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"talos"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := x509.MarshalPKCS8PrivateKey(priv)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "ED25519 PRIVATE KEY", Bytes: k})
}

func config(crt, key []byte) []byte {
	return []byte("version: v1alpha1\nmachine:\n  type: controlplane\n  ca:\n    crt: " +
		base64.StdEncoding.EncodeToString(crt) + "\n    key: " + base64.StdEncoding.EncodeToString(key) +
		"\n  network:\n    interfaces:\n      - deviceSelector: {hardwareAddr: \"52:54:00:12:34:56\"}\n" +
		"        addresses: [10.20.0.10/24]\n        routes: [{network: 0.0.0.0/0, gateway: 10.20.0.1}]\n" +
		"---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: cp1\n")
}

func TestStoreRoundTripAndParse(t *testing.T) {
	crt, key := talosCA(t)
	raw := config(crt, key)
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(disk, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readStoredConfig(disk); err != errNoConfig {
		t.Fatalf("blank disk: %v", err)
	}
	if _, err := storeConfig(disk, raw); err != nil {
		t.Fatal(err)
	}
	cfg, err := readStoredConfig(disk)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Type != "controlplane" || cfg.Hostname != "cp1" || len(cfg.Interfaces) != 1 ||
		cfg.Interfaces[0].Gateways[0] != "10.20.0.1" || string(cfg.Raw) != string(raw) {
		t.Fatalf("parsed %+v", cfg)
	}
	// A flipped byte in the body must not be taken for a config.
	f, _ := os.OpenFile(disk, os.O_RDWR, 0)
	_, _ = f.WriteAt([]byte("X"), 16<<20-storeSize+200)
	f.Close()
	if _, err := readStoredConfig(disk); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("corrupt config accepted: %v", err)
	}
}

func TestParseConfigRejects(t *testing.T) {
	for _, body := range []string{"", "machine: {type: worker}\n", "version: v1alpha1\n", "{{{"} {
		if _, err := parseConfig([]byte(body)); err == nil {
			t.Errorf("accepted %q", body)
		}
	}
}

func TestServerCertVerifiesAgainstCA(t *testing.T) {
	crt, key := talosCA(t)
	for _, withKey := range []bool{true, false} {
		k := key
		if !withKey {
			k = nil
		}
		cfg, err := parseConfig(config(crt, k))
		if err != nil {
			t.Fatal(err)
		}
		cert, source, err := serverCert(cfg, []net.IP{net.ParseIP("10.20.0.10")}, "cp1")
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(cert.Certificate[0])
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(crt)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.20.0.10"})
		if withKey && (err != nil || source != "machine") {
			t.Fatalf("machine CA: %v %s", err, source)
		}
		if !withKey && (err == nil || source != "ephemeral") {
			t.Fatalf("worker: %v %s", err, source)
		}
	}
}

func TestExpandURL(t *testing.T) {
	got := expandURL("http://b/config?mac=${mac}&h=${hostname}&u=x", &Lease{MAC: "52:54:00:aa:bb:cc"})
	if !strings.Contains(got, "mac=52%3A54%3A00%3Aaa%3Abb%3Acc") || strings.Contains(got, "${") {
		t.Fatal(got)
	}
}

func TestVersionTag(t *testing.T) {
	for image, want := range map[string]string{
		"ghcr.io/siderolabs/installer:v1.12.0":                     "v1.12.0",
		"factory.talos.dev/installer/abc123:v1.12.1-beta.0":        "v1.12.1-beta.0",
		"registry.lab:5000/siderolabs/installer:v1.11.5@sha256:00": "v1.11.5",
		"registry.lab:5000/installer":                              "",
		"ghcr.io/siderolabs/installer:latest":                      "",
		"":                                                         "",
	} {
		if got := versionTag(image); got != want {
			t.Errorf("versionTag(%q) = %q, want %q", image, got, want)
		}
	}
}

// clientCert is the talosconfig admin certificate: Ed25519, signed by the machine CA.
func clientCert(t *testing.T, caCrt, caKey []byte) tls.Certificate {
	ca, err := parseCertPEM(caCrt)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := parseKeyPEM(caKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"os:admin"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

func TestAPIServesVersionOverMutualTLS(t *testing.T) {
	crt, key := talosCA(t)
	raw := strings.Replace(string(config(crt, key)), "  type: controlplane\n",
		"  type: controlplane\n  install: {image: \"ghcr.io/siderolabs/installer:v1.12.0\"}\n", 1)
	cfg, err := parseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	srv, ln, err := listenAPI(cfg, "127.0.0.1:0", []net.IP{net.ParseIP("127.0.0.1")}, "cp1")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(crt)
	dial := func(certs ...tls.Certificate) machine.MachineServiceClient {
		creds := credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: certs, ServerName: "127.0.0.1"})
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return machine.NewMachineServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := dial(clientCert(t, crt, key))
	resp, err := client.Version(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetMessages()[0].GetVersion().GetTag(); got != "v1.12.0" {
		t.Fatalf("tag %q", got)
	}
	if _, err := client.Hostname(ctx, &emptypb.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Hostname: %v", err)
	}
	if _, err := dial().Version(ctx, &emptypb.Empty{}); err == nil || status.Code(err) == codes.OK {
		t.Fatal("a client without certificate was answered")
	}
	otherCrt, otherKey := talosCA(t)
	if _, err := dial(clientCert(t, otherCrt, otherKey)).Version(ctx, &emptypb.Empty{}); err == nil {
		t.Fatal("a client of another CA was answered")
	}
}

func TestVersionFallsBackToStandinTag(t *testing.T) {
	crt, key := talosCA(t)
	cfg, err := parseConfig(config(crt, key))
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := (&machineAPI{tag: versionOf(cfg)}).Version(context.Background(), &emptypb.Empty{})
	if got := resp.GetMessages()[0].GetVersion().GetTag(); got != standinTag {
		t.Fatalf("tag %q", got)
	}
}
