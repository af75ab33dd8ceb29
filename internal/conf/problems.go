package conf

import (
	"errors"
	"fmt"
	"strconv"
)

// Problems collects validation problems so that Validate reports all of
// them at once. The zero value is ready to use. Use a pointer; a nested
// section validates itself into [Problems.Sub] of its parent:
//
//	func (c Config) Validate() error {
//		var p conf.Problems
//		c.TCP.validate(p.Sub("tcp"))
//		p.Check(c.Workers > 0, "workers", "must be > 0, got %d", c.Workers)
//		return p.Err()
//	}
type Problems struct {
	prefix string    // key path of this section, "" at the root
	root   *Problems // collector the problems go to; nil means p itself
	errs   []error   // only used on the root
}

// Sub returns a collector for the section at key path section (relative to
// p) whose problems are added to p's, with their paths prefixed by it:
// p.Sub("tcp").Add("bind[1]", ...) reports "tcp.bind[1]: ...".
func (p *Problems) Sub(section string) *Problems {
	return &Problems{prefix: p.path(section), root: p.top()}
}

// Add records a problem with the key at path (relative to p's section).
// The message is formatted with fmt.Errorf, so %w wraps an error.
func (p *Problems) Add(path, format string, args ...any) {
	r := p.top()
	r.errs = append(r.errs, &problem{path: p.path(path), err: fmt.Errorf(format, args...)})
}

// Check records a problem, as [Problems.Add] does, when ok is false.
// It returns ok.
func (p *Problems) Check(ok bool, path, format string, args ...any) bool {
	if !ok {
		p.Add(path, format, args...)
	}
	return ok
}

// Err returns nil if no problem was recorded, else the errors.Join of all
// problems (including those of every Sub) in the order they were added. Each
// reads "path: message" and wraps [ErrInvalid].
func (p *Problems) Err() error {
	return errors.Join(p.top().errs...)
}

// Index returns the key path of element i of the array at path:
// Index("tcp.bind", 1) is "tcp.bind[1]".
func Index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func (p *Problems) top() *Problems {
	if p.root != nil {
		return p.root
	}
	return p
}

// path joins p's prefix and the relative key path rel.
func (p *Problems) path(rel string) string {
	switch {
	case p.prefix == "":
		return rel
	case rel == "":
		return p.prefix
	case rel[0] == '[':
		return p.prefix + rel
	default:
		return p.prefix + "." + rel
	}
}

// problem is one validation problem: the key path and what is wrong.
type problem struct {
	path string
	err  error
}

func (e *problem) Error() string   { return e.path + ": " + e.err.Error() }
func (e *problem) Unwrap() []error { return []error{ErrInvalid, e.err} }
