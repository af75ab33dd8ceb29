package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// maxListLen bounds what one list flag may expand to (source addresses,
// mids, keys), so a typo such as 1-1000000000 is an error, not an
// out-of-memory.
const maxListLen = 1 << 22

// ParseAddrRange parses source addresses: a comma-separated list of
// addresses and IPv4 ranges, "127.0.0.2-127.0.0.20" or the short form
// "127.0.0.2-20" (last octet), in that order, each address once.
func ParseAddrRange(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := make(map[netip.Addr]bool)
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("item %d is empty", i+1)
		}
		first, last, isRange := strings.Cut(item, "-")
		lo, err := netip.ParseAddr(first)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		hi := lo
		if isRange {
			if !lo.Is4() {
				return nil, fmt.Errorf("%q: ranges are IPv4 only", item)
			}
			if hi, err = netip.ParseAddr(last); err != nil {
				octet, perr := strconv.ParseUint(last, 10, 8)
				if perr != nil {
					return nil, fmt.Errorf("%q: end %q is neither an address nor a last octet", item, last)
				}
				b := lo.As4()
				b[3] = byte(octet)
				hi = netip.AddrFrom4(b)
			}
			if !hi.Is4() || hi.Less(lo) {
				return nil, fmt.Errorf("%q: end before start", item)
			}
			a, b := lo.As4(), hi.As4()
			if n := binary.BigEndian.Uint32(b[:]) - binary.BigEndian.Uint32(a[:]); len(out)+int(n) >= maxListLen {
				return nil, fmt.Errorf("more than %d addresses", maxListLen)
			}
		}
		for a := lo; ; a = a.Next() {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
			if a == hi {
				break
			}
		}
	}
	return out, nil
}

// ParseInt64List parses a comma-separated list of integers and inclusive
// ranges ("1-1000,2000"), in order, repeats kept.
func ParseInt64List(s string) ([]int64, error) {
	var out []int64
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("item %d is empty", i+1)
		}
		a, b, isRange := strings.Cut(item, "-")
		lo, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer or a range lo-hi", item)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.ParseInt(b, 10, 64); err != nil || hi < lo {
				return nil, fmt.Errorf("%q is not a range lo-hi with lo <= hi", item)
			}
		}
		if uint64(hi-lo) >= maxListLen || len(out)+int(hi-lo)+1 > maxListLen {
			return nil, fmt.Errorf("more than %d values", maxListLen)
		}
		for v := lo; ; v++ {
			out = append(out, v)
			if v == hi {
				break
			}
		}
	}
	return out, nil
}

// ParseInt32List parses a comma-separated list of int32 values (ops).
func ParseInt32List(s string) ([]int32, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int32
	for item := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseInt(strings.TrimSpace(item), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not an int32", item)
		}
		out = append(out, int32(v))
	}
	return out, nil
}

// ParseKeys parses a comma-separated list of connection keys; an item
// ending in "[lo-hi]" stands for the keys with each number of the range
// in its place: "bk-[0-2]" is bk-0, bk-1, bk-2 (what conns -key-prefix bk-
// gives its first three connections).
func ParseKeys(s string) ([]string, error) {
	var out []string
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("item %d is empty", i+1)
		}
		open := strings.LastIndexByte(item, '[')
		if open < 0 || !strings.HasSuffix(item, "]") {
			out = append(out, item)
			continue
		}
		nums, err := ParseInt64List(item[open+1 : len(item)-1])
		if err != nil || len(nums) == 0 || strings.Contains(item[open+1:], ",") {
			return nil, fmt.Errorf("%q: bad [lo-hi] range", item)
		}
		if len(out)+len(nums) > maxListLen {
			return nil, fmt.Errorf("more than %d keys", maxListLen)
		}
		for _, n := range nums {
			out = append(out, item[:open]+strconv.FormatInt(n, 10))
		}
	}
	return out, nil
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// checkHost returns ErrRemote unless host (a name or an address) is
// loopback; a name must resolve to loopback addresses only.
func checkHost(ctx context.Context, host string) error {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.IsLoopback() {
			return fmt.Errorf("%s: %w", host, ErrRemote)
		}
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return fmt.Errorf("%s (%s): %w", host, a, ErrRemote)
		}
	}
	return nil
}

// checkHostPort is checkHost for "host:port".
func checkHostPort(ctx context.Context, hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: %w", hostport, err)
	}
	return checkHost(ctx, host)
}

// checkURL is checkHost for an http:// base URL.
func checkURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	return checkHost(ctx, u.Hostname())
}
