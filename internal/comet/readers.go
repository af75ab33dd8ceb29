package comet

import (
	"bufio"
	"io"
	"sync"
)

// readerPool lends connections their frame readers, bufio.Readers of
// HeaderSize+MaxBody bytes. A plain TCP or WebSocket connection borrows one
// only while it reads (fill) and gives it back once what arrived is
// consumed, so an idle connection holds no read buffer.
type readerPool struct{ pool sync.Pool }

// init sets the size of the readers the pool makes.
func (p *readerPool) init(size int) {
	p.pool.New = func() any { return bufio.NewReaderSize(nil, size) }
}

// get borrows a reader for r.
func (p *readerPool) get(r io.Reader) *bufio.Reader {
	br := p.pool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// put gives br back.
func (p *readerPool) put(br *bufio.Reader) {
	br.Reset(nil)
	p.pool.Put(br)
}

// releaseReader gives the borrowed frame reader back, if any.
func (c *Channel) releaseReader() {
	if c.r != nil {
		c.srv.readers.put(c.r)
		c.r = nil
	}
}
