package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/tls/certprovider"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"

	"github.com/placebrain/auth/internal/config"
	"github.com/placebrain/auth/internal/grpcapi"
)

// TLSRefresh is how often the server certificate, its key and the client
// CA are re-read by default, so a rotation on disk takes effect for new
// connections within it, without a restart.
const TLSRefresh = time.Minute

// tlsLoadTimeout bounds the wait for the first reading of the TLS files.
const tlsLoadTimeout = 10 * time.Second

// callerAuthOffWarning is logged when a production start authenticates
// no callers: it says what any process that reaches the port can do.
const callerAuthOffWarning = "CALLER AUTHENTICATION IS OFF: any process that reaches GRPC__LISTEN_ADDR can call every method: " +
	"read any user's e-mail address and name (GetMe, GetUserByEmail), call Login and SendOtp past the gateway's rate limits, " +
	"and log anyone out (Logout). Set GRPC__CLIENT_CA_FILE (mutual TLS) or GRPC__API_KEYS, and GRPC__REQUIRE_CALLER_AUTH=true."

// callerSecurity builds what c's GRPC section says about transport
// security and callers: the server options (TLS credentials and the
// interceptors), the caller authentication, and a function that stops
// re-reading the TLS files. It logs what it set up and, loudly, what it
// leaves open.
func callerSecurity(c *config.Config, refresh time.Duration, now func() time.Time, log *slog.Logger) (_ []grpc.ServerOption, _ *grpcapi.Callers, stop func(), err error) {
	g := c.GRPC
	callers := grpcapi.NewCallers(grpcapi.CallerOptions{
		ClientCerts: g.ClientCAFile != "",
		Clients:     grants(g.AllowedClients),
		Keys:        grants(g.APIKeys),
		Log:         log,
		Now:         now,
	})
	opts := grpcapi.ServerOptions(log, callers)
	stop = func() {}
	if g.TLSCertFile != "" {
		creds, closeTLS, err := serverTLS(g, refresh)
		if err != nil {
			return nil, nil, nil, err
		}
		opts, stop = append(opts, grpc.Creds(creds)), closeTLS
	}

	switch {
	case !g.CallerAuth() && c.Dev:
		log.Info("caller authentication off (development mode): any process that reaches the port may call every method")
	case !g.CallerAuth():
		log.Warn(callerAuthOffWarning, "tls", g.TLSCertFile != "")
	default:
		log.Info("caller authentication on", "tls", g.TLSCertFile != "", "client_certificates", g.ClientCAFile != "",
			"allowed_clients", len(g.AllowedClients), "api_keys", len(g.APIKeys))
	}
	if g.ClientCAFile != "" && len(g.AllowedClients) == 0 {
		log.Info("every client certificate GRPC__CLIENT_CA_FILE signed may call every method: list identities in GRPC__ALLOWED_CLIENTS to narrow it")
	}
	if lvl := strings.ToLower(os.Getenv("GRPC_GO_LOG_SEVERITY_LEVEL")); g.TLSCertFile != "" && (lvl == "warning" || lvl == "info") {
		log.Warn("GRPC_GO_LOG_SEVERITY_LEVEL is " + lvl + ": grpc-go's pemfile provider then logs the PEM contents, private key included, of a certificate and key it cannot load as a pair (a rotation half done); keep it at error in production")
	}
	if len(g.APIKeys) > 0 && g.TLSCertFile == "" {
		log.Warn("GRPC__API_KEYS without GRPC__TLS_CERT_FILE: API keys travel in clear text, and anyone who can watch the network between the gateway and authd can reuse them")
	}
	return opts, callers, stop, nil
}

// grants converts configured grants to the transport's.
func grants(gs []config.Grant) []grpcapi.Grant {
	var out []grpcapi.Grant
	for _, g := range gs {
		out = append(out, grpcapi.Grant{Caller: g.Caller, Methods: g.Methods})
	}
	return out
}

// serverTLS returns TLS credentials whose certificate, key and client CA
// grpc-go's pemfile provider re-reads every refresh, so each new
// connection is served the newest files. With a client CA, client
// certificates must chain to it: required, or with API keys also
// configured, verified when given (a caller may use either). TLS 1.2 at
// least; Go prefers 1.3.
func serverTLS(g config.GRPC, refresh time.Duration) (credentials.TransportCredentials, func(), error) {
	// Read the files once here for errors that name the variables; the
	// provider reads them again and only logs (through grpclog) what
	// fails.
	if _, err := tls.LoadX509KeyPair(g.TLSCertFile, g.TLSKeyFile); err != nil {
		return nil, nil, fmt.Errorf("GRPC__TLS_CERT_FILE and GRPC__TLS_KEY_FILE: %w", err)
	}
	if g.ClientCAFile != "" {
		pem, err := os.ReadFile(g.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("GRPC__CLIENT_CA_FILE: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("GRPC__CLIENT_CA_FILE %q holds no PEM certificate", g.ClientCAFile)
		}
	}
	if refresh <= 0 {
		refresh = TLSRefresh
	}
	prov, err := pemfile.NewProvider(pemfile.Options{
		CertFile: g.TLSCertFile, KeyFile: g.TLSKeyFile, RootFile: g.ClientCAFile, RefreshDuration: refresh,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("GRPC__TLS_CERT_FILE: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tlsLoadTimeout)
	defer cancel()
	if _, err := prov.KeyMaterial(ctx); err != nil {
		prov.Close()
		return nil, nil, fmt.Errorf("GRPC__TLS_CERT_FILE, GRPC__TLS_KEY_FILE, GRPC__CLIENT_CA_FILE: load: %w", err)
	}

	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			km, err := keyMaterial(hello.Context(), prov)
			if err != nil {
				return nil, err
			}
			return &km.Certs[0], nil
		},
	}
	if g.ClientCAFile != "" {
		clientAuth := tls.RequireAndVerifyClientCert
		if len(g.APIKeys) > 0 {
			clientAuth = tls.VerifyClientCertIfGiven
		}
		base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			km, err := keyMaterial(hello.Context(), prov)
			if err != nil {
				return nil, err
			}
			cfg := base.Clone()
			cfg.GetConfigForClient = nil
			cfg.ClientAuth = clientAuth
			cfg.ClientCAs = km.Roots
			return cfg, nil
		}
	}
	return credentials.NewTLS(base), prov.Close, nil
}

// keyMaterial returns the provider's newest certificate and roots.
func keyMaterial(ctx context.Context, prov certprovider.Provider) (*certprovider.KeyMaterial, error) {
	km, err := prov.KeyMaterial(ctx)
	if err != nil {
		return nil, err
	}
	if len(km.Certs) == 0 {
		return nil, errors.New("no server certificate")
	}
	return km, nil
}
