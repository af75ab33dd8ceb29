package conf

import (
	"errors"
	"strings"
	"testing"
)

func TestHostPort(t *testing.T) {
	for _, c := range []struct {
		a  string
		ok bool
	}{
		{"127.0.0.1:3101", true},
		{":3101", true},
		{"[::1]:3101", true},
		{"localhost:0", true},
		{"127.0.0.1", false},
		{"127.0.0.1:", false},
		{"", false},
		{"a:b:c", false},
	} {
		var p Problems
		if got := p.HostPort("x.addr", c.a); got != c.ok || (p.Err() == nil) != c.ok {
			t.Errorf("HostPort(%q) = %v, err %v; want %v", c.a, got, p.Err(), c.ok)
		}
		if !c.ok && !errors.Is(p.Err(), ErrInvalid) {
			t.Errorf("HostPort(%q): error %v does not wrap ErrInvalid", c.a, p.Err())
		}
	}
}

func TestBrokers(t *testing.T) {
	var p Problems
	p.Sub("kafka").Brokers("brokers", nil)
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "kafka.brokers: must list at least one broker") {
		t.Fatalf("no brokers: %v", err)
	}
	var q Problems
	q.Sub("kafka").Brokers("brokers", []string{"127.0.0.1:9092", "nope"})
	if err := q.Err(); err == nil || !strings.Contains(err.Error(), `kafka.brokers[1]: "nope" is not host:port`) || strings.Contains(err.Error(), "brokers[0]") {
		t.Fatalf("one bad broker: %v", err)
	}
}
