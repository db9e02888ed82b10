package main

import (
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
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"
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

// grpcUnimplemented is a trailers-only gRPC response: real clients see a clean Unimplemented
// error instead of a protocol failure.
func grpcUnimplemented(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", "12")
	h.Set("Grpc-Message", "trellis-guest stand-in: "+r.URL.Path+" is not implemented")
	w.WriteHeader(http.StatusOK)
}

func serveAPI(cfg *MachineConfig, l *Lease) {
	applyStatic(cfg, l)
	ips := addresses(cfg, l)
	cert, source, err := serverCert(cfg, append(ips, net.IPv4(127, 0, 0, 1)), l.Hostname)
	if err != nil {
		fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cfg.CACrt)
	srv := &http.Server{
		Handler: http.HandlerFunc(grpcUnimplemented),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			NextProtos:   []string{"h2"},
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          nil,
	}
	ln, err := net.Listen("tcp", ":"+apiPort)
	if err != nil {
		fatal(err)
	}
	strs := make([]string, len(ips))
	for i, ip := range ips {
		strs[i] = ip.String()
	}
	api := net.JoinHostPort(strs[0], apiPort)
	mark("installed", "api", api, "addresses", strings.Join(strs, ","), "hostname", l.Hostname, "ca", source)
	fatal(srv.ServeTLS(ln, "", ""))
}
