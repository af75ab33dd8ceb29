package bench

import (
	"context"
	"fmt"
	"net/http"

	"github.com/goim/goim/client"
)

// nodesAnswer is what the tool takes from logic's /goim/nodes/weighted:
// the comet addresses of its transport, best first, and the backoff hint.
type nodesAnswer struct {
	Addrs   []string
	Backoff client.Backoff
}

// ResolveNodes asks logic where clients should connect (GET
// /goim/nodes/weighted, once) and returns the comet addresses of the
// transport: every node listed, with the answer's tcp_port or ws_port
// (SSE is served on the WebSocket port). One call for the whole run, so
// logic counts it as one client; the connections are then spread
// round-robin over the nodes it named.
func ResolveNodes(ctx context.Context, api, transport, platform string, allowRemote bool) ([]string, error) {
	if !allowRemote {
		if err := checkURL(ctx, api); err != nil {
			return nil, fmt.Errorf("api %w", err)
		}
	}
	n, err := fetchNodes(ctx, http.DefaultClient, api, transport, platform)
	if err != nil {
		return nil, err
	}
	return n.Addrs, nil
}

// fetchNodes asks logic at api for the nodes of transport and platform
// (client.FetchNodes): an answer without a port for the transport is an
// error. It checks nothing about the target (see ResolveNodes).
func fetchNodes(ctx context.Context, hc *http.Client, api, transport, platform string) (nodesAnswer, error) {
	n, err := client.FetchNodes(ctx, hc, api, platform)
	if err != nil {
		return nodesAnswer{}, err
	}
	tr := client.TCP
	if transport != TransportTCP {
		tr = client.WS // ws, and sse on the WebSocket listener
	}
	addrs := n.Addrs(tr)
	if len(addrs) == 0 {
		return nodesAnswer{}, fmt.Errorf("nodes: logic's answer has no %s port", tr)
	}
	return nodesAnswer{Addrs: addrs, Backoff: n.Backoff}, nil
}
