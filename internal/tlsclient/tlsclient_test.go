package tlsclient_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/tlsclient"
)

func TestTLSConfig(t *testing.T) {
	ca := testkit.NewCA(t, "unit")
	client := ca.Client("c")
	off, err := tlsclient.Config{}.TLSConfig()
	if off != nil || err != nil {
		t.Fatalf("tls = false: %v, %v; want nil, nil", off, err)
	}
	sys, err := tlsclient.Config{TLS: true}.TLSConfig()
	if err != nil || sys.RootCAs != nil || sys.InsecureSkipVerify || sys.MinVersion != tls.VersionTLS12 {
		t.Fatalf("system roots: %+v, %v", sys, err)
	}
	full, err := tlsclient.Config{
		TLS: true, TLSCAFile: ca.CertFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile, TLSServerName: "svc.internal",
	}.TLSConfig()
	if err != nil || full.RootCAs == nil || len(full.Certificates) != 1 || full.ServerName != "svc.internal" {
		t.Fatalf("full: %+v, %v", full, err)
	}
	if _, err := (tlsclient.Config{TLS: true, TLSCAFile: filepath.Join(t.TempDir(), "none")}).TLSConfig(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing CA: %v", err)
	}
}

func TestValidate(t *testing.T) {
	ca := testkit.NewCA(t, "unit")
	client := ca.Client("c")
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, 1<<20+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		c         tlsclient.Config
		wantPaths []string
	}{
		{name: "off"},
		{name: "system roots", c: tlsclient.Config{TLS: true}},
		{name: "everything", c: tlsclient.Config{TLS: true, TLSCAFile: ca.CertFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}},
		{name: "files without tls", c: tlsclient.Config{TLSCAFile: ca.CertFile, TLSServerName: "x"}, wantPaths: []string{"s.tls_ca_file", "s.tls_server_name"}},
		{name: "CA file over the size bound", c: tlsclient.Config{TLS: true, TLSCAFile: big}, wantPaths: []string{"s.tls_ca_file"}},
		{name: "key is not PEM", c: tlsclient.Config{TLS: true, TLSCertFile: client.CertFile, TLSKeyFile: ca.CertFile}, wantPaths: []string{"s.tls_cert_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p conf.Problems
			tt.c.Validate(p.Sub("s"))
			err := p.Err()
			if len(tt.wantPaths) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Fatalf("Validate = %v", err)
			}
			for _, path := range tt.wantPaths {
				if !strings.Contains(err.Error(), path+": ") {
					t.Errorf("%q does not name %s", err, path)
				}
			}
		})
	}
}

// TestHandshake: the client verifies the server against the CA file and
// refuses a server that offers only TLS 1.1.
func TestHandshake(t *testing.T) {
	ca := testkit.NewCA(t, "unit")
	tests := []struct {
		name       string
		maxVersion uint16
		caFile     string
		wantErr    string
	}{
		{name: "TLS 1.3 with the CA", caFile: ca.CertFile},
		{name: "TLS 1.2 with the CA", maxVersion: tls.VersionTLS12, caFile: ca.CertFile},
		{name: "TLS 1.1 refused", maxVersion: tls.VersionTLS11, caFile: ca.CertFile, wantErr: "protocol version"},
		{name: "another CA refused", caFile: testkit.NewCA(t, "other").CertFile, wantErr: "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ca.ServerTLS("127.0.0.1")
			st.MinVersion, st.MaxVersion = tls.VersionTLS10, tt.maxVersion
			l, err := tls.Listen("tcp", "127.0.0.1:0", st)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := l.Accept()
				if err != nil {
					return
				}
				_ = c.(*tls.Conn).Handshake()
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
			tc, err := tlsclient.Config{TLS: true, TLSCAFile: tt.caFile}.TLSConfig()
			if err != nil {
				t.Fatal(err)
			}
			tc.ServerName = "127.0.0.1"
			raw, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := tls.Client(raw, tc)
			err = c.Handshake()
			c.Close()
			<-done
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("handshake: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("handshake = %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}
}
