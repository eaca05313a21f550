package main

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// fwdLeaseTimeout is the replicas' NOUVELHOOK_FORWARD_TIMEOUT; a claim's
// lease is that plus 30 s.
const (
	fwdLeaseTimeout = 5 * time.Second
	fwdLease        = fwdLeaseTimeout + 30*time.Second
)

// TestForwardReplicaKilledMidSendLeaseRunsOut: on Postgres, the replica
// that holds a forward's lease is killed with SIGKILL while its request
// hangs at the app. Another replica, up the whole time and forwarding other
// jobs at once, leaves that forward alone while the lease holds, and sends
// it once the lease has run out; the app accepts it and the queue records
// one attempt, delivered.
func TestForwardReplicaKilledMidSendLeaseRunsOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped with -short")
	}
	db := pgSchemaURL(t, "lease-pw")
	bin := replicaBinary(t)
	app := newFwdApp(t, appHang)
	arrived := make(chan appHit, 16)
	app.mu.Lock()
	app.arrived = arrived
	app.mu.Unlock()
	env := []string{"NOUVELHOOK_FORWARD_URL=" + app.URL(), "NOUVELHOOK_FORWARD_TIMEOUT=" + fwdLeaseTimeout.String()}

	holder := spawnReplica(t, bin, db, env...)
	holder.awaitListening(t)
	const held, other = "lease-held-job", "lease-other-job"
	if code, ans, err := holder.post(held); err != nil || code != http.StatusOK {
		t.Fatalf("POST %s: %d %s %v", held, code, ans.raw, err)
	}
	var first appHit
	select {
	case first = <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatalf("no forward reached the app within 20 s\n%s", logTail(holder.log))
	}
	if first.JobID != held {
		t.Fatalf("the app got %s, want %s", first.JobID, held)
	}
	// The request hangs at the app: kill its sender while it is in flight.
	if err := holder.proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	holder.wait(10 * time.Second)
	killedAt := time.Now()
	app.set(appUp, 0)

	taker := spawnReplica(t, bin, db, env...)
	taker.awaitListening(t)
	// The other replica forwards a new job at once: only the leased one waits.
	if code, ans, err := taker.post(other); err != nil || code != http.StatusOK {
		t.Fatalf("POST %s: %d %s %v", other, code, ans.raw, err)
	}
	var second, resent appHit
	for second.JobID == "" || resent.JobID == "" {
		select {
		case h := <-arrived:
			switch {
			case h.JobID == other && second.JobID == "":
				second = h
				if wait := h.At.Sub(killedAt); wait > 15*time.Second {
					t.Errorf("a new job waited %v for its forward, want it sent at once", wait)
				}
			case h.JobID == held && resent.JobID == "":
				resent = h
			default:
				t.Errorf("unexpected forward of %s", h.JobID)
			}
		case <-time.After(fwdLease + 30*time.Second):
			t.Fatalf("in %v: new job forwarded %v, leased job sent again %v\n%s",
				fwdLease+30*time.Second, second.JobID != "", resent.JobID != "", logTail(taker.log))
		}
	}
	// The lease began at the claim, just before the first request arrived.
	if gap := resent.At.Sub(first.At); gap < fwdLease-2*time.Second || gap > fwdLease+15*time.Second {
		t.Errorf("the leased forward was sent again %v after the first try, want after its %v lease ran out (and soon after)", gap, fwdLease)
	}
	if !second.At.Before(resent.At) {
		t.Errorf("the new job reached the app at %v, after the leased one at %v", second.At, resent.At)
	}
	var j jobForward
	ok := waitFor(10*time.Second, func() bool {
		taker.adminGet(t, "/v1/jobs/"+held, &j)
		return j.Forward != nil && j.Forward.State == "delivered"
	})
	if !ok || j.Forward.Attempts != 1 || j.Forward.LastStatus != http.StatusOK {
		t.Errorf("GET /v1/jobs/%s: %v, want delivered after 1 recorded attempt with status 200 (the killed one recorded none)", held, j)
	}
	if n := len(app.hitsFor(held)); n != 2 {
		t.Errorf("the app got %s %d times, want twice: the killed attempt and the one after the lease", held, n)
	}
	app.checkSignatures()
	t.Logf("leased forward sent again %v after the first try (lease %v); the new job went out %v after the kill",
		resent.At.Sub(first.At).Round(time.Millisecond), fwdLease, second.At.Sub(killedAt).Round(time.Millisecond))
}
