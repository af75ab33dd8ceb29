package comet

import "github.com/goim/goim/api/protocol"

// readFrame reads the next client frame into p; p.Body is valid until the
// next call. Between frames a plain TCP or WebSocket connection holds no
// read buffer: it waits for data with waitReadable, then borrows a pooled
// reader until what arrived is consumed. TLS buffers inside crypto/tls, so
// a TLS channel keeps its reader.
func (c *Channel) readFrame(p *protocol.Proto) error {
	if c.tr.ws() {
		return c.readWSFrame(p)
	}
	if err := c.fill(); err != nil {
		return err
	}
	return p.ReadTCP(c.r, c.srv.cfg.Protocol.MaxBody)
}

// fill makes sure c.r is set, first waiting for data when nothing is
// buffered (plain TCP only).
func (c *Channel) fill() error {
	if c.r != nil && c.r.Buffered() > 0 {
		return nil
	}
	if c.rc != nil { // plain TCP or WebSocket
		c.releaseReader()
		if err := waitReadable(c.rc); err != nil {
			return err
		}
	}
	if c.r == nil {
		c.r = c.srv.readers.get(c.conn)
	}
	return nil
}
