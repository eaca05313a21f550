package postgres

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nouvelhook/nouvelhook/store"
)

// endJobs ends n jobs through s, with forwarding on, named prefix-0...
func endJobs(t *testing.T, s *Store, prefix string, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.RecordWebhook(context.Background(), completed(fmt.Sprintf("%s-%d", prefix, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// Replicas claiming at once, several claimers each, never hold the same
// forward: each is claimed once and delivered once.
func TestForwardClaimsAcrossStores(t *testing.T) {
	dbURL := freshSchema(t)
	stores := []*Store{openTest(t, dbURL, Options{Forward: true}), openTest(t, dbURL, Options{Forward: true})}
	const jobs = 300
	endJobs(t, stores[0], "j", jobs)
	var mu sync.Mutex
	held := map[string]bool{}
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range stores {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					cs, err := s.ClaimForwards(context.Background(), time.Now(), 5, time.Minute, false)
					if err != nil {
						t.Errorf("claim: %v", err)
						return
					}
					if len(cs) == 0 {
						return
					}
					mu.Lock()
					for _, c := range cs {
						if held[c.Job.JobID] {
							t.Errorf("%s claimed while another claimer holds it", c.Job.JobID)
						}
						held[c.Job.JobID] = true
						claimed[c.Job.JobID]++
					}
					mu.Unlock()
					time.Sleep(time.Millisecond) // hold the claims a moment, as a send would
					for _, c := range cs {
						mu.Lock()
						delete(held, c.Job.JobID)
						mu.Unlock()
						ok, err := s.FinishForward(context.Background(), c, store.ForwardResult{At: time.Now(),
							Status: 200, State: store.ForwardDelivered})
						if err != nil || !ok {
							t.Errorf("finish %s: %v %v", c.Job.JobID, ok, err)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	if len(claimed) != jobs {
		t.Errorf("claimed %d distinct forwards; want %d", len(claimed), jobs)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("%s claimed %d times; want once", id, n)
		}
	}
	st, err := stores[1].ForwardStats(context.Background())
	if err != nil || st.ByState[store.ForwardDelivered] != jobs || st.Depth != 0 {
		t.Errorf("stats: %+v %v; want %d delivered", st, err, jobs)
	}
}

// A lease that runs out lets another replica claim the forward, and the
// first replica's late result is refused.
func TestForwardLeaseRunsOutAcrossStores(t *testing.T) {
	ctx := context.Background()
	dbURL := freshSchema(t)
	a := openTest(t, dbURL, Options{Now: fixedClock, Forward: true})
	b := openTest(t, dbURL, Options{Now: fixedClock, Forward: true})
	endJobs(t, a, "j", 1)
	first := claimAt(t, a, t0, 1, time.Minute, false)
	if len(first) != 1 {
		t.Fatalf("a's claim: %v", claimedIDs(first))
	}
	if got := claimAt(t, b, t0.Add(59*time.Second), 1, time.Minute, false); len(got) != 0 {
		t.Fatalf("b's claim within a's lease: %v; want none", claimedIDs(got))
	}
	second := claimAt(t, b, t0.Add(time.Minute), 1, time.Minute, false)
	if len(second) != 1 || second[0].Token == first[0].Token || second[0].Attempt != 1 {
		t.Fatalf("b's claim once a's lease ran out: %+v; want it, attempt 1, a new token", second)
	}
	if ok, err := a.FinishForward(ctx, first[0], store.ForwardResult{At: t0, Status: 200,
		State: store.ForwardDelivered}); err != nil || ok {
		t.Fatalf("a's late result: %v %v; want refused", ok, err)
	}
	if ok, err := b.FinishForward(ctx, second[0], store.ForwardResult{At: t0, Status: 200,
		State: store.ForwardDelivered}); err != nil || !ok {
		t.Fatalf("b's result: %v %v; want recorded", ok, err)
	}
	if att, _ := b.ForwardAttempts(ctx, "j-0"); len(att) != 1 {
		t.Errorf("attempts: %+v; want b's alone", att)
	}
}

// Ordered claimers on two replicas send strictly in seq order, one at a
// time, retries included.
func TestForwardOrderedAcrossStores(t *testing.T) {
	dbURL := freshSchema(t)
	stores := []*Store{openTest(t, dbURL, Options{Forward: true}), openTest(t, dbURL, Options{Forward: true})}
	const jobs = 60
	endJobs(t, stores[0], "j", jobs)
	var mu sync.Mutex
	var sent []int64 // seq of each claim, in the order they were made
	var delivered []int64
	inFlight := 0
	var wg sync.WaitGroup
	for i, s := range stores {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for idle := 0; idle < 50; {
					cs, err := s.ClaimForwards(context.Background(), time.Now(), 1, time.Minute, true)
					if err != nil {
						t.Errorf("claim: %v", err)
						return
					}
					if len(cs) == 0 {
						idle++
						time.Sleep(time.Millisecond)
						continue
					}
					idle = 0
					c := cs[0]
					mu.Lock()
					if inFlight++; inFlight > 1 {
						t.Errorf("seq %d claimed while another ordered claim is held", c.Job.Seq)
					}
					sent = append(sent, c.Job.Seq)
					// Every third first attempt, from the first store, fails and is retried at once.
					r := store.ForwardResult{At: time.Now(), Status: 200, State: store.ForwardDelivered}
					if i == 0 && c.Attempt == 1 && c.Job.Seq%3 == 0 {
						r = store.ForwardResult{At: time.Now(), Status: 503, Err: "503", State: store.ForwardPending,
							Next: time.Now()}
					} else {
						delivered = append(delivered, c.Job.Seq)
					}
					inFlight--
					mu.Unlock()
					if ok, err := s.FinishForward(context.Background(), c, r); err != nil || !ok {
						t.Errorf("finish seq %d: %v %v", c.Job.Seq, ok, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	for i := 1; i < len(sent); i++ {
		if sent[i] < sent[i-1] {
			t.Fatalf("claims out of seq order: %v", sent)
		}
	}
	if len(delivered) != jobs {
		t.Fatalf("delivered %d; want %d: %v", len(delivered), jobs, delivered)
	}
	for i, seq := range delivered {
		if seq != int64(i+1) {
			t.Fatalf("delivered out of order: %v", delivered)
		}
	}
	if len(sent) == len(delivered) {
		t.Errorf("no attempt was retried: the test did not exercise retries")
	}
}

// claimerEnv makes the test binary a replica that claims one forward and
// is then killed: "url|unix nanos of now|lease".
const claimerEnv = "NOUVELHOOK_TEST_PG_CLAIMER"

// TestForwardClaimerProcess is the body of a replica killed while it holds
// a claim; it does nothing in a normal run.
func TestForwardClaimerProcess(t *testing.T) {
	spec := os.Getenv(claimerEnv)
	if spec == "" {
		t.Skip("runs only as the claiming process of TestForwardKilledReplica")
	}
	parts := strings.SplitN(spec, "|", 3)
	nanos, _ := strconv.ParseInt(parts[1], 10, 64)
	lease, _ := time.ParseDuration(parts[2])
	s := openTest(t, parts[0], Options{Forward: true})
	cs := claimAt(t, s, time.Unix(0, nanos), 1, lease, false)
	if len(cs) != 1 {
		t.Fatalf("claimed %d; want 1", len(cs))
	}
	fmt.Printf("claimed %s %d\n", cs[0].Job.JobID, cs[0].Token)
	time.Sleep(time.Minute) // killed before this ends
}

// A replica killed while it holds a claim delays the forward by its lease,
// no more: then another replica claims it, as the same attempt.
func TestForwardKilledReplica(t *testing.T) {
	ctx := context.Background()
	dbURL := freshSchema(t)
	s := openTest(t, dbURL, Options{Now: fixedClock, Forward: true})
	endJobs(t, s, "j", 1)
	cmd := exec.Command(os.Args[0], "-test.run=^TestForwardClaimerProcess$", "-test.v")
	cmd.Env = append(os.Environ(), claimerEnv+"="+dbURL+"|"+strconv.FormatInt(t0.UnixNano(), 10)+"|1m")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	var claimed string
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "claimed ") {
			claimed = lines.Text()
			break
		}
	}
	if claimed != "claimed j-0 1" {
		t.Fatalf("the replica said %q; want it to claim j-0 with token 1", claimed)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if got := claimAt(t, s, t0.Add(59*time.Second), 1, time.Minute, false); len(got) != 0 {
		t.Fatalf("claim within the dead replica's lease: %v; want none", claimedIDs(got))
	}
	if next, ok, err := s.NextForwardAt(ctx); err != nil || !ok || !next.Equal(t0.Add(time.Minute)) {
		t.Errorf("NextForwardAt: %v %v %v; want the dead replica's lease end", next, ok, err)
	}
	c := claimAt(t, s, t0.Add(time.Minute), 1, time.Minute, false)
	if len(c) != 1 || c[0].Job.JobID != "j-0" || c[0].Attempt != 1 || c[0].Token != 2 {
		t.Fatalf("claim after the lease: %+v; want j-0, attempt 1, token 2", c)
	}
	if ok, err := s.FinishForward(ctx, c[0], store.ForwardResult{At: t0, Status: 200,
		State: store.ForwardDelivered}); err != nil || !ok {
		t.Fatalf("finish: %v %v", ok, err)
	}
}
