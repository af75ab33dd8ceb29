//go:build unix

package bench

import "syscall"

// RaiseFileLimit raises the soft limit on open files to the hard limit
// and returns the limit now in force.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return uint64(rl.Cur), err
		}
		rl = want
	}
	return uint64(rl.Cur), nil
}
