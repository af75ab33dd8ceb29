package discovery

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrClosed is returned for work asked of a closed Client, and by
	// Watcher.Ready when the client closed before the first snapshot.
	ErrClosed = errors.New("discovery: client closed")
	// ErrCancelled is returned by Registration.Set after Cancel.
	ErrCancelled = errors.New("discovery: registration cancelled")
	// ErrUnavailable is wrapped when no configured node answered.
	ErrUnavailable = errors.New("no discovery node answered")
	// ErrNotFound matches a [CodeError] with code -404: the server does not
	// know the instance or app.
	ErrNotFound = errors.New("not found")
	// ErrNotModified matches a [CodeError] with code -304: nothing changed
	// during a long poll.
	ErrNotModified = errors.New("not modified")
)

// Codes of discovery's answers (kratos ecode values).
const (
	codeOK          = 0
	codeNotModified = -304
	codeRequestErr  = -400
	codeNotFound    = -404
)

// CodeError is an answer of a discovery node with a non-zero code.
type CodeError struct {
	Node    string // "host:port" of the node that answered
	Code    int    // e.g. -400 bad request, -404 not found, -304 not modified
	Message string // the server's message, often just the code again
}

func (e *CodeError) Error() string {
	return fmt.Sprintf("node %s: code %d: %s", e.Node, e.Code, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) and errors.Is(err, ErrNotModified)
// match the corresponding codes.
func (e *CodeError) Is(target error) bool {
	return (target == ErrNotFound && e.Code == codeNotFound) ||
		(target == ErrNotModified && e.Code == codeNotModified)
}

// nodesError lists why each node failed; it wraps ErrUnavailable.
type nodesError []error

func (e nodesError) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return ErrUnavailable.Error() + ": " + strings.Join(parts, "; ")
}

func (e nodesError) Unwrap() []error { return append([]error{ErrUnavailable}, e...) }

// opError prefixes err with the operation and app: "discovery: register
// goim.comet: node 127.0.0.1:7171: code -400: ...".
func opError(op, appID string, err error) error {
	return fmt.Errorf("discovery: %s %s: %w", op, appID, err)
}
