// Package console is the admin listener's web page: static HTML, CSS and
// JavaScript embedded in the binary, which read the admin API from the
// browser. The files hold no data, so they are served without the token.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Assets is the path prefix the page's scripts and styles are served under.
const Assets = "/console/"

// Page serves the console's one HTML page, for "/" and for every page
// address (such as /jobs/{jobId}) the script routes itself.
func Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := files.ReadFile("static/index.html")
		if err != nil {
			http.Error(w, "console missing from the build", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		w.Write(b)
	})
}

// Static serves the page's assets under Assets.
func Static() http.Handler {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	fsrv := http.StripPrefix(Assets, http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fsrv.ServeHTTP(w, r)
	})
}

// csp keeps the page on its own origin: no outside scripts, styles, fonts
// or connections, so no job data can leave the browser for a third party.
// Videos may come from anywhere: their URLs are Nouvel's (or the app's).
const csp = "default-src 'self'; media-src *; img-src 'self' data:; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
