//go:build !linux

package comet

import (
	"net"
	"syscall"
)

// waitReadable returns at once where no peek-based wait is implemented:
// the channel then blocks in a read with its buffer borrowed.
func waitReadable(syscall.RawConn) error { return nil }

// rawConn returns nil: pushers always queue where writeNow is not
// implemented.
func rawConn(net.Conn) syscall.RawConn { return nil }

func (w *writer) writeNow(uintptr) bool { return true }

func socketFD(syscall.RawConn) int32 { return -1 }

func shutdownSocket(syscall.RawConn) {}
