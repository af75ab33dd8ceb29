package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/goim/goim/internal/testkit"
)

// testJobKill publishes 5,000 room pushes to live://job (members on both
// comets) while the job process is killed with SIGKILL partway and a new
// one takes its partitions: every push is delivered at least once, and
// only what came after the last commit is delivered twice.
func testJobKill(t *testing.T, c *cluster, cs *clients) {
	const n, publishers = 5000, 4
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		failures  []string
		published int
	)
	commitsBefore, err := metric(c.jobAdmin, "goim_job_commits_total")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	for w := range publishers {
		wg.Go(func() {
			for i := w; i < n; i += publishers {
				r, err := post(c.api+"/goim/push/room?operation=1000&type=live&room=job", "job:"+strconv.Itoa(i))
				mu.Lock()
				if err != nil || r.status != 200 || !testkit.IsPushAnswer(r.body) {
					failures = append(failures, fmt.Sprintf("push %d: %d %s %v", i, r.status, r.body, err))
				} else {
					published++
				}
				mu.Unlock()
			}
		})
	}
	distinct := func(cl *client) (int, int) {
		seen := map[string]bool{}
		got := cl.bodies("job:")
		for _, b := range got {
			seen[b] = true
		}
		return len(seen), len(got) - len(seen)
	}
	// Kill partway: once a third has reached the comet-1 client and the
	// job has committed part of the stream, so that the restart shows that
	// committed progress is kept. Commits come every commit_interval (1 s)
	// when offsets moved; the first one in the stream may carry only the
	// probe pushes before it, the second one carries stream pushes.
	testkit.WaitFor(t, 60*time.Second, func() error {
		commits, err := metric(c.jobAdmin, "goim_job_commits_total")
		if err != nil {
			return err
		}
		if d, _ := distinct(cs.job[0]); d < n/3 || commits < commitsBefore+2 {
			return fmt.Errorf("%d of %d delivered, %v commits during the stream", d, n, commits-commitsBefore)
		}
		return nil
	})
	commits, _ := metric(c.jobAdmin, "goim_job_commits_total")
	finished, _ := metric(c.jobAdmin, "goim_job_finished_total")
	c.job.kill()
	killed := time.Now()
	delivered, _ := distinct(cs.job[0])
	mu.Lock()
	pubAtKill := published
	mu.Unlock()
	t.Logf("job: kill -9 after %d of %d delivered to j1t, %d published, %v into the stream (the job had finished %v pushes since it started and committed %v times during the stream)",
		delivered, n, pubAtKill, killed.Sub(began).Round(time.Millisecond), finished, commits-commitsBefore)
	if delivered >= n {
		t.Errorf("everything was delivered before the kill; the fault tested nothing")
	}

	c.startJob(t)
	ready := time.Since(killed)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d pushes not answered code 0 (a push does not need job); first: %s", len(failures), n, failures[0])
	}
	for _, cl := range cs.job {
		testkit.WaitFor(t, 60*time.Second, func() error {
			c.job.failIfExited(t)
			if d, _ := distinct(cl); d < n {
				return fmt.Errorf("%s: %d of %d distinct pushes", cl.name, d, n)
			}
			return nil
		})
	}
	all := time.Since(killed)
	for _, cl := range cs.job {
		d, dups := distinct(cl)
		t.Logf("job: %s received all %d pushes; %d duplicates (%.1f %%)", cl.name, d, dups, 100*float64(dups)/n)
		// The new job resumed from a commit made during the stream, not
		// from its start: it repeats what came after that commit only.
		if dups >= delivered {
			t.Errorf("%s: %d duplicates, as many as the %d delivered before the kill: committed progress was lost", cl.name, dups, delivered)
		}
	}
	t.Logf("job: the new job was ready %v after the kill (the dead member's 6 s session timeout), everything delivered %v after it",
		ready.Round(time.Millisecond), all.Round(time.Millisecond))
}

// pushAnswer is what a push answered: an HTTP status and code, or a
// transport error.
func pushAnswer(url, body string) (int, int, error) {
	r, err := post(url, body)
	if err != nil {
		return 0, 0, err
	}
	var e envelope
	if err := json.Unmarshal(r.body, &e); err != nil {
		return r.status, 0, fmt.Errorf("%d %s: %w", r.status, r.body, err)
	}
	return r.status, e.Code, nil
}

// wantServerError checks a push answers HTTP 500, code -500, with a
// message: never a false 0.
func wantServerError(t *testing.T, url, body string) {
	t.Helper()
	r, err := post(url, body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	r.envelope(t, "POST "+url, -500, false)
}

// testRedisRestart stops the suite's redis-server under the running
// cluster, with clients connected, and starts it again empty on the same
// port: pushes that need Redis answer -500 meanwhile, and the cluster
// recovers by itself (the clients' heartbeats re-create their sessions).
func testRedisRestart(t *testing.T, c *cluster, cs *clients) {
	port := c.redis.Port
	c.redis.Stop()
	stopped := time.Now()

	// Pushes that need Redis fail loudly; a room push does not need it.
	for i := range 3 {
		wantServerError(t, c.api+"/goim/push/mids?operation=1000&mids=1", "redis:down:mids:"+strconv.Itoa(i))
		wantServerError(t, c.api+"/goim/push/keys?operation=1000&keys=c1w", "redis:down:keys:"+strconv.Itoa(i))
	}
	pushOK(t, c.api+"/goim/push/room?operation=1000&type=live&room=1000", "redis:down:room")
	cs.c1t.waitBodies(t, "redis:down:room", 1, 20*time.Second)
	// A new connection cannot authenticate: its session could not be stored.
	if cl, err := dial(t, "refused", "tcp", c.comets["comet-1"].tcp(c.ports), authBody(4, "refused", "", "ios", 1000), heartbeat); err == nil {
		cl.close()
		t.Errorf("a connection authenticated while Redis was down")
	}
	if got := cs.c1t.bodies("redis:down:mids"); len(got) != 0 {
		t.Errorf("c1t got %q: a push that answered -500 was delivered", got)
	}
	// The clients stay connected through the outage.
	for _, cl := range cs.all() {
		if done, err := cl.closed(); done {
			t.Fatalf("%s was disconnected by the Redis outage: %v", cl.name, err)
		}
	}
	t.Logf("redis: down for %v", time.Since(stopped).Round(time.Millisecond))

	// Same port, empty: every session is gone until the comets see the new
	// Redis epoch in their next report (1 s here) and each client's next
	// heartbeat re-registers its session; comet's session_renew stays at
	// its 10 min default, so nothing else would bring them back. Until
	// then a push to its user answers 0 and delivers nothing (an offline
	// target, as in goim v2).
	c.redis = testkit.StartRedisServer(c.top, port)
	restarted := time.Now()
	attempts, firstOK := c.pushUntil(t, "/goim/push/mids?operation=1000&mids=1", "redis:up:mids:", cs.c1t, cs.c2w)
	recovered := time.Since(restarted)
	c.pushUntil(t, "/goim/push/keys?operation=1000&keys=c1w,c2t", "redis:up:keys:", cs.c1w, cs.c2t)
	keysBack := time.Since(restarted)
	took := c.waitOnline(t, 20*time.Second, map[string]string{
		"/goim/online/total": `{"conn_count":6,"ip_count":2}`,
	})
	t.Logf("redis: restarted empty; a mids push answered 0 after %v and reached both of user 1's connections after %v (%d pushes); keys pushes reached c1w and c2t after %v; online totals right %v later",
		firstOK.Round(time.Millisecond), recovered.Round(time.Millisecond), attempts, keysBack.Round(time.Millisecond), took.Round(time.Millisecond))
}
