package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// The backends NOUVELHOOK_DB can name, as DBBackend returns them.
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// DBBackend returns the backend that db, a NOUVELHOOK_DB value, names:
// BackendPostgres for a postgres:// or postgresql:// URL, else BackendSQLite
// (a file path). It does not check db; CheckDB does.
func DBBackend(db string) string {
	switch strings.ToLower(scheme(db)) {
	case "postgres", "postgresql":
		return BackendPostgres
	}
	return BackendSQLite
}

// DBBackend returns the backend that c.DBPath names; see the function DBBackend.
func (c Config) DBBackend() string { return DBBackend(c.DBPath) }

// CheckDB returns an error when db cannot be a NOUVELHOOK_DB value: a SQLite
// file path, or a postgres:// or postgresql:// URL that parses and names a
// host and a database. The error reads well after the setting's name, as in
// "NOUVELHOOK_DB must …", and shows a URL only as RedactDB does, since the
// URL's password is a secret.
func CheckDB(db string) error {
	if db == "" {
		return errors.New("must not be empty")
	}
	s := scheme(db)
	if s == "" {
		if isKeywordDSN(db) {
			// Not quoted: it may hold password=….
			return errors.New("looks like a key=value connection string; give a postgres://user:password@host:5432/dbname URL or a SQLite file path")
		}
		return nil
	}
	if DBBackend(db) != BackendPostgres {
		return fmt.Errorf("is a %s:// URL; give a SQLite file path or a postgres:// URL", s)
	}
	if s != strings.ToLower(s) {
		return fmt.Errorf("must spell its scheme in lower case, %s://", strings.ToLower(s))
	}
	u, err := url.Parse(db)
	if err != nil {
		// url.Parse's error quotes the URL, password and all.
		return errors.New("is not a valid postgres:// URL (postgres://user:password@host:5432/dbname, with special characters in the password percent-encoded)")
	}
	q := u.Query()
	if u.Hostname() == "" && q.Get("host") == "" {
		return fmt.Errorf("(%s) has no host; give postgres://user:password@host:5432/dbname", RedactDB(db))
	}
	if strings.Trim(u.Path, "/") == "" && q.Get("dbname") == "" {
		return fmt.Errorf("(%s) has no database name; give postgres://user:password@host:5432/dbname", RedactDB(db))
	}
	return nil
}

// RedactDB returns db, a NOUVELHOOK_DB value, fit for a log line or an
// error: a SQLite path as it is, a URL with its password (in the user info,
// or a password or sslpassword parameter) replaced by "xxxxx".
func RedactDB(db string) string {
	if scheme(db) == "" {
		if isKeywordDSN(db) {
			return "(key=value connection string)"
		}
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "(unparsable URL)"
	}
	q, masked := u.Query(), false
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			masked = true
		}
	}
	if masked {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// scheme returns the scheme of raw when raw starts with one followed by
// "://", as a URL does, and "" for anything else, such as a file path.
func scheme(raw string) string {
	s, _, ok := strings.Cut(raw, "://")
	if !ok || s == "" {
		return ""
	}
	for i, r := range s {
		letter := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
		if !letter && (i == 0 || !('0' <= r && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return ""
		}
	}
	return s
}

// isKeywordDSN reports whether db reads as libpq's key=value connection
// string ("host=db dbname=jobs password=…"), which would otherwise be taken
// for a strange SQLite file name and then logged, password and all.
func isKeywordDSN(db string) bool {
	key, _, ok := strings.Cut(strings.TrimSpace(db), "=")
	if !ok {
		return false
	}
	switch key {
	case "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "service", "sslmode", "connect_timeout":
		return true
	}
	return false
}

// EnvDB returns the log that the commands other than serve (db backup, db
// copy) use by default: NOUVELHOOK_DB, or the content of the file named by
// NOUVELHOOK_DB_FILE, else Default's. Its errors name the variable and never
// hold a password.
func EnvDB(getenv func(string) string) (string, error) {
	db, err := envSecret(getenv, "NOUVELHOOK_DB")
	if err != nil {
		return "", err
	}
	if db == "" {
		db = Default().DBPath
	}
	if err := CheckDB(db); err != nil {
		return "", fmt.Errorf("NOUVELHOOK_DB %w", err)
	}
	return db, nil
}
