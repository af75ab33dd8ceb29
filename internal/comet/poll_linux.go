//go:build linux

package comet

import (
	"net"
	"syscall"
	"unsafe"
)

// waitReadable blocks until the socket behind rc has data to read (or is
// closed, or at EOF) without reading it and without a buffer: a one-byte
// MSG_PEEK probe, then Go's poller. An idle connection so holds no read
// buffer at all. A nil rc returns at once.
func waitReadable(rc syscall.RawConn) error {
	if rc == nil {
		return nil
	}
	return rc.Read(peekReady)
}

// peekReady reports whether a read would not block. It is a static function
// (no closure), so waiting allocates nothing.
func peekReady(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for the poller
		default:
			return true // data, EOF or an error: the next read reports it
		}
	}
}

// rawConn returns conn's raw socket for non-blocking writes, or nil.
func rawConn(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writeNow is the writer's inline write (writeInline): it writes w.tryBuf
// to fd without waiting, as much as the socket takes now. It always
// returns true so RawConn.Write never waits.
func (w *writer) writeNow(fd uintptr) bool {
	for w.tryN < len(w.tryBuf) {
		n, err := syscall.Write(int(fd), w.tryBuf[w.tryN:])
		if n > 0 {
			w.tryN += n
		}
		switch err {
		case nil:
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true
		default:
			w.tryErr = err
			return true
		}
	}
	return true
}

// socketFD returns the number of the socket behind rc, or -1. The number
// names the socket only until it is closed (see writer).
func socketFD(rc syscall.RawConn) int32 {
	fd := int32(-1)
	_ = rc.Control(func(s uintptr) { fd = int32(s) })
	return fd
}

// shutdownSocket shuts the socket behind rc down both ways without
// closing it: a read or write on it returns at once (EOF, EPIPE), and the
// number stays the socket's. A closed rc is left alone.
func shutdownSocket(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
}
