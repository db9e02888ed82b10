package main

// trustd as workers see it: control planes serve SecurityService.Certificate on :50001, workers
// ask it for their apid server certificate. Talos v1.12.0: api/security/security.proto,
// internal/app/trustd/main.go (TLS with the OS CA, token interceptor), internal/app/trustd/
// internal/reg/reg.go (Certificate), pkg/grpc/middleware/auth/basic/token.go (token check).

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/security"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const trustdPort = "50001"

// checkToken is basic.TokenCredentials.authenticate: metadata "token" must equal the machine
// token; otherwise a plain error "Unauthenticated" (gRPC code Unknown, as Talos answers).
func checkToken(ctx context.Context, token string) error {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("token"); len(v) > 0 && token != "" && v[0] == token {
			return nil
		}
	}
	return fmt.Errorf("%s", codes.Unauthenticated.String())
}

type trustd struct {
	security.UnimplementedSecurityServiceServer
	caCert *x509.Certificate
	caPEM  []byte
	caKey  crypto.Signer
}

// Certificate is reg.Registrator.Certificate: a server-auth certificate for the CSR's subject
// (organization removed), DNS names and addresses, signed by the OS CA; ca is the OS CA.
func (t *trustd) Certificate(ctx context.Context, in *security.CertificateRequest) (*security.CertificateResponse, error) {
	block, _ := pem.Decode(in.GetCsr())
	if block == nil {
		mark("trustd-call", "result", "error", "code", "InvalidArgument")
		return nil, status.Errorf(codes.InvalidArgument, "failed to decode CSR")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		mark("trustd-call", "result", "error", "code", "InvalidArgument")
		return nil, status.Errorf(codes.InvalidArgument, "failed to parse CSR: %s", err)
	}
	subject := csr.Subject
	subject.Organization = nil
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: csr.IPAddresses, DNSNames: csr.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, t.caCert, csr.PublicKey, t.caKey)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to sign CSR: %s", err)
	}
	ips := make([]string, len(csr.IPAddresses))
	for i, ip := range csr.IPAddresses {
		ips[i] = ip.String()
	}
	mark("trustd-call", "result", "signed", "subject", subject.CommonName, "addresses", fmt.Sprint(ips))
	return &security.CertificateResponse{Ca: t.caPEM, Crt: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// listenTrustd serves trustd on addr for a control plane (the config has machine.ca.key): TLS
// with cert (issued by the OS CA), no client certificate, the machine token checked per call.
func listenTrustd(cfg *MachineConfig, cert tls.Certificate, addr string) (*grpc.Server, net.Listener, error) {
	caCert, err := parseCertPEM(cfg.CACrt)
	if err != nil {
		return nil, nil, err
	}
	caKey, err := parseKeyPEM(cfg.CAKey)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	token := cfg.Token
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := checkToken(ctx, token); err != nil {
				mark("trustd-call", "result", "error", "code", "Unknown", "error", err.Error())
				return nil, err
			}
			return h(ctx, req)
		}))
	security.RegisterSecurityServiceServer(srv, &trustd{caCert: caCert, caPEM: cfg.CACrt, caKey: caKey})
	mark("trustd", "listen", ln.Addr().String())
	return srv, ln, nil
}

// trustdEndpoint is where a worker asks: the host of cluster.controlPlane.endpoint, port 50001.
// A name listed in machine.network.extraHostEntries resolves to its entry, as Talos' /etc/hosts
// does before DNS; other names are left to the resolver when dialling.
func trustdEndpoint(cfg *MachineConfig) (string, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("cluster.controlPlane.endpoint %q has no host", cfg.Endpoint)
	}
	host := u.Hostname()
	if ip, ok := cfg.Hosts[strings.ToLower(host)]; ok {
		host = ip
	}
	return net.JoinHostPort(host, trustdPort), nil
}

// tokenCreds puts the machine token into every call's metadata (basic.NewTokenCredentials).
type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"token": string(t)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return true }

// requestCertificate asks trustd at endpoint for a server certificate naming ips and hostname,
// verifying trustd's certificate against machine.ca.crt (the chain only: the endpoint may be a
// name or a VIP the certificate does not list). One attempt.
func requestCertificate(cfg *MachineConfig, endpoint string, ips []net.IP, hostname string) (tls.Certificate, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cfg.CACrt) {
		return tls.Certificate{}, errors.New("machine.ca.crt holds no certificate")
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the chain is verified below, without the host name
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("trustd presented no certificate")
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			inter := x509.NewCertPool()
			for _, r := range raw[1:] {
				if c, err := x509.ParseCertificate(r); err == nil {
					inter.AddCert(c)
				}
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithPerRPCCredentials(tokenCreds(cfg.Token)))
	if err != nil {
		return tls.Certificate{}, err
	}
	defer conn.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: hostname}, IPAddresses: ips, DNSNames: []string{hostname, "localhost"},
	}, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := security.NewSecurityServiceClient(conn).Certificate(ctx, &security.CertificateRequest{
		Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
	})
	if err != nil {
		return tls.Certificate{}, err
	}
	block, _ := pem.Decode(resp.GetCrt())
	if block == nil {
		return tls.Certificate{}, errors.New("trustd answered no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return tls.Certificate{}, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return tls.Certificate{}, fmt.Errorf("trustd's certificate does not chain to machine.ca.crt: %w", err)
	}
	chain := [][]byte{block.Bytes}
	if ca, err := parseCertPEM(cfg.CACrt); err == nil {
		chain = append(chain, ca.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}, nil
}

// workerCert retries requestCertificate every interval until trustd answers, as a Talos worker
// waits for its apid certificate; each attempt prints a trustd-request marker.
func workerCert(cfg *MachineConfig, endpoint string, ips []net.IP, hostname string, interval time.Duration, stop <-chan struct{}) (tls.Certificate, error) {
	for attempt := 1; ; attempt++ {
		cert, err := requestCertificate(cfg, endpoint, ips, hostname)
		if err == nil {
			mark("trustd-request", "attempt", strconv.Itoa(attempt), "endpoint", endpoint, "result", "ok")
			return cert, nil
		}
		mark("trustd-request", "attempt", strconv.Itoa(attempt), "endpoint", endpoint, "result", "error", "error", err.Error())
		select {
		case <-stop:
			return tls.Certificate{}, err
		case <-time.After(interval):
		}
	}
}
