package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/goim/goim/api/protocol"
)

// Errors a Service's PushStatus wraps.
var (
	// ErrNoRecord: the push has no delivery record: it is unknown, was not
	// sent to a user or key with a reliable connection, or its record is
	// past its keep time (answered 404, -404).
	ErrNoRecord = errors.New("httpapi: no delivery record")
	// ErrReceiptsOff: delivery receipts are off (answered 501, -501).
	ErrReceiptsOff = errors.New("httpapi: delivery receipts are off")
)

// TargetStatus is one target's delivery status of a push.
type TargetStatus struct {
	// Target is "user:<mid>" or "key:<key>".
	Target string
	// Status is "pending", "delivered" or "expired".
	Status string
	// At is when the target got its status.
	At time.Time
}

// statusData is the data of /goim/push/status.
type statusData struct {
	MsgID   string       `json:"msg_id"`
	Targets []targetData `json:"targets"` // never null
}

// targetData is one element of statusData.Targets.
type targetData struct {
	Target string `json:"target"`
	Status string `json:"status"`
	At     int64  `json:"at"` // Unix ms
}

// pushStatus serves /goim/push/status: the delivery receipts of a push.
func (s *Server) pushStatus(c *gin.Context) int {
	q, err := parseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return s.badRequest(c, err)
	}
	id, err := parsePushStatus(q)
	if err != nil {
		return s.badRequest(c, err)
	}
	targets, err := s.svc.PushStatus(c.Request.Context(), id)
	switch {
	case errors.Is(err, ErrNoRecord):
		return s.fail(c, http.StatusNotFound, CodeNotFound,
			"msg_id: no delivery record of "+id+" (unknown, not sent to a reliable user or key, or older than its record's keep time)")
	case errors.Is(err, ErrReceiptsOff):
		return s.fail(c, http.StatusNotImplemented, CodeNotImplemented,
			"delivery receipts are off in this logic ([receipts] enabled = false)")
	case err != nil:
		if ok, suppressed := s.warns.Allow(statusFailed); ok {
			s.log.LogAttrs(c.Request.Context(), slog.LevelWarn, statusFailed,
				slog.Any("err", err), slog.Int64("suppressed", int64(suppressed)))
		}
		return s.fail(c, http.StatusInternalServerError, CodeServerError, err.Error())
	}
	data := statusData{MsgID: id, Targets: make([]targetData, 0, len(targets))}
	for _, t := range targets {
		data.Targets = append(data.Targets, targetData{Target: t.Target, Status: t.Status, At: t.At.UnixMilli()})
	}
	return s.ok(c, data)
}

// statusFailed is the warning of a failed status read.
const statusFailed = "httpapi: push status failed"

// parsePushStatus parses /goim/push/status: msg_id, 32 hex digits,
// returned in lowercase.
func parsePushStatus(q url.Values) (string, error) {
	id, err := requiredString(q, "msg_id")
	if err != nil {
		return "", err
	}
	if _, ok := protocol.ParseMsgID(id); !ok {
		return "", &paramError{param: "msg_id", why: echo(id) + " is not 32 hex digits"}
	}
	return strings.ToLower(id), nil
}
