package comet

import (
	"hash/maphash"
	"sync"
)

// Lock order: Bucket.mu, then roomShard.mu, then a channel's writer.mu
// (writer.go). A lock is never held across a socket write, an RPC or a
// blocking channel send: Channel.push and Channel.close never block, so
// walking a bucket or a room under its read lock and pushing to every
// member is safe.

// Bucket is one shard of the connections, by key hash.
type Bucket struct {
	mu  sync.RWMutex
	chs map[string]*Channel // key -> channel; guarded by mu
}

// buckets are every connection published under its key, sharded by a
// hash of the key with a seed of their own.
type buckets struct {
	seed maphash.Seed
	all  []*Bucket
}

func newBuckets(n int) buckets {
	bs := buckets{seed: maphash.MakeSeed(), all: make([]*Bucket, n)}
	for i := range bs.all {
		bs.all[i] = &Bucket{chs: make(map[string]*Channel)}
	}
	return bs
}

// bucket returns the bucket of key.
func (s *Server) bucket(key string) *Bucket {
	bs := &s.buckets
	return bs.all[maphash.String(bs.seed, key)%uint64(len(bs.all))]
}

// put publishes c under its key and returns the channel it replaced, if any
// (the caller closes it, outside the lock).
func (b *Bucket) put(c *Channel) (old *Channel) {
	b.mu.Lock()
	old = b.chs[c.key]
	b.chs[c.key] = c
	b.mu.Unlock()
	return old
}

// del removes c if its key still maps to it (a newer connection with the
// same key may have replaced it).
func (b *Bucket) del(c *Channel) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.chs[c.key] != c {
		return false
	}
	delete(b.chs, c.key)
	return true
}

func (b *Bucket) get(key string) *Channel {
	b.mu.RLock()
	c := b.chs[key]
	b.mu.RUnlock()
	return c
}

// channels appends the bucket's channels to dst.
func (b *Bucket) channels(dst []*Channel) []*Channel {
	b.mu.RLock()
	for _, c := range b.chs {
		dst = append(dst, c)
	}
	b.mu.RUnlock()
	return dst
}
