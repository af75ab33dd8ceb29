package dao_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/kafkasec"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

// TestKafkaSASLAndTLS: logic's producer publishes to a broker that demands
// SASL (each mechanism), over TLS in some cases; the records arrive
// (read back by an independent client with the same credentials). Wrong
// credentials or a wrong CA fail the publish with ErrKafka.
func TestKafkaSASLAndTLS(t *testing.T) {
	ca := testkit.NewCA(t, "kafka")
	otherCA := testkit.NewCA(t, "other")
	const user, password = "goim-logic", "kafka-password"
	tests := []struct {
		name      string
		mechanism string
		tls       bool
		edit      func(*dao.KafkaConfig)
		wantErr   bool
	}{
		{name: "PLAIN over TLS", mechanism: kafkasec.MechanismPlain, tls: true},
		{name: "SCRAM-SHA-256", mechanism: kafkasec.MechanismSCRAMSHA256},
		{name: "SCRAM-SHA-512 over TLS", mechanism: kafkasec.MechanismSCRAMSHA512, tls: true},
		{name: "wrong password", mechanism: kafkasec.MechanismSCRAMSHA256, edit: func(c *dao.KafkaConfig) {
			c.SASLPasswordFile = secretFile(t, "wrong")
		}, wantErr: true},
		{name: "wrong CA", mechanism: kafkasec.MechanismPlain, tls: true, edit: func(c *dao.KafkaConfig) {
			c.TLSCAFile = otherCA.CertFile
		}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(tt.mechanism, user, password)}
			var readTLS *tls.Config
			if tt.tls {
				opts = append(opts, kfake.TLS(ca.ServerTLS("127.0.0.1")))
				pem, err := os.ReadFile(ca.CertFile)
				if err != nil {
					t.Fatal(err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(pem)
				readTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			cluster, topic := startKafka(t, 2, opts...)
			t.Setenv(kafkasec.EnvSASLPassword, "")
			k := newTestKafka(t, cluster.ListenAddrs(), topic, func(c *dao.KafkaConfig) {
				c.Timeout = conf.Duration(3 * time.Second)
				c.SASLMechanism, c.SASLUser, c.SASLPasswordFile = tt.mechanism, user, secretFile(t, password)
				if tt.tls {
					c.TLS, c.TLSCAFile = true, ca.CertFile
				}
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			msg := &logic.PushMsg{Type: logic.PushMsg_ROOM, Room: "live://1", Operation: 1000, Msg: []byte("hi")}
			err := k.Publish(context.Background(), msg)
			if tt.wantErr {
				if !errors.Is(err, dao.ErrKafka) {
					t.Fatalf("Publish = %v, want ErrKafka", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			readOpts := []kgo.Opt{kgo.SASL(saslMechanism(tt.mechanism, user, password))}
			if readTLS != nil {
				readOpts = append(readOpts, kgo.DialTLSConfig(readTLS))
			}
			recs := consume(t, cluster.ListenAddrs(), topic, 1, readOpts...)
			if got := decodePush(t, recs[0]); got.MsgId != msg.MsgId || string(got.Msg) != "hi" {
				t.Fatalf("record %v, want the push", got)
			}
		})
	}
}

// saslMechanism is franz-go's client side of a mechanism, for reading
// back what logic wrote.
func saslMechanism(name, user, pass string) sasl.Mechanism {
	switch name {
	case kafkasec.MechanismPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case kafkasec.MechanismSCRAMSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	default:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	}
}

// TestKafkaConfigSecurity: the [kafka] security keys are validated with
// the section (NewKafka refuses them, naming the keys).
func TestKafkaConfigSecurity(t *testing.T) {
	t.Setenv(kafkasec.EnvSASLPassword, "")
	cfg := dao.DefaultKafkaConfig()
	cfg.SASLMechanism = "SCRAM-SHA-1"
	cfg.TLSCAFile = secretFile(t, "x")
	var p conf.Problems
	cfg.Validate(p.Sub("kafka"))
	wantInvalid(t, p.Err(), []string{"kafka.sasl_mechanism", "kafka.tls_ca_file"})
	if _, err := dao.NewKafka(cfg, nil); !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("NewKafka = %v, want conf.ErrInvalid", err)
	}
}
