package dao_test

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/internal/logic/dao"
)

// msgIDTime decodes the millisecond timestamp at the front of an id.
func msgIDTime(t *testing.T, id string) time.Time {
	t.Helper()
	ms, err := strconv.ParseUint(id[:12], 16, 64)
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return time.UnixMilli(int64(ms))
}

func TestNewMsgID(t *testing.T) {
	before := time.Now().Truncate(time.Millisecond)
	id := dao.NewMsgID()
	after := time.Now()
	if !msgIDPattern.MatchString(id) {
		t.Fatalf("NewMsgID = %q, want 32 lowercase hex digits", id)
	}
	if at := msgIDTime(t, id); at.Before(before) || at.After(after) {
		t.Errorf("id time %v, want in [%v, %v]", at, before, after)
	}

	// Ids of a later millisecond sort after.
	var later string
	waitFor(t, time.Second, func() error {
		later = dao.NewMsgID()
		if later[:12] == id[:12] {
			return errors.New("same millisecond")
		}
		return nil
	})
	if later <= id {
		t.Errorf("later id %q sorts before %q", later, id)
	}
}

func TestNewMsgIDUnique(t *testing.T) {
	const workers, each = 8, 20000
	var (
		mu   sync.Mutex
		seen = make(map[string]bool, workers*each)
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]string, each)
			for i := range ids {
				ids[i] = dao.NewMsgID()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
}
