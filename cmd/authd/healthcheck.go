package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/placebrain/auth/internal/config"
)

const healthcheckUsage = "usage: authd healthcheck [--timeout DURATION] [--service NAME] [--cert FILE --key FILE]"

// runHealthcheck asks the local authd's grpc.health.v1 for the status of
// the server (or --service) and returns nil when it is SERVING: the exit
// status for a container's HEALTHCHECK. It dials GRPC__LISTEN_ADDR, on
// loopback when it names no host or an unspecified one, within --timeout
// (3 s). With GRPC__TLS_CERT_FILE it speaks TLS and accepts only the
// certificate in that file (pinned: the check runs beside the server, and
// the certificate's names need not include loopback); with mutual TLS
// required (GRPC__CLIENT_CA_FILE without GRPC__API_KEYS) it needs a client
// certificate the CA signed, --cert and --key. Health needs no caller
// authentication otherwise.
func runHealthcheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	service := fs.String("service", "", "the service to ask about (empty: the server)")
	certFile := fs.String("cert", "", "client certificate (PEM) for mutual TLS")
	keyFile := fs.String("key", "", "its private key (PEM)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || (*certFile == "") != (*keyFile == "") {
		return errors.New(healthcheckUsage)
	}
	c, err := config.Load(ctx, nil, config.Options{Sections: []config.Section{config.SectionGRPC}})
	if err != nil {
		return err
	}
	addr, err := localAddr(c.GRPC.ListenAddr)
	if err != nil {
		return err
	}
	creds := insecure.NewCredentials()
	if c.GRPC.TLSCertFile != "" {
		if creds, err = pinnedTLS(c.GRPC.TLSCertFile, *certFile, *keyFile); err != nil {
			return err
		}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", addr, err)
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("healthcheck %s: %s", addr, r.GetStatus())
	}
	fmt.Fprintln(stdout, "SERVING")
	return nil
}

// localAddr is the address to reach a server listening on listen: its
// host, or loopback when it names none or an unspecified one.
func localAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("GRPC__LISTEN_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// pinnedTLS returns TLS credentials that accept only the server
// certificate in serverCertFile (its first certificate, byte for byte)
// and present the client certificate in certFile and keyFile, if given.
func pinnedTLS(serverCertFile, certFile, keyFile string) (credentials.TransportCredentials, error) {
	b, err := os.ReadFile(serverCertFile)
	if err != nil {
		return nil, fmt.Errorf("GRPC__TLS_CERT_FILE: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("GRPC__TLS_CERT_FILE %q holds no PEM certificate", serverCertFile)
	}
	want := block.Bytes
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is not checked against roots: the certificate is
		// compared with the server's own file instead.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], want) {
				return errors.New("the server's certificate is not the one in GRPC__TLS_CERT_FILE")
			}
			return nil
		},
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert and --key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}
