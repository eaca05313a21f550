// Package bench measures nouvelhook's webhook path. The load benchmark lives
// in cmd/load (run it with bench/run.sh); this package holds what the load
// driver and the in-process Go benchmarks share: realistic, correctly signed
// webhook bodies and the job ids that make each of them a new job.
package bench

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"
)

// The body is Nouvel's job.completed webhook with two projects, serialized
// the way Nouvel's Node sender does (compact JSON, no trailing newline).
// Each piece is joined with the job id; see AppendBody.
const (
	bodyHead   = `{"event":"job.completed","jobId":"`
	bodyStatus = `","status":"completed","totalProjects":2,"completedProjects":2,"failedProjects":0,"projects":[`
	project1   = `{"projectId":"`
	project1b  = `-p1","title":"Trailblazer Pro 2 waterproof hiking boots - 9:16 variant 1","status":"completed","videoUrl":"https://cdn.nouvel.ai/videos/`
	project1c  = `/p1/final.mp4"},`
	project2   = `{"projectId":"`
	project2b  = `-p2","title":"Trailblazer Pro 2 waterproof hiking boots - 9:16 variant 2","status":"completed","videoUrl":"https://cdn.nouvel.ai/videos/`
	project2c  = `/p2/final.mp4"}]}`
)

// AppendBody appends the webhook body for jobID to dst and returns it. With
// a 24-byte job id (the cuid-like length RunID and JobID give) the body is
// about 540 bytes.
func AppendBody(dst []byte, jobID string) []byte {
	dst = append(dst, bodyHead...)
	dst = append(dst, jobID...)
	dst = append(dst, bodyStatus...)
	dst = append(dst, project1...)
	dst = append(dst, jobID...)
	dst = append(dst, project1b...)
	dst = append(dst, jobID...)
	dst = append(dst, project1c...)
	dst = append(dst, project2...)
	dst = append(dst, jobID...)
	dst = append(dst, project2b...)
	dst = append(dst, jobID...)
	dst = append(dst, project2c...)
	return dst
}

// Signer makes X-Nouvel-Signature values. It reuses one HMAC, so it is not
// safe for concurrent use: give each goroutine its own.
type Signer struct {
	mac hash.Hash
	sum []byte
}

// NewSigner returns a Signer for secret.
func NewSigner(secret string) *Signer {
	return &Signer{mac: hmac.New(sha256.New, []byte(secret)), sum: make([]byte, 0, sha256.Size)}
}

// AppendSignature appends the lowercase hex HMAC-SHA256 of body to dst.
func (s *Signer) AppendSignature(dst, body []byte) []byte {
	s.mac.Reset()
	s.mac.Write(body)
	s.sum = s.mac.Sum(s.sum[:0])
	return hex.AppendEncode(dst, s.sum)
}

// RunID returns a random 10-character base-36 id (about 51 bits), so job
// ids made under it never repeat a job stored by an earlier run into the
// same database.
func RunID() string {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic("bench: crypto/rand: " + err.Error()) // never fails on Linux
	}
	const space = 3656158440062976 // 36^10
	return string(appendPadded(nil, binary.LittleEndian.Uint64(r[:])%space, 10))
}

// JobID returns the id of the seq-th job of worker under run: letters,
// digits and '-', 24 bytes for seq below 36^8, unique per (run, worker, seq).
// Ids from many workers interleave, so like random UUIDs they land all over
// an index on them, not only at its end.
func JobID(run string, worker int, seq uint64) string {
	b := make([]byte, 0, 32)
	b = append(b, run...)
	b = append(b, '-')
	b = appendPadded(b, uint64(worker), 4)
	b = append(b, '-')
	b = appendPadded(b, seq, 8)
	return string(b)
}

// OrderedJobID returns the n-th job id of run in a single increasing
// sequence, like Nouvel's time-ordered cuids: each new id sorts after the
// last, so an index on it only ever grows at its right edge. 24 bytes for n
// below 36^13.
func OrderedJobID(run string, n uint64) string {
	b := make([]byte, 0, 32)
	b = append(b, run...)
	b = append(b, '-')
	b = appendPadded(b, n, 13)
	return string(b)
}

func appendPadded(dst []byte, n uint64, width int) []byte {
	s := strconv.FormatUint(n, 36)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}
