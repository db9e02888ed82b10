// Command trellis-node holds the node-side Kubernetes components for the Trellis test node
// (hack/labnode): kubelet and kube-proxy from the same Kubernetes module set as trellis-testenv,
// plus "forward", a TCP relay that makes the loopback-only apiserver reachable on the host-side
// veth address of the node's network namespace.
//
// It is a sibling of trellis-testenv rather than more roles in it because the kubelet roughly
// doubles the binary: sessions without a node should not pay for linking it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	_ "time/tzdata"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name != "kubelet" && name != "kube-proxy" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	switch name {
	case "kubelet":
		os.Args = append([]string{"kubelet"}, args...)
		cmd := kubeletapp.NewKubeletCommand(context.Background())
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-proxy":
		os.Args = append([]string{"kube-proxy"}, args...)
		cmd := proxyapp.NewProxyCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "forward":
		if err := forward(args); err != nil {
			fmt.Fprintln(os.Stderr, "trellis-node forward:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: trellis-node kubelet ... | kube-proxy ... | forward --listen ADDR --to ADDR")
		os.Exit(2)
	}
}

// forward relays TCP connections byte for byte. TLS stays end to end, so client certificates
// and tokens authenticate against the apiserver exactly as on a direct connection.
func forward(argv []string) error {
	fs := flag.NewFlagSet("forward", flag.ExitOnError)
	listen := fs.String("listen", "", "address to listen on (host-side veth address:port)")
	to := fs.String("to", "", "address to relay to (127.0.0.1:apiserver port)")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if *listen == "" || *to == "" {
		return fmt.Errorf("--listen and --to are required")
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	fmt.Printf("forwarding %s -> %s\n", *listen, *to)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go relay(c, *to)
	}
}

func relay(c net.Conn, to string) {
	defer c.Close()
	u, err := net.Dial("tcp", to)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial", to, err)
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	<-done
}
