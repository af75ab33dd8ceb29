// Package tlsclient builds the TLS settings of goim's clients of managed
// services (logic's Redis, logic's and job's Kafka) from the keys every
// such section shares: tls, tls_ca_file, tls_cert_file, tls_key_file and
// tls_server_name.
//
// The server is always verified: against the CA file when one is given,
// else against the system's roots. TLS 1.2 is the oldest version spoken.
// A client certificate is sent when the cert and key files are given
// (mutual TLS).
package tlsclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/goim/goim/internal/conf"
)

// MinVersion is the oldest TLS version a client accepts.
const MinVersion = tls.VersionTLS12

// maxFileSize bounds a CA, certificate or key file: a path pointing at a
// big file by mistake must not be read whole.
const maxFileSize = 1 << 20

// Config is the TLS keys of a client's section. Embed it in the section's
// struct: its keys sit in the section itself.
type Config struct {
	// TLS connects over TLS, verifying the server's certificate. Default
	// false.
	TLS bool `toml:"tls"`
	// TLSCAFile is a PEM file of the CA certificates the server's
	// certificate must chain to; "" uses the system's roots. Default "".
	TLSCAFile string `toml:"tls_ca_file"`
	// TLSCertFile and TLSKeyFile are a PEM client certificate and its
	// private key, sent when the server asks for one (mutual TLS); both
	// or neither. Default "".
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// TLSServerName is the name the server's certificate must carry;
	// "" uses the host of the address dialled. Default "".
	TLSServerName string `toml:"tls_server_name"`
}

// Validate records every problem of c in p, with the keys' paths relative
// to p. It reads and parses the files c names, so a missing or malformed
// CA, certificate or key is found when the configuration is checked.
func (c Config) Validate(p *conf.Problems) {
	if !c.TLS {
		for _, f := range []struct{ key, v string }{
			{"tls_ca_file", c.TLSCAFile}, {"tls_cert_file", c.TLSCertFile},
			{"tls_key_file", c.TLSKeyFile}, {"tls_server_name", c.TLSServerName},
		} {
			p.Check(f.v == "", f.key, "is set but tls = false: set tls = true to connect over TLS, or remove it")
		}
		return
	}
	if c.TLSCAFile != "" {
		if _, err := loadCA(c.TLSCAFile); err != nil {
			p.Add("tls_ca_file", "%v", err)
		}
	}
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		key := "tls_key_file"
		if c.TLSCertFile == "" {
			key = "tls_cert_file"
		}
		p.Add(key, "must be set with the other of tls_cert_file and tls_key_file (a client certificate needs both)")
	case c.TLSCertFile != "":
		if _, err := loadKeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			p.Add("tls_cert_file", "%v", err)
		}
	}
}

// TLSConfig returns the client TLS configuration c describes, or nil when
// c.TLS is false. The files are read now; a Config passed by Validate
// loads unless a file changed in between.
func (c Config) TLSConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: MinVersion, ServerName: c.TLSServerName}
	if c.TLSCAFile != "" {
		pool, err := loadCA(c.TLSCAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.TLSCertFile != "" || c.TLSKeyFile != "" {
		cert, err := loadKeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// loadCA reads a PEM bundle of CA certificates.
func loadCA(path string) (*x509.CertPool, error) {
	pem, err := readFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// loadKeyPair reads a PEM certificate (chain) and its private key.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, errors.New("tls: a client certificate needs both tls_cert_file and tls_key_file")
	}
	certPEM, err := readFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: client certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// readFile reads a file of at most maxFileSize bytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("tls: read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("tls: %s is larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}
