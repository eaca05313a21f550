package console

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestPageIsTheConsoleUnderItsContentPolicy(t *testing.T) {
	for _, path := range []string{"/", "/jobs/clx8k9v2t0001qz8x7r4e5w6m"} {
		rec := get(t, Page(), path)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: got %d, want 200", path, rec.Code)
		}
		want := map[string]string{
			"Content-Type":            "text/html; charset=utf-8",
			"Content-Security-Policy": csp,
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "no-referrer",
		}
		for k, v := range want {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
			}
		}
		if !strings.Contains(rec.Body.String(), `<script type="module" src="/console/console.js">`) {
			t.Errorf("GET %s: the page does not load its script:\n%s", path, rec.Body)
		}
	}
	for _, dir := range []string{"default-src 'self'", "media-src *", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, dir) {
			t.Errorf("content policy %q lacks %q", csp, dir)
		}
	}
}

// TestAssetsAreServedWithTheirTypes: a module script served as anything
// but JavaScript does not run, and nosniff makes the browser hold to it.
func TestAssetsAreServedWithTheirTypes(t *testing.T) {
	names, err := fs.Glob(files, "static/*")
	if err != nil || len(names) == 0 {
		t.Fatalf("embedded files: %v, %v", names, err)
	}
	types := map[string]string{".js": "text/javascript", ".css": "text/css"}
	for _, name := range names {
		base := strings.TrimPrefix(name, "static/")
		if base == "index.html" {
			continue // Page serves it; the file server redirects it to its folder
		}
		rec := get(t, Static(), Assets+base)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s%s: got %d, want 200", Assets, base, rec.Code)
			continue
		}
		ext := base[strings.LastIndex(base, "."):]
		if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, types[ext]) || types[ext] == "" {
			t.Errorf("GET %s%s: Content-Type %q, want %s", Assets, base, got, types[ext])
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s%s: X-Content-Type-Options %q, want nosniff", Assets, base, got)
		}
	}
	if rec := get(t, Static(), Assets+"nothing.js"); rec.Code != http.StatusNotFound {
		t.Errorf("GET %snothing.js: got %d, want 404", Assets, rec.Code)
	}
}

// TestScriptsImportOnlyEmbeddedFiles: with no build step, a module that
// imports a file missing from static/ breaks the whole page.
func TestScriptsImportOnlyEmbeddedFiles(t *testing.T) {
	imports := regexp.MustCompile(`(?m)^import\s[^'"]*['"]([^'"]+)['"]`)
	scripts, _ := fs.Glob(files, "static/*.js")
	for _, name := range scripts {
		b, _ := files.ReadFile(name)
		for _, m := range imports.FindAllStringSubmatch(string(b), -1) {
			target, ok := strings.CutPrefix(m[1], "./")
			if !ok {
				t.Errorf("%s imports %q: only ./ files of static/ can be served", name, m[1])
				continue
			}
			if _, err := fs.Stat(files, "static/"+target); err != nil {
				t.Errorf("%s imports %q, which is not embedded", name, m[1])
			}
		}
	}
}

// TestAssetsStayLocalAndWriteNoHTML: the page uses no outside network (no
// CDN, font or analytics), puts data into the page only as text, keeps the
// token out of addresses, and has no inline script or style for the
// content policy to block.
func TestAssetsStayLocalAndWriteNoHTML(t *testing.T) {
	banned := []struct{ re, why string }{
		{`https?://`, "an outside address"},
		{`//[a-z0-9.-]+\.[a-z]{2,}/`, "an outside address"},
		{`@import|@font-face`, "an outside stylesheet or font"},
		{`innerHTML|outerHTML\s*=|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment`, "HTML built from strings"},
		{`\beval\(|new Function\(|setTimeout\(\s*['"]`, "code built from strings"},
		{`\bprompt\(|\balert\(`, "a browser dialog instead of the page's form"},
		{`localStorage`, "storage that outlives the tab"},
		{`[?&](token|access_token)=`, "a token in an address"},
		{`\son[a-z]+=|style=|<script>`, "inline code or style"},
	}
	all, err := fs.Glob(files, "static/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range all {
		b, err := files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			code := line
			if i := strings.Index(code, "// "); i >= 0 && strings.HasSuffix(name, ".js") {
				code = code[:i] // comments may name what the code avoids
			}
			for _, ban := range banned {
				if regexp.MustCompile(ban.re).MatchString(code) {
					t.Errorf("%s: %s in %q", name, ban.why, strings.TrimSpace(line))
				}
			}
		}
	}
}
