// Package logic is goim's logic service: it authenticates the
// connections comets accept and keeps their session routing in Redis,
// accepts pushes over HTTP and publishes them to Kafka for job to deliver,
// and answers where clients should connect and how many are online.
//
// A push enters through the HTTP API (package httpapi), which checks the
// caller and the parameters and calls Service's PushKeys, PushMids,
// PushRoom or PushAll (push.go). A push to keys or users first reads from
// Redis which comets hold them; every push then leaves as PushMsg records
// on the Kafka topic (package dao: Kafka), all with the push's one msg_id,
// answered (with that id) only once Kafka acknowledged them.
//
// A connection's session enters through the gRPC service comets call
// (package rpc): a comet's Connect or ConnectBatch becomes Service.Connect
// or Service.ConnectBatch (conn.go), which verifies the auth body's token
// (auth.go, authkeys.go) and writes the session routing to Redis (package
// dao: Redis; a batch in one pipeline). Heartbeat renews the routing and
// Disconnect removes it where it still belongs to the connection.
//
// Comets' online reports (RenewOnline) go to Redis too; every logic
// re-reads them all to compute the cluster's room counts and totals
// (online.go), which the HTTP API serves, and /goim/nodes/weighted hands
// out comets from discovery weighted by their load (nodes.go).
//
// Server (server.go) wires it: New builds the Service, the Redis and Kafka
// clients, the HTTP API and the gRPC server; Start opens the listeners,
// follows comets in discovery and registers logic there; Shutdown stops
// them in order.
package logic
