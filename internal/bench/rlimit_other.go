//go:build !unix

package bench

// RaiseFileLimit does nothing where there is no RLIMIT_NOFILE; the limit
// returned (0) means unknown.
func RaiseFileLimit() (uint64, error) { return 0, nil }
