// Command pause is the Trellis test node's sandbox image and its tiny test image in one static
// binary (no libc, no shell in the image).
//
// With no arguments it is a pod sandbox: it sleeps, reaps children it inherits as PID 1 and
// exits on SIGTERM/SIGINT, so pod deletion does not wait out the grace period. The other modes
// give tests something to run inside a container without a shell:
//
//	pause echo WORDS...    print WORDS (for kubectl logs / kubectl exec)
//	pause write FILE TEXT  write TEXT to FILE (volume tests)
//	pause cat FILE         print FILE
//	pause apicheck         call the apiserver through the kubernetes Service with the projected
//	                       ServiceAccount token and print who it says we are
//	pause fetch URL        HTTP GET URL (plain http) and print the status and body
//	pause serve            print a line, then sleep like the sandbox (a container with logs)
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		sleep()
		return
	}
	switch args[0] {
	case "echo":
		fmt.Println(strings.Join(args[1:], " "))
	case "write":
		if len(args) != 3 {
			fail("usage: pause write FILE TEXT")
		}
		if err := os.WriteFile(args[1], []byte(args[2]), 0o644); err != nil {
			fail(err.Error())
		}
	case "cat":
		if len(args) != 2 {
			fail("usage: pause cat FILE")
		}
		b, err := os.ReadFile(args[1])
		if err != nil {
			fail(err.Error())
		}
		os.Stdout.Write(b)
	case "apicheck":
		if err := apicheck(); err != nil {
			fail("apicheck: " + err.Error())
		}
	case "fetch":
		if len(args) != 2 {
			fail("usage: pause fetch URL")
		}
		if err := fetch(args[1]); err != nil {
			fail("fetch: " + err.Error())
		}
	case "serve":
		fmt.Println("pause serving:", strings.Join(args[1:], " "))
		sleep()
	default:
		fail("unknown mode " + args[0])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}

// sleep waits for SIGTERM/SIGINT, reaping zombies meanwhile: as PID 1 of a sandbox, orphans of
// exec'd processes are re-parented to us.
func sleep() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

// apicheck posts a SelfSubjectReview, which every authenticated identity may create: a 201 with
// our ServiceAccount's name proves the Service routing, the serving cert and the token.
func apicheck() error {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" {
		return fmt.Errorf("KUBERNETES_SERVICE_HOST is not set")
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %s/ca.crt", saDir)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	url := "https://" + net.JoinHostPort(host, port) + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s %s\n%s\n", url, resp.Status, out)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("unexpected status %s", resp.Status)
	}
	return nil
}

func fetch(url string) error {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s %s\n%s\n", url, resp.Status, out)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unexpected status %s", resp.Status)
	}
	return nil
}
