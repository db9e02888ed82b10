// Command trellis-testenv runs a real Kubernetes control plane for Trellis tests:
// embedded etcd, kube-apiserver and kube-controller-manager on 127.0.0.1.
//
// It is a multi-call binary. Invoked as "kubectl" (by name or first argument) it is kubectl;
// "apiserver" and "controller-manager" are the child processes that "up" supervises.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "time/tzdata"
)

const defaultControllers = "garbage-collector-controller,namespace-controller," +
	"persistentvolume-binder-controller,persistentvolume-expander-controller"

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name != "kubectl" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	switch name {
	case "kubectl":
		os.Args = append([]string{"kubectl"}, args...)
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			cmdutil.CheckErr(err)
		}
		os.Exit(0)
	case "apiserver":
		cmd := apiserverapp.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "controller-manager":
		cmd := kcmapp.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "up":
		if err := up(args); err != nil {
			fmt.Fprintln(os.Stderr, "trellis-testenv:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: trellis-testenv up --dir DIR | kubectl ... | apiserver ... | controller-manager ...")
		os.Exit(2)
	}
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

// makeCerts writes a CA, an apiserver serving certificate for 127.0.0.1/localhost and a
// service-account signing key, so clients can verify TLS instead of skipping it.
func makeCerts(dir string) ([]byte, error) {
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "trellis-testenv-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "apiserver.crt"), "CERTIFICATE", srvDER); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "apiserver.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(srvKey)); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func startEtcd(dir string) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "trellis-testenv"
	cfg.Dir = filepath.Join(dir, "etcd")
	cu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(clientPort))
	pu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(peerPort))
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true // test data: durability across power loss is not needed
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return nil, "", fmt.Errorf("etcd did not become ready in 60s")
	}
	return e, cu.String(), nil
}

func kubeconfig(server string, ca []byte, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: trellis-testenv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: trellis-testenv
  context:
    cluster: trellis-testenv
    user: admin
    namespace: default
current-context: trellis-testenv
`, server, b64(ca), token)
}

func b64(b []byte) string {
	return strings.TrimSpace(base64Std(b))
}

// child starts this binary again in the given role, with its output in a log file.
type proc struct {
	role string
	cmd  *exec.Cmd
	done chan struct{}
}

func child(dir, role string, args []string, exited chan<- string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, role+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{role}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Children die with us even if we are SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{role: role, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
		exited <- role
	}()
	return p, nil
}

func waitReady(server string, ca []byte, token string, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("apiserver not ready after %s: %s", timeout, last)
}

func up(argv []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory (kubeconfig, logs, etcd data)")
	port := fs.Int("port", 0, "apiserver secure port (0 = pick a free one)")
	controllers := fs.String("controllers", defaultControllers, "kube-controller-manager controllers")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(*dir, "ready.json"))
	ca, err := makeCerts(*dir)
	if err != nil {
		return err
	}
	token := randomToken()
	tokens := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", token)
	if err := os.WriteFile(filepath.Join(*dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	etcd, etcdURL, err := startEtcd(*dir)
	if err != nil {
		return err
	}
	defer etcd.Close()
	if *port == 0 {
		if *port, err = freePort(); err != nil {
			return err
		}
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", *port)
	kcPath := filepath.Join(*dir, "kubeconfig")
	if err := os.WriteFile(kcPath, []byte(kubeconfig(server, ca, token)), 0o600); err != nil {
		return err
	}
	d := *dir
	exited := make(chan string, 2)
	api, err := child(d, "apiserver", []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(*port),
		"--cert-dir=" + d,
		"--tls-cert-file=" + filepath.Join(d, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(d, "apiserver.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(d, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(d, "sa.key"),
		"--token-auth-file=" + filepath.Join(d, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--profiling=false",
	}, exited)
	if err != nil {
		return err
	}
	procs := []*proc{api}
	stop := func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].cmd.Process.Signal(syscall.SIGTERM)
		}
		for i := len(procs) - 1; i >= 0; i-- {
			select {
			case <-procs[i].done:
			case <-time.After(20 * time.Second):
				_ = procs[i].cmd.Process.Kill()
				<-procs[i].done
			}
		}
	}
	if err := waitReady(server, ca, token, 180*time.Second); err != nil {
		stop()
		return err
	}
	kcm, err := child(d, "controller-manager", []string{
		"--kubeconfig=" + kcPath,
		"--controllers=" + *controllers,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
	}, exited)
	if err != nil {
		stop()
		return err
	}
	procs = append(procs, kcm)
	info, _ := json.Marshal(map[string]any{
		"server": server, "kubeconfig": kcPath, "pid": os.Getpid(), "etcd": etcdURL,
	})
	if err := os.WriteFile(filepath.Join(d, "ready.json"), info, 0o600); err != nil {
		stop()
		return err
	}
	fmt.Printf("trellis-testenv ready: %s (kubeconfig %s)\n", server, kcPath)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	select {
	case <-ctx.Done():
		stop()
		return nil
	case role := <-exited:
		stop()
		return fmt.Errorf("%s exited unexpectedly; see %s", role, filepath.Join(d, role+".log"))
	}
}
