package testkit

import (
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/discovery"
	"github.com/goim/goim/internal/discovery/embedded"
)

// discoveryServer is bilibili/discovery's server embedded in the test
// binary: at most one per process, never stopped. Its own data race fires
// 60 s after it starts, so tests that use it must end within that.
var discoveryServer struct {
	once sync.Once
	addr string
	err  error
}

// Discovery starts the embedded discovery server on first use and returns
// a client config for it that notices changes within about 100 ms. env
// separates tests: instances are seen only by watchers of the same env.
func Discovery(t testing.TB, env string) discovery.Config {
	t.Helper()
	discoveryServer.once.Do(func() {
		discoveryServer.addr = FreeAddr(t)
		discoveryServer.err = embedded.StartServer(discoveryServer.addr, nil)
	})
	if discoveryServer.err != nil {
		t.Fatalf("embedded discovery: %v", discoveryServer.err)
	}
	c := discovery.DefaultConfig()
	c.Nodes = []string{discoveryServer.addr}
	c.Env = env
	c.FetchInterval = conf.Duration(100 * time.Millisecond)
	c.PollTimeout = conf.Duration(time.Second)
	return c
}
