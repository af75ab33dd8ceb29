package bench

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestParseAddrRange(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{name: "one address", in: "127.0.0.2", want: []string{"127.0.0.2"}},
		{name: "full range", in: "127.0.0.2-127.0.0.4", want: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}},
		{name: "last-octet range", in: "127.0.0.9-11", want: []string{"127.0.0.9", "127.0.0.10", "127.0.0.11"}},
		{name: "across an octet", in: "127.0.0.255-127.0.1.1", want: []string{"127.0.0.255", "127.0.1.0", "127.0.1.1"}},
		{name: "list with a repeat", in: "127.0.0.2, 127.0.0.3-4,127.0.0.3", want: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}},
		{name: "IPv6 address", in: "::1", want: []string{"::1"}},
		{name: "end before start", in: "127.0.0.5-127.0.0.4", wantErr: true},
		{name: "bad end", in: "127.0.0.5-x", wantErr: true},
		{name: "octet over 255", in: "127.0.0.5-256", wantErr: true},
		{name: "IPv6 range", in: "::1-::2", wantErr: true},
		{name: "empty item", in: "127.0.0.2,", wantErr: true},
		{name: "not an address", in: "localhost", wantErr: true},
		{name: "too many", in: "10.0.0.0-10.255.255.255", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAddrRange(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error; got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if !slices.Equal(s, tc.want) {
				t.Fatalf("got %v, want %v", s, tc.want)
			}
		})
	}
}

func TestParseLists(t *testing.T) {
	mids, err := ParseInt64List("1-3, 7,2")
	if err != nil || !slices.Equal(mids, []int64{1, 2, 3, 7, 2}) {
		t.Fatalf("mids %v %v", mids, err)
	}
	for _, bad := range []string{"", "1,", "3-1", "x", "1-x", "0-99999999999"} {
		if _, err := ParseInt64List(bad); err == nil {
			t.Errorf("ParseInt64List(%q): no error", bad)
		}
	}
	keys, err := ParseKeys("bk-[0-2],solo,a[b")
	if err != nil || !slices.Equal(keys, []string{"bk-0", "bk-1", "bk-2", "solo", "a[b"}) {
		t.Fatalf("keys %v %v", keys, err)
	}
	for _, bad := range []string{"k[]", "k[2-1]", "k[x]", ","} {
		if _, err := ParseKeys(bad); err == nil {
			t.Errorf("ParseKeys(%q): no error", bad)
		}
	}
	ops, err := ParseInt32List("1000, 1001")
	if err != nil || !slices.Equal(ops, []int32{1000, 1001}) {
		t.Fatalf("ops %v %v", ops, err)
	}
	if _, err := ParseInt32List("99999999999"); err == nil {
		t.Fatal("int32 overflow accepted")
	}
	if got := SplitList(" a, ,b "); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("SplitList %q", got)
	}
}

func TestLoopbackChecks(t *testing.T) {
	ctx := context.Background()
	for _, ok := range []string{"127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"} {
		if err := checkHost(ctx, ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, remote := range []string{"10.0.0.1", "192.0.2.7", "2001:db8::1"} {
		if err := checkHost(ctx, remote); !errors.Is(err, ErrRemote) {
			t.Errorf("%s: error %v, want ErrRemote", remote, err)
		}
	}
	if err := checkURL(ctx, "http://192.0.2.1:3111"); !errors.Is(err, ErrRemote) {
		t.Errorf("remote API: %v", err)
	}
	cc := ConnsConfig{Addrs: []string{"127.0.0.1:3101"}, Src: []netip.Addr{netip.MustParseAddr("10.1.1.1")}}
	if err := cc.CheckTargets(ctx); !errors.Is(err, ErrRemote) {
		t.Errorf("remote source: %v", err)
	}
	cc.AllowRemote = true
	if err := cc.CheckTargets(ctx); err != nil {
		t.Errorf("remote source allowed: %v", err)
	}
}
