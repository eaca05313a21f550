package bench_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nouvelhook/nouvelhook/bench"
	"github.com/nouvelhook/nouvelhook/bench/internal/benchsrv"
	"github.com/nouvelhook/nouvelhook/handler"
	"github.com/nouvelhook/nouvelhook/store"
	"github.com/nouvelhook/nouvelhook/store/sqlite"
)

const benchSecret = "bench-secret-0123456789abcdef"

// signed returns a realistic webhook body for a new job and its signature.
func signed(run string, worker int, seq uint64) ([]byte, string) {
	body := bench.AppendBody(nil, bench.JobID(run, worker, seq))
	return body, string(bench.NewSigner(benchSecret).AppendSignature(nil, body))
}

// BenchmarkVerifyParse is the CPU work the webhook path does before the
// store: HMAC verification on the raw bytes, then parsing the event.
func BenchmarkVerifyParse(b *testing.B) {
	body, sig := signed(bench.RunID(), 0, 1)
	v := handler.NewVerifier([]string{benchSecret})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if !v.Verify(body, sig) {
			b.Fatal("signature rejected")
		}
		if _, _, err := handler.ParseEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is the HMAC check alone.
func BenchmarkVerify(b *testing.B) {
	body, sig := signed(bench.RunID(), 0, 1)
	v := handler.NewVerifier([]string{benchSecret})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if !v.Verify(body, sig) {
			b.Fatal("signature rejected")
		}
	}
}

// BenchmarkParseEvent is parsing alone.
func BenchmarkParseEvent(b *testing.B) {
	body, _ := signed(bench.RunID(), 0, 1)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := handler.ParseEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}

func openStore(b *testing.B) *sqlite.Store {
	b.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "nouvelhook.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// delivery is what the handler hands the store for a new job.
func delivery(b *testing.B, run string, worker int, seq uint64) store.WebhookDelivery {
	body, _ := signed(run, worker, seq)
	report, id, err := handler.ParseEvent(body)
	if err != nil {
		b.Fatal(err)
	}
	return store.WebhookDelivery{Body: body, ReceivedAt: time.Now(), Attempt: 1, Report: report, JobID: id}
}

// BenchmarkRecordWebhookParallel commits new jobs from 64 goroutines at
// once, as 64 connections would: the group-commit writer batches them, so
// ns/op is the amortized cost of one durable delivery.
func BenchmarkRecordWebhookParallel(b *testing.B) {
	st := openStore(b)
	run := bench.RunID()
	var workers atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(workers.Add(1))
		var seq uint64
		for pb.Next() {
			seq++
			if _, err := st.RecordWebhook(context.Background(), delivery(b, run, w, seq)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRecordWebhookSerial commits one new job at a time: every
// delivery waits for a commit (and its fsync) of its own, so ns/op is the
// floor on a single delivery's latency.
func BenchmarkRecordWebhookSerial(b *testing.B) {
	st := openStore(b)
	run := bench.RunID()
	var seq uint64
	b.ReportAllocs()
	for b.Loop() {
		seq++
		if _, err := st.RecordWebhook(context.Background(), delivery(b, run, 0, seq)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWebhookHandler runs the public Echo server in process (no
// sockets), 64 requests at a time: verify-only (the baseline's Discard
// recorder) and with a real store, as `nouvelhook serve` wires it.
func BenchmarkWebhookHandler(b *testing.B) {
	for _, tc := range []struct {
		name  string
		store bool
	}{{"verify-only", false}, {"store", true}} {
		b.Run(tc.name, func(b *testing.B) {
			deps := handler.Deps{
				Verifier: handler.NewVerifier([]string{benchSecret}), Logger: zerolog.Nop(),
				WebhookPath: benchsrv.WebhookPath, MaxBody: benchsrv.MaxBody,
			}
			if tc.store {
				deps.Store = openStore(b)
				deps.Metrics = handler.NewMetrics(deps.Store)
			} else {
				deps.Recorder, deps.Metrics = benchsrv.Discard{}, handler.NewMetrics(nil)
			}
			e := handler.NewPublic(deps)
			run := bench.RunID()
			var workers atomic.Int64
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := int(workers.Add(1))
				signer := bench.NewSigner(benchSecret)
				var seq uint64
				var body, sig []byte
				for pb.Next() {
					seq++
					body = bench.AppendBody(body[:0], bench.JobID(run, w, seq))
					sig = signer.AppendSignature(sig[:0], body)
					req := httptest.NewRequest(http.MethodPost, benchsrv.WebhookPath, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set(handler.SignatureHeader, string(sig))
					rec := httptest.NewRecorder()
					e.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Errorf("status %d: %s", rec.Code, rec.Body)
						return
					}
				}
			})
		})
	}
}
