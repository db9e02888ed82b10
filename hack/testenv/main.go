// Command trellis-testenv runs a real Kubernetes control plane for Trellis tests:
// embedded etcd, kube-apiserver, kube-controller-manager and kube-scheduler on 127.0.0.1.
//
// It is a multi-call binary. Invoked as "kubectl" (by name or first argument) it is kubectl;
// "apiserver", "controller-manager" and "scheduler" are the child processes that "up" supervises.
//
// The apiserver advertises --host-address (the host end of the test node's veth pair, see
// hack/labnode), so the kubernetes Service points where Pods can reach it once a node runs;
// without a node nothing uses that address. The CA key is written next to the CA so the node
// can mint its kubelet credentials (system:node:<name>) for the Node authorizer.
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
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "time/tzdata"
)

// defaultControllers is what a node needs (workloads, ServiceAccount tokens, Service endpoints,
// volume attach) on top of garbage collection, namespace deletion and the PV binder. The
// quota, HPA, CSR and cloud controllers are left out: nothing here uses them.
const defaultControllers = "garbage-collector-controller,namespace-controller," +
	"persistentvolume-binder-controller,persistentvolume-expander-controller," +
	"persistentvolume-protection-controller,persistentvolumeclaim-protection-controller," +
	"persistentvolume-attach-detach-controller,ephemeral-volume-controller," +
	"deployment-controller,replicaset-controller,daemonset-controller,statefulset-controller," +
	"job-controller,cronjob-controller,ttl-after-finished-controller,disruption-controller," +
	"serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller," +
	"endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller," +
	"node-lifecycle-controller,pod-garbage-collector-controller,taint-eviction-controller"

// defaultHostAddress is the host end of the node's veth pair (hack/labnode uses the /30 around it).
const defaultHostAddress = "10.199.0.1"

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
	case "scheduler":
		cmd := schedapp.NewSchedulerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "up":
		if err := up(args); err != nil {
			fmt.Fprintln(os.Stderr, "trellis-testenv:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: trellis-testenv up --dir DIR | kubectl ... | apiserver ... | controller-manager ... | scheduler ...")
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

// makeCerts writes a CA (with its key, for the node's kubelet credentials), the apiserver
// serving certificate, the client certificates of the apiserver (to kubelets) and of the
// scheduler, and a service-account signing key, so every client verifies TLS.
func makeCerts(dir string, hostAddress net.IP) ([]byte, error) {
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
	serial := int64(2)
	issue := func(name string, tmpl *x509.Certificate) error {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		tmpl.SerialNumber = big.NewInt(serial)
		serial++
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(10*365*24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(filepath.Join(dir, name+".key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	}
	if err := issue("apiserver", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1"), hostAddress},
	}); err != nil {
		return nil, err
	}
	// kubectl logs/exec: kubelets authorize this identity with a SubjectAccessReview.
	if err := issue("apiserver-kubelet-client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	// The built-in system:kube-scheduler ClusterRoleBinding grants exactly what it needs.
	if err := issue("scheduler", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:kube-scheduler"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "ca.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(caKey)); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

// certKubeconfig is a kubeconfig that authenticates with a client certificate from makeCerts.
func certKubeconfig(dir, server, name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: trellis-testenv
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: trellis-testenv
  context:
    cluster: trellis-testenv
    user: %s
current-context: trellis-testenv
`, server, filepath.Join(dir, "ca.crt"), name, filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), name)
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
	hostAddr := fs.String("host-address", defaultHostAddress,
		"address the apiserver advertises: the host end of the test node's veth pair")
	scheduler := fs.Bool("scheduler", true, "run kube-scheduler")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	// Kubeconfigs written here name their certificate files by absolute path.
	if abs, err := filepath.Abs(*dir); err == nil {
		*dir = abs
	}
	_ = os.Remove(filepath.Join(*dir, "ready.json"))
	hostIP := net.ParseIP(*hostAddr).To4()
	if hostIP == nil {
		return fmt.Errorf("--host-address %q is not an IPv4 address", *hostAddr)
	}
	ca, err := makeCerts(*dir, hostIP)
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
	exited := make(chan string, 3)
	api, err := child(d, "apiserver", []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=" + hostIP.String(),
		"--secure-port=" + strconv.Itoa(*port),
		"--cert-dir=" + d,
		"--tls-cert-file=" + filepath.Join(d, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(d, "apiserver.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(d, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(d, "sa.key"),
		"--token-auth-file=" + filepath.Join(d, "tokens.csv"),
		"--client-ca-file=" + filepath.Join(d, "ca.crt"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		// Node names do not resolve through the host's DNS; kubelets register their veth address.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-client-certificate=" + filepath.Join(d, "apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + filepath.Join(d, "apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + filepath.Join(d, "ca.crt"),
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
		"--service-account-private-key-file=" + filepath.Join(d, "sa.key"),
		"--root-ca-file=" + filepath.Join(d, "ca.crt"),
		// A stopped test node should not keep Pods for the default 5 minutes.
		"--node-monitor-grace-period=20s",
	}, exited)
	if err != nil {
		stop()
		return err
	}
	procs = append(procs, kcm)
	if *scheduler {
		schedKC := filepath.Join(d, "scheduler.kubeconfig")
		if err := os.WriteFile(schedKC, []byte(certKubeconfig(d, server, "scheduler")), 0o600); err != nil {
			stop()
			return err
		}
		sched, err := child(d, "scheduler", []string{
			"--kubeconfig=" + schedKC,
			"--leader-elect=false",
			"--secure-port=0",
		}, exited)
		if err != nil {
			stop()
			return err
		}
		procs = append(procs, sched)
	}
	info, _ := json.Marshal(map[string]any{
		"server": server, "kubeconfig": kcPath, "pid": os.Getpid(), "etcd": etcdURL,
		"dir": d, "port": *port, "host_address": hostIP.String(),
		"ca": filepath.Join(d, "ca.crt"), "ca_key": filepath.Join(d, "ca.key"),
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
