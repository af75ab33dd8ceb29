//go:build !linux

package comet

import "errors"

// ioURing is the io_uring binding of Linux; elsewhere no ring can be set
// up and room fan-outs use the write path.
type ioURing struct{}

var errNoIOURing = errors.New("io_uring: not available on this system")

func newIOURing(uint32, uint32, uint32) (*ioURing, error) { return nil, errNoIOURing }
func (*ioURing) probeSend() error                         { return errNoIOURing }
func (*ioURing) size() int                                { return 0 }
func (*ioURing) prepSend(int32, []byte, uint8) bool       { return false }
func (*ioURing) submit([]int32) error                     { return errNoIOURing }
func (*ioURing) close()                                   {}

func sendResult(int32) (int, error) { return 0, nil }
