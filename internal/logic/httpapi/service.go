package httpapi

import (
	"context"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/discovery"
)

// Service is what the HTTP API serves; logic's service implements it. The
// API parses and validates every parameter before calling it, so a call
// always has well-formed arguments (op > 0, 1..Config.MaxKeys distinct
// non-empty keys, 1..Config.MaxMids distinct mids > 0, room "type://id"
// passing protocol.CheckRoomID, speed 0..MaxSpeed).
type Service interface {
	// The Push methods return the push's msg_id, which the API answers
	// as data.msg_id: one per push (a keys or mids push published as one
	// PushMsg per comet gives them all this id), also when its targets
	// are all offline and nothing is published. logic's are 32 lowercase
	// hex digits (the API writes those without encoding/json and encodes
	// any other string). An error means nothing or only part was
	// published: the API answers -500 with it, and no id.

	// PushKeys publishes msg to the connections keys. Keys with no
	// session are skipped.
	PushKeys(ctx context.Context, op int32, keys []string, msg []byte) (msgID string, err error)
	// PushMids publishes msg to every connection of the users mids.
	PushMids(ctx context.Context, op int32, mids []int64, msg []byte) (msgID string, err error)
	// PushRoom publishes msg to room ("type://id").
	PushRoom(ctx context.Context, op int32, room string, msg []byte) (msgID string, err error)
	// PushAll publishes msg to every connection that accepts op, paced at
	// speed connections per second for the whole cluster (0: unpaced).
	PushAll(ctx context.Context, op, speed int32, msg []byte) (msgID string, err error)

	// OnlineTop returns at most limit rooms of type typ, highest count
	// first; RoomID is the id without the "type://" prefix.
	OnlineTop(typ string, limit int) []RoomCount
	// OnlineRoom returns the count of each room (ids without the prefix);
	// an unknown room counts 0.
	OnlineRoom(typ string, rooms []string) map[string]int32
	// OnlineTotal sums the connections and distinct IPs of live comets.
	OnlineTotal() (connCount, ipCount int64)

	// Nodes answers /goim/nodes/weighted for a client of platform at
	// clientIP. Never nil.
	Nodes(platform, clientIP string) *logicpb.NodesReply
	// Instances lists the comet instances, metadata reflecting their
	// latest reports. Never nil.
	Instances() []discovery.Instance
	// Comets lists the comets with their load and draining state, sorted
	// by hostname, for /goim/online/comets; withDiscovery says whether
	// logic reads comets from discovery (else it knows only those that
	// report).
	Comets() (comets []Comet, withDiscovery bool)

	// PushStatus returns the delivery receipts of push msgID (32
	// lowercase hex digits): its targets with their status, sorted by
	// target. The error wraps ErrNoRecord when the push has no record and
	// ErrReceiptsOff when receipts are off.
	PushStatus(ctx context.Context, msgID string) ([]TargetStatus, error)
}

// RoomCount is one element of /goim/online/top.
type RoomCount struct {
	RoomID string `json:"room_id"`
	Count  int32  `json:"count"`
}

// Comet is what logic knows of one comet, from discovery and its latest
// online report: an element of /goim/online/comets.
type Comet struct {
	Hostname string
	// Region and Zone are discovery's ("" without discovery).
	Region, Zone string
	// Addrs are the public addresses clients dial (metadata addrs);
	// RPCAddrs the instance's registered addresses (grpc://host:port).
	Addrs, RPCAddrs []string
	// Weight is the comet's share of new clients.
	Weight int64
	// ConnCount and IPCount are its connections and distinct client IPs.
	ConnCount, IPCount int64
	// Draining: the comet gives no new clients (a report's or
	// discovery's offline).
	Draining bool
	// Registered: the comet is listed by discovery.
	Registered bool
	// Reported: logic holds a live report of the comet, ReportAge old.
	Reported  bool
	ReportAge time.Duration
}
