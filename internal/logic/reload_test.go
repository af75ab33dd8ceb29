package logic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/client"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/testkit"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// connectKid calls Connect with a token of kid from d and returns the
// error's gRPC code (codes.OK when accepted).
func (e *env) connectKid(d *keyDir, kid string, mid int64) codes.Code {
	e.t.Helper()
	_, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-a", Token: d.body(kid, mid)})
	return status.Code(err)
}

// TestServerReload: Server.Reload (what SIGHUP calls) rotates the keys of
// a running logic: a new kid is accepted, a removed one refused, a failed
// reload keeps the keys; each reload is counted by result.
func TestServerReload(t *testing.T) {
	d := newKeyDir(t)
	d.addHMAC("k1")
	e := startLogic(t, func(c *Config) {
		c.Auth.HMACKeyFile = ""
		c.Auth.KeysDir = d.dir
		c.Auth.ReloadInterval = 0 // Reload only
	})
	reloads := func(result string) float64 {
		return testutil.ToFloat64(e.srv.svc.metrics.keyReloads.WithLabelValues(result))
	}
	if c := e.connectKid(d, "k1", 1); c != codes.OK {
		t.Fatalf("k1: %v", c)
	}
	d.addEC("k2")
	if c := e.connectKid(d, "k2", 2); c != codes.Unauthenticated {
		t.Fatalf("k2 before the reload: %v", c)
	}
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if c := e.connectKid(d, "k2", 2); c != codes.OK {
		t.Fatalf("k2 after the reload: %v", c)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.authKeys); got != 2 {
		t.Fatalf("auth_keys = %v, want 2", got)
	}

	d.remove("k1.key")
	d.write("k3.key", []byte("short"))
	if err := e.srv.Reload(); err == nil || !strings.Contains(err.Error(), "k3.key") {
		t.Fatalf("reload with a bad file: %v", err)
	}
	if c := e.connectKid(d, "k1", 1); c != codes.OK {
		t.Fatalf("k1 after a failed reload: %v (the previous keys stay)", c)
	}
	d.remove("k3.key")
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if c := e.connectKid(d, "k1", 1); c != codes.Unauthenticated {
		t.Fatalf("k1 after its removal: %v", c)
	}
	if c := e.connectKid(d, "k2", 2); c != codes.OK {
		t.Fatalf("k2: %v", c)
	}
	if ok, bad := reloads("ok"), reloads("error"); ok != 2 || bad != 1 {
		t.Fatalf("reloads ok %v error %v, want 2 and 1", ok, bad)
	}
	if got := testutil.ToFloat64(e.srv.svc.metrics.authKeys); got != 1 {
		t.Fatalf("auth_keys = %v, want 1", got)
	}
}

// TestKeysReloadLoop: with auth.reload_interval, a key file added to
// keys_dir is picked up without a signal.
func TestKeysReloadLoop(t *testing.T) {
	d := newKeyDir(t)
	d.addHMAC("k1")
	e := startLogic(t, func(c *Config) {
		c.Auth.HMACKeyFile = ""
		c.Auth.KeysDir = d.dir
		c.Auth.ReloadInterval = conf.Duration(time.Second)
	})
	d.addHMAC("k2")
	testkit.WaitFor(t, 10*time.Second, func() error {
		if c := e.connectKid(d, "k2", 2); c != codes.OK {
			return fmt.Errorf("k2: %v", c)
		}
		return nil
	})
	if got := testutil.ToFloat64(e.srv.svc.metrics.keyReloads.WithLabelValues("ok")); got < 1 {
		t.Fatalf("reloads ok = %v", got)
	}
	// A broken file is counted as an error, and the keys stay.
	d.write("k3.key", []byte("short"))
	testkit.WaitFor(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(e.srv.svc.metrics.keyReloads.WithLabelValues("error")); got < 1 {
			return errors.New("no failed reload counted yet")
		}
		return nil
	})
	if c := e.connectKid(d, "k2", 2); c != codes.OK {
		t.Fatalf("k2 after a failed reload: %v", c)
	}
}

// keyToken signs an HS256 token of mid with the connection key claim key
// ("" for none).
func keyToken(t *testing.T, mid int64, key string) string {
	t.Helper()
	c := Claims{Key: key}
	c.Subject = fmt.Sprint(mid)
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConnectTokenKeys: with auth.token_keys the token's key claim is the
// connection's key, and with auth.reply_key the reply carries the auth
// reply body naming the key; by default neither.
func TestConnectTokenKeys(t *testing.T) {
	connect := func(e *env, tok string) *logicpb.ConnectReply {
		t.Helper()
		r, err := e.rpc.Connect(context.Background(), &logicpb.ConnectReq{Server: "comet-a", Token: authBody(tok, "")})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	e := startLogic(t, func(c *Config) { c.Auth.TokenKeys, c.Auth.ReplyKey = true, true })
	r := connect(e, keyToken(t, 42, "phone-42"))
	if r.Key != "phone-42" || string(r.AuthReply) != `{"key":"phone-42"}` {
		t.Fatalf("reply key %q auth reply %q", r.Key, r.AuthReply)
	}
	if got := e.rget("key_phone-42"); got != "comet-a" {
		t.Fatalf("key_phone-42 = %q", got)
	}
	r = connect(e, keyToken(t, 42, ""))
	if !uuidRE.MatchString(r.Key) || string(r.AuthReply) != `{"key":"`+r.Key+`"}` {
		t.Fatalf("no key claim: reply key %q auth reply %q", r.Key, r.AuthReply)
	}

	def := startLogic(t, nil)
	r = connect(def, keyToken(t, 42, "phone-42"))
	if !uuidRE.MatchString(r.Key) || len(r.AuthReply) != 0 {
		t.Fatalf("defaults: reply key %q auth reply %q", r.Key, r.AuthReply)
	}
}

// TestTokenKeysWithComet: a client whose token names its key gets it in
// the auth reply, a backend pushes to it by that key, and a second
// connection with the same key replaces the first (goim v2's rule, the
// point of single-device addressing).
func TestTokenKeysWithComet(t *testing.T) {
	e := startLogic(t, func(c *Config) { c.Auth.TokenKeys, c.Auth.ReplyKey = true, true })
	cm := startComet(t, "comet-tk", e.srv.RPCAddr(), discovery.DefaultConfig())
	dial := func(tok string) *client.Conn {
		t.Helper()
		cl, err := dialTCP(t, cm.Addrs("tcp")[0].String(), authBody(tok, "", 1000))
		if err != nil {
			t.Fatalf("auth: %v", err)
		}
		return cl
	}
	first := dial(keyToken(t, 77, "phone-77"))
	if string(first.AuthReply()) != `{"key":"phone-77"}` || first.Key() != "phone-77" {
		t.Fatalf("auth reply body %q", first.AuthReply())
	}
	e.push("/goim/push/keys?operation=1000&keys=phone-77", []byte("hi"))
	if m := e.pushed(1)[0].msg; m.Server != "comet-tk" || len(m.Keys) != 1 || m.Keys[0] != "phone-77" {
		t.Fatalf("push %+v", m)
	}

	dial(keyToken(t, 77, "phone-77"))
	if p, err := readFrame(first); err == nil || !errors.Is(err, io.EOF) {
		t.Fatalf("the replaced connection: op %d %q, %v; want it closed (EOF)", p.Op, p.Body, err)
	}
	// The newer connection holds the key's routing.
	if got := e.rget("key_phone-77"); got != "comet-tk" {
		t.Fatalf("key_phone-77 = %q", got)
	}
}
