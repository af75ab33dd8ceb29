package job

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/kafkasec"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/testkit"
	"github.com/goim/goim/internal/testkit/cluster"
	"github.com/goim/goim/internal/tlsclient"
)

// TestKafkaSASLAndTLS: with a broker that demands mutual TLS and
// SCRAM-SHA-512, logic publishes and job consumes with the same [kafka]
// keys, and a push reaches a client; a job with a wrong password or
// without TLS cannot join the group.
func TestKafkaSASLAndTLS(t *testing.T) {
	ca := testkit.NewCA(t, "kafka")
	const user, password = "goim", "kafka-password"
	pemCA, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(pemCA)
	st := ca.ServerTLS("127.0.0.1")
	st.ClientAuth, st.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	client := ca.Client("goim")
	sec := kafkasec.Config{
		Config:        tlsclient.Config{TLS: true, TLSCAFile: ca.CertFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile},
		SASLMechanism: kafkasec.MechanismSCRAMSHA512, SASLUser: user, SASLPasswordFile: pwFile,
	}
	t.Setenv(kafkasec.EnvSASLPassword, "")
	c := &testCluster{t: t, group: "job-test-" + testkit.RandomHex(4), Cluster: cluster.StartWith(t, 1, cluster.Options{
		Kafka: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(kafkasec.MechanismSCRAMSHA512, user, password), kfake.TLS(st)},
		Logic: func(lc *logic.Config) { lc.Kafka.Config = sec },
	})}

	for _, bad := range []struct {
		name string
		edit func(*kafkasec.Config)
	}{
		{name: "wrong password", edit: func(k *kafkasec.Config) {
			k.SASLPasswordFile = filepath.Join(dir, "wrong")
			if err := os.WriteFile(k.SASLPasswordFile, []byte("wrong"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "no TLS", edit: func(k *kafkasec.Config) { k.Config = tlsclient.Config{} }},
	} {
		t.Run(bad.name, func(t *testing.T) {
			cfg := c.jobConfig()
			cfg.Kafka.Config = sec
			bad.edit(&cfg.Kafka.Config)
			j, err := New(cfg, Deps{Logger: testkit.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cluster.Shutdown(t, j.Shutdown) })
			if _, err := j.joinGroup(); err == nil {
				t.Fatal("joined the group with wrong settings")
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}

	c.startJob(func(cfg *Config) { cfg.Kafka.Config = sec })
	r := c.Dial("comet-1", "tcp", `{"mid":7,"key":"k7","room_id":"live://1","accepts":[1000]}`)
	c.WaitOnline(1)
	c.Push("/goim/push/keys?operation=1000&keys=k7", "over-tls-and-scram")
	if got := r.Wait(1, 15*time.Second); !slices.Equal(got, []string{"over-tls-and-scram"}) {
		t.Fatalf("client got %q", got)
	}
}

// TestKafkaConfigSecurity: job's [kafka] security keys are validated with
// the section, each problem under its key.
func TestKafkaConfigSecurity(t *testing.T) {
	t.Setenv(kafkasec.EnvSASLPassword, "")
	cfg := Default()
	cfg.Comets = map[string]string{"comet-1": "127.0.0.1:1"}
	cfg.Kafka.SASLMechanism = kafkasec.MechanismPlain
	cfg.Kafka.TLSCertFile = "cert.pem"
	err := cfg.Validate()
	if !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("Validate = %v", err)
	}
	for _, path := range []string{"kafka.sasl_user", "kafka.sasl_password_file", "kafka.tls_cert_file"} {
		if !strings.Contains(err.Error(), path+": ") {
			t.Errorf("%q does not name %s", err, path)
		}
	}
	if _, err := New(cfg, Deps{}); !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("New = %v, want conf.ErrInvalid", err)
	}
}
