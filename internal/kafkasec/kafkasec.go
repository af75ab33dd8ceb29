// Package kafkasec is the link security shared by logic's producer and
// job's consumer group: TLS (package tlsclient) and SASL authentication
// (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), configured by the same keys in
// both services' [kafka] sections and applied to their sarama configs.
//
// The SASL password never sits in the TOML file: it comes from the
// environment variable GOIM_KAFKA_SASL_PASSWORD or from sasl_password_file.
package kafkasec

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/secret"
	"github.com/goim/goim/internal/tlsclient"
)

// EnvSASLPassword is the environment variable holding the SASL password;
// when set and not empty it wins over sasl_password_file.
const EnvSASLPassword = "GOIM_KAFKA_SASL_PASSWORD"

// SASL mechanisms.
const (
	MechanismNone        = ""
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Config is the security keys of a [kafka] section. Embed it in the
// section's struct: its keys sit in the section itself.
type Config struct {
	// The keys tls, tls_ca_file, tls_cert_file, tls_key_file and
	// tls_server_name: Kafka over TLS, the brokers' certificates always
	// verified. Default: no TLS.
	tlsclient.Config
	// SASLMechanism authenticates to the brokers with SASL: "" (none),
	// "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512". PLAIN sends the
	// password itself, so use it only with tls = true. Default "".
	SASLMechanism string `toml:"sasl_mechanism"`
	// SASLUser is the SASL user; required with a mechanism. Default "".
	SASLUser string `toml:"sasl_user"`
	// SASLPasswordFile is a file holding the SASL password (trailing
	// newline ignored), read at start and by -check-config; the
	// environment variable GOIM_KAFKA_SASL_PASSWORD, when set, wins over
	// it. One of the two is required with a mechanism. Default "".
	SASLPasswordFile string `toml:"sasl_password_file"`
}

// Validate records every problem of c in p, with key paths relative to p.
// It reads the files c names (CA, certificate, key, password file).
func (c Config) Validate(p *conf.Problems) {
	c.Config.Validate(p)
	switch c.SASLMechanism {
	case MechanismNone:
		p.Check(c.SASLUser == "", "sasl_user", "is set but sasl_mechanism is empty: set the mechanism, or remove it")
		p.Check(c.SASLPasswordFile == "", "sasl_password_file", "is set but sasl_mechanism is empty: set the mechanism, or remove it")
		return
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
	default:
		p.Add("sasl_mechanism", `must be "", %q, %q or %q, got %q`, MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512, c.SASLMechanism)
		return
	}
	p.Check(c.SASLUser != "", "sasl_user", "must not be empty with sasl_mechanism %q", c.SASLMechanism)
	pw, _, err := c.password()
	switch {
	case err != nil:
		p.Add("sasl_password_file", "%v", err)
	case pw == "":
		p.Add("sasl_password_file", "SASL needs a password: set sasl_password_file or %s", EnvSASLPassword)
	}
}

func (c Config) password() (string, secret.Source, error) {
	return secret.Resolve(EnvSASLPassword, c.SASLPasswordFile, "")
}

// Security is a Config loaded: the TLS configuration built and the
// password read, ready to be applied to any number of sarama configs.
type Security struct {
	tls       *tls.Config // nil: no TLS
	mechanism string
	user      string
	password  string
	source    secret.Source
}

// Security loads c: it reads the files and the environment. Validate c
// first; Security fails on the same problems, without key paths.
func (c Config) Security() (*Security, error) {
	tc, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	s := &Security{tls: tc, mechanism: c.SASLMechanism, user: c.SASLUser}
	if c.SASLMechanism == MechanismNone {
		return s, nil
	}
	if s.password, s.source, err = c.password(); err != nil {
		return nil, err
	}
	if s.password == "" {
		return nil, fmt.Errorf("kafka: sasl_mechanism %q needs a password (sasl_password_file or %s)", c.SASLMechanism, EnvSASLPassword)
	}
	return s, nil
}

// Apply sets sc's TLS and SASL settings.
func (s *Security) Apply(sc *sarama.Config) {
	if s.tls != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = s.tls
	}
	if s.mechanism == MechanismNone {
		return
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.Version = sarama.SASLHandshakeV1
	sc.Net.SASL.Mechanism = sarama.SASLMechanism(s.mechanism)
	sc.Net.SASL.User = s.user
	sc.Net.SASL.Password = s.password
	switch s.mechanism {
	case MechanismSCRAMSHA256:
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case MechanismSCRAMSHA512:
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	}
}

// Log writes the link's security at start: Info with what is used (never
// the password), and a Warn when SASL PLAIN sends its password without
// TLS.
func (s *Security) Log(log *slog.Logger, msg string) {
	log.Info(msg, "tls", s.tls != nil, "sasl_mechanism", s.mechanism, "sasl_user", s.user, "sasl_password_from", string(s.source))
	if s.mechanism == MechanismPlain && s.tls == nil {
		log.Warn(msg + ": sasl_mechanism PLAIN without tls sends the password in clear text; set tls = true")
	}
}

// scramClient is sarama's SCRAM client on github.com/xdg-go/scram; one
// per authentication.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("kafka: scram: %w", err)
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) {
	return c.conv.Step(challenge)
}

func (c *scramClient) Done() bool { return c.conv.Done() }
