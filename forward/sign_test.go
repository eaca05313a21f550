package forward

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os/exec"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/nouvelhook/nouvelhook/store"
)

// nouvelVerify checks X-Nouvel-Signature the way Nouvel's docs have a
// receiver do it: the hex HMAC-SHA256 of the raw body under the shared
// secret, compared in constant time.
func nouvelVerify(secret string, body []byte, h http.Header) bool {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(want), []byte(h.Get("X-Nouvel-Signature")))
}

// standardVerifier is the Standard Webhooks reference verifier for key,
// built from the whsec_ secret an operator would give the app.
func standardVerifier(t *testing.T, key []byte) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

// TestSignatures: a forward's headers pass Nouvel's documented check and
// the Standard Webhooks reference verifier, and fail both once the body
// or a signed header changes.
func TestSignatures(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	s := signer{nouvelSecret: []byte("nouvel-secret"), key: key}
	body, err := Body(endedJob("job-7", store.StatusCompleted, 7, "<Ω & \u2028>"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h := http.Header{}
	s.sign(h, "job-7", body, now)

	if !nouvelVerify("nouvel-secret", body, h) {
		t.Errorf("X-Nouvel-Signature %q does not verify", h.Get("X-Nouvel-Signature"))
	}
	if err := standardVerifier(t, key).Verify(body, h); err != nil {
		t.Errorf("Standard Webhooks verify: %v (headers %v)", err, h)
	}
	if got, want := h.Get("webhook-id"), "job_job-7"; got != want {
		t.Errorf("webhook-id: got %q, want %q", got, want)
	}
	if got, want := h.Get("webhook-timestamp"), strconv.FormatInt(now.Unix(), 10); got != want {
		t.Errorf("webhook-timestamp: got %q, want %q", got, want)
	}

	tampered := bytes.Replace(body, []byte(`"seq":7`), []byte(`"seq":8`), 1)
	if nouvelVerify("nouvel-secret", tampered, h) {
		t.Error("X-Nouvel-Signature verifies a changed body")
	}
	if err := standardVerifier(t, key).Verify(tampered, h); err == nil {
		t.Error("Standard Webhooks verifies a changed body")
	}
	for _, name := range []string{"webhook-id", "webhook-timestamp"} {
		h2 := h.Clone()
		h2.Set(name, h.Get(name)+"1")
		if err := standardVerifier(t, key).Verify(body, h2); err == nil {
			t.Errorf("Standard Webhooks verifies with %s changed", name)
		}
	}
	if err := standardVerifier(t, []byte("another key")).Verify(body, h); err == nil {
		t.Error("Standard Webhooks verifies under another key")
	}
	// The id is stable: a later attempt of the same job carries the same.
	h3 := http.Header{}
	s.sign(h3, "job-7", body, now.Add(time.Hour))
	if h3.Get("webhook-id") != h.Get("webhook-id") {
		t.Errorf("webhook-id changed between attempts: %q then %q", h.Get("webhook-id"), h3.Get("webhook-id"))
	}
}

// TestSignaturesOff: no Nouvel secret, no X-Nouvel-Signature; no key, no
// Standard Webhooks headers.
func TestSignaturesOff(t *testing.T) {
	h := http.Header{}
	signer{}.sign(h, "j", []byte(`{}`), time.Now())
	if len(h) != 0 {
		t.Fatalf("got headers %v, want none", h)
	}
}

// TestReadmeNodeVerifier runs the by-hand Node.js check the README gives an
// app on a forward's bytes and headers: it must accept them, and refuse a
// changed body.
func TestReadmeNodeVerifier(t *testing.T) {
	key := []byte("a forward key of some length")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	body, err := Body(endedJob("job-9", store.StatusCompleted, 9, "Crème & <b>\u2028"))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	now := time.Now()
	signer{key: key}.sign(h, "job-9", body, now)
	script := `
const crypto = require("node:crypto");
// verify(rawBody: Buffer, headers, secret): true when the forward is genuine and recent.
function verify(rawBody, headers, secret) {
  const id = headers["webhook-id"], ts = headers["webhook-timestamp"];
  const sigs = (headers["webhook-signature"] || "").split(" ");
  if (!id || !ts || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const want = crypto.createHmac("sha256", key)
    .update(id + "." + ts + ".").update(rawBody).digest();
  return sigs.some(s => {
    const [v, b64] = s.split(",");
    const got = Buffer.from(b64 || "", "base64");
    return v === "v1" && got.length === want.length && crypto.timingSafeEqual(got, want);
  });
}
const [body, id, ts, sig, secret] = process.argv.slice(1);
const headers = {"webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig};
process.stdout.write(String(verify(Buffer.from(body, "base64"), headers, secret)));`
	for _, c := range []struct {
		body []byte
		want string
	}{{body, "true"}, {append(bytes.Clone(body), ' '), "false"}} {
		out, err := exec.Command(node(t), "-e", script, base64.StdEncoding.EncodeToString(c.body),
			h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), secret).Output()
		if err != nil {
			t.Fatalf("node: %v", err)
		}
		if string(out) != c.want {
			t.Errorf("body %q: node verify says %s, want %s", c.body, out, c.want)
		}
	}
}
