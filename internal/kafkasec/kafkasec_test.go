package kafkasec_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/kafkasec"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/tlsclient"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidate(t *testing.T) {
	ca := testkit.NewCA(t, "unit")
	pw := writeFile(t, "pw\n")
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name      string
		env       string
		c         kafkasec.Config
		wantPaths []string
	}{
		{name: "nothing"},
		{name: "PLAIN over TLS", c: kafkasec.Config{Config: tlsclient.Config{TLS: true, TLSCAFile: ca.CertFile}, SASLMechanism: "PLAIN", SASLUser: "u", SASLPasswordFile: pw}},
		{name: "SCRAM with the password from the environment", env: "pw", c: kafkasec.Config{SASLMechanism: "SCRAM-SHA-512", SASLUser: "u"}},
		{name: "unknown mechanism", c: kafkasec.Config{SASLMechanism: "GSSAPI", SASLUser: "u"}, wantPaths: []string{"k.sasl_mechanism"}},
		{name: "lower-case mechanism", c: kafkasec.Config{SASLMechanism: "plain", SASLUser: "u"}, wantPaths: []string{"k.sasl_mechanism"}},
		{name: "mechanism without user or password", c: kafkasec.Config{SASLMechanism: "SCRAM-SHA-256"}, wantPaths: []string{"k.sasl_user", "k.sasl_password_file"}},
		{name: "missing password file", c: kafkasec.Config{SASLMechanism: "PLAIN", SASLUser: "u", SASLPasswordFile: missing}, wantPaths: []string{"k.sasl_password_file"}},
		{name: "user and file without mechanism", c: kafkasec.Config{SASLUser: "u", SASLPasswordFile: pw}, wantPaths: []string{"k.sasl_user", "k.sasl_password_file"}},
		{name: "TLS keys are checked", c: kafkasec.Config{Config: tlsclient.Config{TLS: true, TLSCAFile: missing}}, wantPaths: []string{"k.tls_ca_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(kafkasec.EnvSASLPassword, tt.env)
			var p conf.Problems
			tt.c.Validate(p.Sub("k"))
			err := p.Err()
			if len(tt.wantPaths) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				sec, err := tt.c.Security()
				if err != nil {
					t.Fatalf("Security: %v", err)
				}
				sc := sarama.NewConfig()
				sec.Apply(sc)
				if err := sc.Validate(); err != nil {
					t.Fatalf("sarama config: %v", err)
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

// TestEnvironmentWins: GOIM_KAFKA_SASL_PASSWORD wins over the file.
func TestEnvironmentWins(t *testing.T) {
	t.Setenv(kafkasec.EnvSASLPassword, "from-env")
	sec, err := kafkasec.Config{SASLMechanism: "PLAIN", SASLUser: "u", SASLPasswordFile: writeFile(t, "from-file")}.Security()
	if err != nil {
		t.Fatal(err)
	}
	sc := sarama.NewConfig()
	sec.Apply(sc)
	if sc.Net.SASL.Password != "from-env" || sc.Net.SASL.User != "u" || !sc.Net.SASL.Enable {
		t.Fatalf("SASL settings %+v", sc.Net.SASL)
	}
}

// TestAgainstKfake: a sarama client with the settings connects to a kfake
// broker that demands SASL (and TLS, with and without a client
// certificate) with the right credentials, and fails with wrong ones, for
// each mechanism.
func TestAgainstKfake(t *testing.T) {
	ca := testkit.NewCA(t, "kafka")
	client := ca.Client("goim")
	otherCA := testkit.NewCA(t, "other")
	const user, password = "goim", "kafka-password"
	tests := []struct {
		name      string
		mechanism string
		tls       bool // kfake speaks TLS
		mutual    bool // kfake requires a client certificate
		edit      func(*kafkasec.Config)
		wantErr   bool
	}{
		{name: "PLAIN", mechanism: "PLAIN"},
		{name: "PLAIN over TLS", mechanism: "PLAIN", tls: true},
		{name: "SCRAM-SHA-256", mechanism: "SCRAM-SHA-256"},
		{name: "SCRAM-SHA-256 over TLS", mechanism: "SCRAM-SHA-256", tls: true},
		{name: "SCRAM-SHA-512", mechanism: "SCRAM-SHA-512"},
		{name: "SCRAM-SHA-512 over mutual TLS", mechanism: "SCRAM-SHA-512", tls: true, mutual: true},
		{name: "PLAIN wrong password", mechanism: "PLAIN", edit: func(c *kafkasec.Config) { c.SASLPasswordFile = writeFile(t, "wrong") }, wantErr: true},
		{name: "SCRAM-SHA-256 wrong password", mechanism: "SCRAM-SHA-256", edit: func(c *kafkasec.Config) { c.SASLPasswordFile = writeFile(t, "wrong") }, wantErr: true},
		{name: "SCRAM-SHA-512 wrong user", mechanism: "SCRAM-SHA-512", edit: func(c *kafkasec.Config) { c.SASLUser = "nobody" }, wantErr: true},
		{name: "mechanism the broker lacks for the user", mechanism: "SCRAM-SHA-512", edit: func(c *kafkasec.Config) { c.SASLMechanism = "SCRAM-SHA-256" }, wantErr: true},
		{name: "no SASL against a SASL broker", mechanism: "PLAIN", edit: func(c *kafkasec.Config) { c.SASLMechanism, c.SASLUser, c.SASLPasswordFile = "", "", "" }, wantErr: true},
		{name: "TLS broker, wrong CA", mechanism: "PLAIN", tls: true, edit: func(c *kafkasec.Config) { c.TLSCAFile = otherCA.CertFile }, wantErr: true},
		{name: "TLS broker, no tls", mechanism: "PLAIN", tls: true, edit: func(c *kafkasec.Config) { c.Config = tlsclient.Config{} }, wantErr: true},
		{name: "mutual TLS broker, no client certificate", mechanism: "PLAIN", tls: true, mutual: true, edit: func(c *kafkasec.Config) {
			c.TLSCertFile, c.TLSKeyFile = "", ""
		}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(tt.mechanism, user, password)}
			c := kafkasec.Config{SASLMechanism: tt.mechanism, SASLUser: user, SASLPasswordFile: writeFile(t, password)}
			if tt.tls {
				st := ca.ServerTLS("127.0.0.1")
				if tt.mutual {
					pool := x509.NewCertPool()
					pem, err := os.ReadFile(ca.CertFile)
					if err != nil {
						t.Fatal(err)
					}
					pool.AppendCertsFromPEM(pem)
					st.ClientAuth, st.ClientCAs = tls.RequireAndVerifyClientCert, pool
				}
				opts = append(opts, kfake.TLS(st))
				c.Config = tlsclient.Config{TLS: true, TLSCAFile: ca.CertFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}
			}
			kc, topic := testkit.Kafka(t, 1, opts...)
			if tt.edit != nil {
				tt.edit(&c)
			}
			t.Setenv(kafkasec.EnvSASLPassword, "")
			var p conf.Problems
			c.Validate(&p)
			if err := p.Err(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			sec, err := c.Security()
			if err != nil {
				t.Fatal(err)
			}
			sc := sarama.NewConfig()
			sc.Version = sarama.V2_1_0_0
			sc.Net.DialTimeout, sc.Net.ReadTimeout, sc.Net.WriteTimeout = 5*time.Second, 5*time.Second, 5*time.Second
			sc.Metadata.Retry.Max = 0
			sc.Producer.Return.Successes = true
			sec.Apply(sc)
			prod, err := sarama.NewSyncProducer(kc.ListenAddrs(), sc)
			if err == nil {
				_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("hi")})
				prod.Close()
			}
			switch {
			case tt.wantErr && err == nil:
				t.Fatal("produced with wrong settings")
			case tt.wantErr:
				t.Logf("refused: %v", err)
			case err != nil:
				t.Fatalf("produce: %v", err)
			}
		})
	}
}
