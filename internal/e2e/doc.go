// Package e2e is goim's end-to-end suite: it builds the logic, job and
// comet binaries and bilibili/discovery's server (cmd/discovery),
// runs them as separate processes on loopback against a redis-server of its
// own and an in-process Kafka-protocol broker (kfake), connects goim v2
// clients over TCP and WebSocket (the client package's connections), and
// checks what docs/push-api.md, docs/protocol.md and docs/operations.md
// promise: response shapes, delivery, room order, online counts, the nodes
// list, comet drain, and recovery from a killed job, a Redis restart and a
// Kafka outage; and what docs/security.md promises, one test per finding
// of the security review (security_test.go lists them), with a signed-mode
// logic and comet of their own beside the cluster. Every service runs with
// credentials: the push API's bearer tokens and the internal gRPC secret,
// from files and the environment. TestShippedConfigs runs logic, job and a
// comet on configs/*.toml as shipped (only their addresses moved) and
// delivers a key, a user, a room and a broadcast push to clients with
// signed tokens.
//
// TestScaleOut (scale_test.go, massreconnect_test.go) runs the scale-out
// scenarios on a cluster of its own, two logic, two job and three comet
// processes: pushes through job rebalances and a logic outage, and 10,000
// clients (goim-bench processes) reconnecting after their comet is killed.
// It is heavy for this 2-core machine and runs only with GOIM_E2E_SCALE=1
// (make e2e-scale).
//
// The package has tests only; run it with
//
//	go test -race -count=1 ./internal/e2e/
package e2e
