package dao_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/testkit"
)

// securedRedis is a redis-server of the test's own with a TLS port (a
// certificate of ca for 127.0.0.1 and localhost, client certificates not
// asked for) and an ACL user "goim" with password "goim-password" and the
// rights docs/operations.md recommends (keys under "test:", commands of
// @read, @write, @scripting and @connection but not @dangerous). The plain
// port, for the test's own setup, has the default user.
type securedRedis struct {
	srv     *testkit.RedisServer
	ca      *testkit.CA
	tlsAddr string
}

const (
	aclUser     = "goim"
	aclPassword = "goim-password"
)

func startSecuredRedis(t *testing.T) *securedRedis {
	t.Helper()
	ca := testkit.NewCA(t, "redis-test")
	cert := ca.Server("redis", "127.0.0.1", "localhost")
	tlsPort := freePort(t)
	srv := testkit.StartRedisServer(t, freePort(t),
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", cert.CertFile, "--tls-key-file", cert.KeyFile,
		"--tls-ca-cert-file", ca.CertFile, "--tls-auth-clients", "no")
	c, err := redis.Dial("tcp", srv.Addr(), redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("ACL", "SETUSER", aclUser, "on", ">"+aclPassword, "~test:*",
		"+@read", "+@write", "+@scripting", "+@connection", "-@dangerous"); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	return &securedRedis{srv: srv, ca: ca, tlsAddr: "127.0.0.1:" + strconv.Itoa(tlsPort)}
}

// control sends a command to the server's plain port.
func (s *securedRedis) control(t *testing.T, args ...any) {
	t.Helper()
	c, err := redis.Dial("tcp", s.srv.Addr(), redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do(args[0].(string), args[1:]...); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

// secretFile writes content to a file of the test's own.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// securedClient returns a DAO on s with edit applied to a config that
// names the TLS address, the CA and the ACL user (password inline).
func securedClient(t *testing.T, s *securedRedis, edit func(*dao.RedisConfig)) (*dao.Redis, error) {
	t.Helper()
	cfg := dao.DefaultRedisConfig()
	cfg.Addr = s.tlsAddr
	cfg.Prefix = "test:" + randomHex(8) + ":"
	cfg.DialTimeout = conf.Duration(5 * time.Second)
	cfg.ReadTimeout = conf.Duration(5 * time.Second)
	cfg.TLS = true
	cfg.TLSCAFile = s.ca.CertFile
	cfg.Username = aclUser
	cfg.Password = aclPassword
	if edit != nil {
		edit(&cfg)
	}
	r, err := dao.NewRedis(cfg, testLogger(t))
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, err
}

// TestRedisTLSAndACL: logic reaches a Redis that speaks only TLS on the
// address it is given, verifying the server's certificate, and
// authenticates as an ACL user; each wrong setting fails with a clear
// error instead of connecting.
func TestRedisTLSAndACL(t *testing.T) {
	s := startSecuredRedis(t)
	otherCA := testkit.NewCA(t, "other")
	tests := []struct {
		name    string
		edit    func(*dao.RedisConfig)
		env     string   // GOIM_REDIS_PASSWORD, when not ""
		wantErr []string // substrings of Ping's error; none = Ping succeeds
	}{
		{name: "CA file, ACL user, inline password"},
		{name: "password from password_file", edit: func(c *dao.RedisConfig) {
			c.Password = ""
			c.PasswordFile = secretFile(t, aclPassword+"\n")
		}},
		{name: "environment wins over the file", env: aclPassword, edit: func(c *dao.RedisConfig) {
			c.PasswordFile = secretFile(t, "stale-password")
		}},
		{name: "tls_server_name matches the certificate", edit: func(c *dao.RedisConfig) { c.TLSServerName = "localhost" }},
		{name: "wrong password", edit: func(c *dao.RedisConfig) { c.Password = "wrong" }, wantErr: []string{"WRONGPASS"}},
		{name: "wrong user", edit: func(c *dao.RedisConfig) { c.Username = "nobody" }, wantErr: []string{"WRONGPASS"}},
		{name: "wrong CA", edit: func(c *dao.RedisConfig) { c.TLSCAFile = otherCA.CertFile }, wantErr: []string{"certificate"}},
		{name: "system roots do not know the test CA", edit: func(c *dao.RedisConfig) { c.TLSCAFile = "" }, wantErr: []string{"certificate"}},
		{name: "tls_server_name the certificate lacks", edit: func(c *dao.RedisConfig) { c.TLSServerName = "redis.example" }, wantErr: []string{"redis.example"}},
		{name: "plain connection to the TLS port", edit: func(c *dao.RedisConfig) {
			c.TLS, c.TLSCAFile = false, ""
			c.ReadTimeout = conf.Duration(time.Second)
		}, wantErr: []string{"dao: redis: ping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv(dao.EnvRedisPassword, tt.env)
			}
			r, err := securedClient(t, s, tt.edit)
			if err != nil {
				t.Fatalf("NewRedis: %v", err)
			}
			err = r.Ping(context.Background())
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Ping: %v", err)
				}
				useEveryOperation(t, r)
				return
			}
			if !errors.Is(err, dao.ErrRedis) {
				t.Fatalf("Ping = %v, want ErrRedis", err)
			}
			t.Logf("Ping: %v", err)
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Ping error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestRedisMutualTLS: a Redis that asks for client certificates accepts
// logic's certificate and refuses a client without one.
func TestRedisMutualTLS(t *testing.T) {
	s := startSecuredRedis(t)
	s.control(t, "CONFIG", "SET", "tls-auth-clients", "yes")
	client := s.ca.Client("logic")
	r, err := securedClient(t, s, func(c *dao.RedisConfig) {
		c.TLSCertFile, c.TLSKeyFile = client.CertFile, client.KeyFile
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ping(context.Background()); err != nil {
		t.Fatalf("Ping with a client certificate: %v", err)
	}
	r, err = securedClient(t, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ping(context.Background()); !errors.Is(err, dao.ErrRedis) {
		t.Fatalf("Ping without a client certificate = %v, want ErrRedis", err)
	}
}

// TestRedisConfigFiles: the files the [redis] section names are opened
// and parsed by Validate (so by Load and -check-config), each problem
// under its key.
func TestRedisConfigFiles(t *testing.T) {
	ca := testkit.NewCA(t, "files")
	client := ca.Client("logic")
	notPEM := secretFile(t, "not a certificate")
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name      string
		env       string
		mutate    func(*dao.RedisConfig)
		wantPaths []string
	}{
		{name: "every file readable", mutate: func(c *dao.RedisConfig) {
			c.Username, c.PasswordFile = "u", secretFile(t, "p")
			c.TLS, c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile, c.TLSServerName = true, ca.CertFile, client.CertFile, client.KeyFile, "redis.internal"
		}},
		{name: "TLS with the system roots", mutate: func(c *dao.RedisConfig) { c.TLS = true }},
		{name: "user with the password from the environment", env: "p", mutate: func(c *dao.RedisConfig) { c.Username = "u" }},
		{name: "missing password file", mutate: func(c *dao.RedisConfig) { c.PasswordFile = missing }, wantPaths: []string{"redis.password_file"}},
		{name: "empty password file", mutate: func(c *dao.RedisConfig) { c.PasswordFile = secretFile(t, "\n") }, wantPaths: []string{"redis.password_file"}},
		{name: "user without a password", mutate: func(c *dao.RedisConfig) { c.Username = "u" }, wantPaths: []string{"redis.username"}},
		{name: "TLS files without tls", mutate: func(c *dao.RedisConfig) {
			c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile, c.TLSServerName = ca.CertFile, client.CertFile, client.KeyFile, "x"
		}, wantPaths: []string{"redis.tls_ca_file", "redis.tls_cert_file", "redis.tls_key_file", "redis.tls_server_name"}},
		{name: "CA file that is not PEM", mutate: func(c *dao.RedisConfig) { c.TLS, c.TLSCAFile = true, notPEM }, wantPaths: []string{"redis.tls_ca_file"}},
		{name: "missing CA file", mutate: func(c *dao.RedisConfig) { c.TLS, c.TLSCAFile = true, missing }, wantPaths: []string{"redis.tls_ca_file"}},
		{name: "certificate without key", mutate: func(c *dao.RedisConfig) { c.TLS, c.TLSCertFile = true, client.CertFile }, wantPaths: []string{"redis.tls_key_file"}},
		{name: "key without certificate", mutate: func(c *dao.RedisConfig) { c.TLS, c.TLSKeyFile = true, client.KeyFile }, wantPaths: []string{"redis.tls_cert_file"}},
		{name: "key that does not match the certificate", mutate: func(c *dao.RedisConfig) {
			c.TLS, c.TLSCertFile, c.TLSKeyFile = true, client.CertFile, ca.Client("other").KeyFile
		}, wantPaths: []string{"redis.tls_cert_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(dao.EnvRedisPassword, tt.env)
			cfg := dao.DefaultRedisConfig()
			tt.mutate(&cfg)
			var p conf.Problems
			cfg.Validate(p.Sub("redis"))
			err := p.Err()
			if len(tt.wantPaths) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				r, err := dao.NewRedis(cfg, nil)
				if err != nil {
					t.Fatalf("NewRedis: %v", err)
				}
				r.Close()
				return
			}
			wantInvalid(t, err, tt.wantPaths)
			if _, err := dao.NewRedis(cfg, nil); !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("NewRedis = %v, want conf.ErrInvalid", err)
			}
		})
	}
}

// useEveryOperation runs each of the DAO's Redis operations once, so a
// missing ACL right shows.
func useEveryOperation(t *testing.T, r *dao.Redis) {
	t.Helper()
	ctx := context.Background()
	s := dao.Session{Mid: 1, Key: "k1", Server: "s1", ConnID: 1}
	if err := r.AddSession(ctx, s); err != nil {
		t.Fatalf("AddSession: %v", err)
	}
	if res, err := r.RenewSession(ctx, s); err != nil || res != dao.Renewed {
		t.Fatalf("RenewSession = %v, %v", res, err)
	}
	if got, err := r.ServersByKeys(ctx, []string{"k1"}); err != nil || len(got["s1"]) != 1 {
		t.Fatalf("ServersByKeys = %v, %v", got, err)
	}
	if got, err := r.KeysByMids(ctx, []int64{1}); err != nil || len(got["s1"]) != 1 {
		t.Fatalf("KeysByMids = %v, %v", got, err)
	}
	if _, err := r.StoreOnline(ctx, "s1", map[string]int32{"live://1": 1}, 1, 1, false); err != nil {
		t.Fatalf("StoreOnline: %v", err)
	}
	if _, err := r.LoadAllOnline(ctx); err != nil {
		t.Fatalf("LoadAllOnline: %v", err)
	}
	if owned, err := r.DelSession(ctx, s); err != nil || !owned {
		t.Fatalf("DelSession = %v, %v", owned, err)
	}
}
