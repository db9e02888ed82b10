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
	"google.golang.org/grpc/metadata"
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
	cfg, err := parseConfig(config(crt, key))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := serverCert(cfg, []net.IP{net.ParseIP("10.20.0.10")}, "cp1")
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	if _, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.20.0.10"}); err != nil {
		t.Fatal(err)
	}
	worker, _ := parseConfig(config(crt, nil))
	if _, err := serverCert(worker, nil, "w1"); err == nil {
		t.Fatal("a worker config issued its own certificate")
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

// startAPI serves raw as api mode does (state in a temporary directory) and returns the address,
// the node and a channel receiving the lifecycle event that ends the boot.
func startAPI(t *testing.T, raw []byte, faults map[string]bool) (string, *node, chan lifecycleEvent) {
	t.Helper()
	store := dirStore{t.TempDir()}
	if err := store.Save(&nodeState{Config: raw}); err != nil {
		t.Fatal(err)
	}
	st, cfg, err := loadBoot(store, faults)
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(store, st, cfg, faults)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	evs := make(chan lifecycleEvent, 1)
	go func() {
		ev, err := serveBoot(n, serveOpts{listen: addr, ips: []net.IP{net.ParseIP("127.0.0.1")}, hostname: "cp1"})
		if err != nil {
			t.Error(err)
		}
		evs <- ev
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, n, evs
}

func dialAPI(t *testing.T, addr string, roots []byte, certs ...tls.Certificate) machine.MachineServiceClient {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: certs, ServerName: "127.0.0.1"})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return machine.NewMachineServiceClient(conn)
}

func withInstall(raw []byte, image string) []byte {
	return []byte(strings.Replace(string(raw), "  type: controlplane\n",
		"  type: controlplane\n  install: {image: \""+image+"\"}\n", 1))
}

func TestAPIServesVersionOverMutualTLS(t *testing.T) {
	crt, key := talosCA(t)
	addr, _, _ := startAPI(t, withInstall(config(crt, key), "ghcr.io/siderolabs/installer:v1.12.0"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := dialAPI(t, addr, crt, clientCert(t, crt, key))
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
	if _, err := dialAPI(t, addr, crt).Version(ctx, &emptypb.Empty{}); err == nil || status.Code(err) == codes.OK {
		t.Fatal("a client without certificate was answered")
	}
	otherCrt, otherKey := talosCA(t)
	if _, err := dialAPI(t, addr, crt, clientCert(t, otherCrt, otherKey)).Version(ctx, &emptypb.Empty{}); err == nil {
		t.Fatal("a client of another CA was answered")
	}
}

func TestVersionFallsBackToStandinTag(t *testing.T) {
	crt, key := talosCA(t)
	st := &nodeState{Config: config(crt, key)}
	if _, err := boot(st, nil); err != nil {
		t.Fatal(err)
	}
	if st.Version != standinTag {
		t.Fatalf("tag %q", st.Version)
	}
}

func TestCanApplyImmediate(t *testing.T) {
	base := "version: v1alpha1\nmachine:\n  type: worker\n  token: abc\n  features: {rbac: true}\ncluster:\n  controlPlane: {endpoint: https://10.0.0.1:6443}\n"
	add := func(s string) []byte {
		return []byte(strings.Replace(base, "  token: abc\n", "  token: abc\n"+s, 1))
	}
	immediate := map[string][]byte{
		"sysctls":            add("  sysctls: {vm.max_map_count: \"262144\"}\n"),
		"nodeLabels":         add("  nodeLabels: {rack: a}\n"),
		"install image":      add("  install: {image: ghcr.io/siderolabs/installer:v1.12.1}\n"),
		"network":            add("  network: {hostname: x}\n"),
		"kubelet":            add("  kubelet: {extraArgs: {max-pods: \"200\"}}\n"),
		"cluster":            []byte(strings.Replace(base, "10.0.0.1", "10.0.0.2", 1)),
		"features.kubePrism": []byte(strings.Replace(base, "{rbac: true}", "{rbac: true, kubePrism: {enabled: true}}", 1)),
		"other document":     append([]byte(base), []byte("---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: x\n")...),
		"unchanged":          []byte(base),
	}
	for name, next := range immediate {
		if err := canApplyImmediate([]byte(base), next); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	reboot := map[string][]byte{
		"env":           add("  env: {FOO: bar}\n"),
		"files":         add("  files: [{path: /var/x, content: y, op: create}]\n"),
		"token":         []byte(strings.Replace(base, "token: abc", "token: xyz", 1)),
		"features.rbac": []byte(strings.Replace(base, "rbac: true", "rbac: false", 1)),
		"type":          []byte(strings.Replace(base, "type: worker", "type: controlplane", 1)),
	}
	for name, next := range reboot {
		err := canApplyImmediate([]byte(base), next)
		if err == nil || !strings.HasPrefix(err.Error(), "this config change can't be applied in immediate mode\ndiff:\n") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := canApplyImmediate([]byte(base), reboot["env"]); !strings.Contains(err.Error(), "machine.env: added") {
		t.Errorf("diff: %v", err)
	}
}

func TestApplyConfigurationModes(t *testing.T) {
	crt, key := talosCA(t)
	raw := withInstall(config(crt, key), "ghcr.io/siderolabs/installer:v1.12.0")
	addr, n, evs := startAPI(t, raw, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := dialAPI(t, addr, crt, clientCert(t, crt, key))
	apply := func(data []byte, mode machine.ApplyConfigurationRequest_Mode, dry bool) (*machine.ApplyConfiguration, error) {
		resp, err := client.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: data, Mode: mode, DryRun: dry})
		if err != nil {
			return nil, err
		}
		return resp.GetMessages()[0], nil
	}
	if _, err := apply([]byte("not: [a config"), machine.ApplyConfigurationRequest_NO_REBOOT, false); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("garbage: %v", err)
	}
	sysctl := []byte(strings.Replace(string(raw), "  type: controlplane\n", "  type: controlplane\n  sysctls: {a.b: \"1\"}\n", 1))
	m, err := apply(sysctl, machine.ApplyConfigurationRequest_NO_REBOOT, false)
	if err != nil || m.GetMode() != machine.ApplyConfigurationRequest_NO_REBOOT || m.GetModeDetails() != "Applied configuration without a reboot" {
		t.Fatalf("no-reboot: %v %v", m, err)
	}
	if string(n.st.Config) != string(sysctl) {
		t.Fatal("not stored")
	}
	env := []byte(strings.Replace(string(sysctl), "  type: controlplane\n", "  type: controlplane\n  env: {A: b}\n", 1))
	if _, err := apply(env, machine.ApplyConfigurationRequest_NO_REBOOT, false); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "can't be applied in immediate mode") {
		t.Fatalf("no-reboot refused: %v", err)
	}
	m, err = apply(env, machine.ApplyConfigurationRequest_AUTO, true)
	if err != nil || m.GetMode() != machine.ApplyConfigurationRequest_REBOOT || m.GetModeDetails() != "Dry run summary:\nApplied configuration with a reboot (skipped in dry-run).\nConfig diff:\n\n  v1alpha1.machine.env: added\n" {
		t.Fatalf("dry run: %v %v", m, err)
	}
	m, err = apply(env, machine.ApplyConfigurationRequest_STAGED, false)
	if err != nil || m.GetModeDetails() != "Staged configuration to be applied after the next reboot" || string(n.st.Staged) != string(env) {
		t.Fatalf("staged: %v %v", m, err)
	}
	if string(n.st.Config) != string(sysctl) {
		t.Fatal("dry run or staged changed the config")
	}
	m, err = apply(env, machine.ApplyConfigurationRequest_AUTO, false)
	if err != nil || m.GetMode() != machine.ApplyConfigurationRequest_REBOOT {
		t.Fatalf("auto: %v %v", m, err)
	}
	select {
	case ev := <-evs:
		if ev.kind != "reboot" || ev.reason != "apply-config" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reboot")
	}
	st, _, err := loadBoot(n.store, nil)
	if err != nil || string(st.Config) != string(env) || st.Version != "v1.12.0" {
		t.Fatalf("after reboot: %v %+v", err, st)
	}
}

func TestReaderCannotApply(t *testing.T) {
	crt, key := talosCA(t)
	addr, _, _ := startAPI(t, config(crt, key), nil)
	ca, _ := parseCertPEM(crt)
	signer, _ := parseKeyPEM(key)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{Organization: []string{"os:reader"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, pub, signer)
	client := dialAPI(t, addr, crt, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Reset(ctx, &machine.ResetRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("reset by a reader: %v", err)
	}
	if _, err := client.Version(ctx, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
}

func TestUpgradeBootAndRollback(t *testing.T) {
	crt, key := talosCA(t)
	raw := withInstall(config(crt, key), "ghcr.io/siderolabs/installer:v1.12.0")
	addr, n, evs := startAPI(t, raw, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := dialAPI(t, addr, crt, clientCert(t, crt, key)).Upgrade(ctx, &machine.UpgradeRequest{Image: "ghcr.io/siderolabs/installer:v1.12.1"})
	if err != nil || resp.GetMessages()[0].GetAck() != "Upgrade request received" || resp.GetMessages()[0].GetActorId() == "" {
		t.Fatalf("%v %v", resp, err)
	}
	if ev := <-evs; ev.reason != "upgrade" {
		t.Fatalf("%+v", ev)
	}
	saved, _ := n.store.Load()
	rolled := *saved
	st, _, _ := loadBoot(n.store, nil)
	if st.Version != "v1.12.1" || st.PendingVersion != "" {
		t.Fatalf("upgraded: %+v", st)
	}
	if _, err := boot(&rolled, map[string]bool{faultUpgradeRollback: true}); err != nil || rolled.Version != "v1.12.0" || rolled.PendingVersion != "" {
		t.Fatalf("rollback: %v %+v", err, rolled)
	}
}

func TestResetWipes(t *testing.T) {
	crt, key := talosCA(t)
	addr, n, evs := startAPI(t, config(crt, key), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := dialAPI(t, addr, crt, clientCert(t, crt, key))
	_, err := client.Reset(ctx, &machine.ResetRequest{Mode: machine.ResetRequest_USER_DISKS,
		SystemPartitionsToWipe: []*machine.ResetPartitionSpec{{Label: "STATE", Wipe: true}}})
	if err == nil || !strings.Contains(err.Error(), "USER_DISKS doesn't support SystemPartitionsToWipe") {
		t.Fatalf("invalid input: %v", err)
	}
	resp, err := client.Reset(ctx, &machine.ResetRequest{Graceful: true, Reboot: false})
	if err != nil || resp.GetMessages()[0].GetActorId() == "" {
		t.Fatalf("%v %v", resp, err)
	}
	if ev := <-evs; ev.kind != "poweroff" || !ev.wipe || !ev.full {
		t.Fatalf("%+v", ev)
	}
	// The VM's disk store: the install is gone and nothing is left to boot.
	dev := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(dev, append([]byte("BOOTSECTOR"), make([]byte, 16<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	ds := diskStore{dev}
	if err := ds.Save(&nodeState{Config: n.st.Config, Version: "v1.12.0", Staged: n.st.Config}); err != nil {
		t.Fatal(err)
	}
	if st, err := ds.Load(); err != nil || st.Version != "v1.12.0" || len(st.Staged) == 0 {
		t.Fatalf("%v %+v", err, st)
	}
	if err := ds.Wipe(true); err != nil {
		t.Fatal(err)
	}
	if _, err := readStoredConfig(dev); err != errNoConfig {
		t.Fatalf("config survived: %v", err)
	}
	head := make([]byte, 10)
	f, _ := os.Open(dev)
	f.Read(head)
	f.Close()
	if string(head) == "BOOTSECTOR" {
		t.Fatal("boot sector survived")
	}
}

// smbiosStruct is one SMBIOS structure: header, formatted area, strings.
func smbiosStruct(typ byte, formatted []byte, strs ...string) []byte {
	b := append([]byte{typ, byte(4 + len(formatted)), 0, 0}, formatted...)
	for _, s := range strs {
		b = append(append(b, s...), 0)
	}
	if len(strs) == 0 {
		b = append(b, 0)
	}
	return append(b, 0)
}

func TestSMBIOSOEMStrings(t *testing.T) {
	var table []byte
	table = append(table, smbiosStruct(1, make([]byte, 23), "QEMU", "Standard PC")...)
	table = append(table, smbiosStruct(32, make([]byte, 7))...) // no strings
	table = append(table, smbiosStruct(11, []byte{2}, "trellis-guest.fault=upgrade-rollback", "other=1")...)
	table = append(table, smbiosStruct(11, []byte{1}, "trellis-guest.fault=a,b")...)
	table = append(table, smbiosStruct(127, nil)...)
	table = append(table, smbiosStruct(11, []byte{1}, "after-end")...)
	got := smbiosOEMStrings(table)
	want := []string{"trellis-guest.fault=upgrade-rollback", "other=1", "trellis-guest.fault=a,b"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%q", got)
	}
	if f := faultList(faultsFrom(got)); f != "a,b,upgrade-rollback" {
		t.Fatal(f)
	}
}

func TestTrustdToken(t *testing.T) {
	ctx := func(kv ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	}
	if err := checkToken(ctx("token", "s3cret"), "s3cret"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []context.Context{ctx("token", "wrong"), ctx("other", "s3cret"), context.Background()} {
		if err := checkToken(c, "s3cret"); err == nil || err.Error() != "Unauthenticated" {
			t.Fatalf("%v", err)
		}
	}
	if err := checkToken(ctx("token", ""), ""); err == nil {
		t.Fatal("an empty token was accepted")
	}
}

func TestWorkerCertificateFromTrustd(t *testing.T) {
	crt, key := talosCA(t)
	cp, _ := parseConfig([]byte(strings.Replace(string(config(crt, key)), "  type: controlplane\n", "  type: controlplane\n  token: tok.en\n", 1)))
	cert, err := serverCert(cp, []net.IP{net.ParseIP("127.0.0.1")}, "cp1")
	if err != nil {
		t.Fatal(err)
	}
	srv, ln, err := listenTrustd(cp, cert, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()
	worker, _ := parseConfig([]byte(strings.Replace(string(config(crt, nil)), "  type: controlplane\n", "  type: worker\n  token: tok.en\n", 1)))
	ips := []net.IP{net.ParseIP("10.20.0.21")}
	got, err := requestCertificate(worker, ln.Addr().String(), ips, "w1")
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(got.Certificate[0])
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.20.0.21"}); err != nil {
		t.Fatal(err)
	}
	wrong, _ := parseConfig([]byte(strings.Replace(string(config(crt, nil)), "  type: controlplane\n", "  type: worker\n  token: other\n", 1)))
	if _, err := requestCertificate(wrong, ln.Addr().String(), ips, "w1"); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Fatalf("wrong token: %v", err)
	}
	otherCrt, _ := talosCA(t)
	foreign, _ := parseConfig([]byte(strings.Replace(string(config(otherCrt, nil)), "  type: controlplane\n", "  type: worker\n  token: tok.en\n", 1)))
	if _, err := requestCertificate(foreign, ln.Addr().String(), ips, "w1"); err == nil {
		t.Fatal("a worker of another cluster trusted this trustd")
	}
	if ep, err := trustdEndpoint(&MachineConfig{Endpoint: "https://10.20.0.10:6443"}); err != nil || ep != "10.20.0.10:50001" {
		t.Fatal(ep, err)
	}
}

func TestTrustdEndpointHonoursExtraHostEntries(t *testing.T) {
	crt, _ := talosCA(t)
	raw := []byte("version: v1alpha1\nmachine:\n  type: worker\n  ca:\n    crt: " +
		base64.StdEncoding.EncodeToString(crt) +
		"\n  network:\n    extraHostEntries:\n      - {ip: 10.198.0.12, aliases: [Rack.Trellis.Test]}\n" +
		"cluster:\n  controlPlane:\n    endpoint: https://rack.trellis.test:6443\n")
	cfg, err := parseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := trustdEndpoint(cfg); got != "10.198.0.12:50001" {
		t.Fatalf("endpoint from extraHostEntries: %s", got)
	}
	cfg.Hosts = nil
	if got, _ := trustdEndpoint(cfg); got != "rack.trellis.test:50001" {
		t.Fatalf("endpoint without entries: %s", got)
	}
}
