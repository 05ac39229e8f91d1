package file

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Vectors generated with mosquitto_passwd 2.0.11 (-b, and -H sha512 for bob).
var mosquittoVectors = []struct {
	user, password, line string
}{
	{"alice", "secret", "alice:$7$101$2yTunhmn0MLtupEC$99OXaMFNlomXIDlKEEpFQTV5/EcmROT8K/dASThnTmk4iootYHDKf9WDfFnLab1RMdRw7InbA98rowUfexmNMw=="},
	{"bob", "hunter2", "bob:$6$7WDVmpENsuULgyPf$mF3wjsjcBwYn6YNY1ITnBnrK9v7R/jwXw1qqH45ylYB0BV+0m6tVZ0ed16aIUA0RmxOqtZaZd3kAtwZKDYcu0A=="},
	{"carol", "", "carol:$7$101$ZidbZnN9ewSyxDKP$WJ4l6UQ6EF0GtI7YrreFQI2rbBn8qLAGLUGsoNz6g/LP31s14TccE2cf5W0RupZzHzindFs1IHT9s0tZ6zBS8g=="},
	{"dave", "pässwörd:with colon", "dave:$7$101$F3ocNyxNmsA69IgY$+gz1cZyr2bssV74w5pkUZ+3v5RYvzbDVqiiTaQpE6pAB+wxm85iEEV9Gli9odQs3NwjPwbNT+lMTxMa78MHSoA=="},
}

func TestPasswordsMosquittoVectors(t *testing.T) {
	var file strings.Builder
	for _, v := range mosquittoVectors {
		file.WriteString(v.line + "\n")
	}
	p, err := ParsePasswords(strings.NewReader(file.String()), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != len(mosquittoVectors) {
		t.Fatalf("Len = %d, want %d", p.Len(), len(mosquittoVectors))
	}
	for _, v := range mosquittoVectors {
		t.Run(v.user, func(t *testing.T) {
			if !p.Check(v.user, []byte(v.password)) {
				t.Errorf("Check(%q, right password) = false", v.user)
			}
			if p.Check(v.user, []byte(v.password+"x")) {
				t.Errorf("Check(%q, wrong password) = true", v.user)
			}
			if p.Check(v.user+"x", []byte(v.password)) {
				t.Errorf("Check(unknown user) = true")
			}
		})
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	for _, f := range []Format{PBKDF2SHA512, SHA512} {
		t.Run(f.String(), func(t *testing.T) {
			h, err := HashPassword("s3cret", f)
			if err != nil {
				t.Fatal(err)
			}
			prefix := map[Format]string{PBKDF2SHA512: "$7$101$", SHA512: "$6$"}[f]
			if !strings.HasPrefix(h, prefix) {
				t.Fatalf("hash %q does not start with %q", h, prefix)
			}
			h2, _ := HashPassword("s3cret", f)
			if h == h2 {
				t.Fatal("two hashes of one password are equal: salt not random")
			}
			p, err := ParsePasswords(strings.NewReader("u:"+h+"\n"), "pw")
			if err != nil {
				t.Fatal(err)
			}
			if !p.Check("u", []byte("s3cret")) || p.Check("u", []byte("s3cre")) {
				t.Fatal("round trip failed")
			}
			g, err := ParseFormat(f.String())
			if err != nil || g != f {
				t.Fatalf("ParseFormat(%q) = %v, %v", f.String(), g, err)
			}
		})
	}
	if _, err := HashPassword("x", Format(9)); err == nil {
		t.Error("HashPassword with unknown format: no error")
	}
	if _, err := ParseFormat("md5"); err == nil {
		t.Error("ParseFormat(md5): no error")
	}
}

func TestParsePasswordsLenient(t *testing.T) {
	// What Mosquitto tolerates: comments, blank lines, blanks around fields,
	// CRLF endings, text after a second ':' and a 64-byte salt.
	alice := strings.TrimPrefix(mosquittoVectors[0].line, "alice:")
	bob := strings.TrimPrefix(mosquittoVectors[1].line, "bob:")
	e := &entry{format: SHA512, salt: make([]byte, 64)}
	long, err := e.encode([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	in := "# users\n\n  alice : " + alice + " \r\n\tbob:" + bob + ":ignored\nlong:" + long
	p, err := ParsePasswords(strings.NewReader(in), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("alice", []byte("secret")) || !p.Check("bob", []byte("hunter2")) || !p.Check("long", []byte("pw")) {
		t.Fatal("lenient forms not accepted")
	}
}

func TestParsePasswordsErrors(t *testing.T) {
	good := mosquittoVectors[0].line
	hash := strings.TrimPrefix(good, "alice:")
	sha := strings.TrimPrefix(mosquittoVectors[1].line, "bob:")
	tests := []struct {
		name, in string
		line     int
		want     string
	}{
		{"plaintext", good + "\nbob:hunter2\n", 2, "plaintext"},
		{"no colon", "# c\nbob\n", 2, "missing ':'"},
		{"empty user", ":" + hash, 1, "empty username"},
		{"empty hash", "bob:", 1, "empty password hash"},
		{"unknown type", "bob:$1$abc$def", 1, "unknown password hash type"},
		{"missing field 7", "bob:$7$101$" + strings.Split(hash, "$")[3], 1, "malformed $7$"},
		{"extra field 6", "bob:" + sha + "$x", 1, "malformed $6$"},
		{"bad iterations", "bob:$7$0$" + strings.Join(strings.Split(hash, "$")[3:], "$"), 1, "iterations"},
		{"iterations not a number", "bob:$7$10x$" + strings.Join(strings.Split(hash, "$")[3:], "$"), 1, "iterations"},
		{"bad salt base64", "bob:$6$!!!!$" + strings.Split(sha, "$")[3], 1, "salt"},
		{"salt length", "bob:$6$YWJj$" + strings.Split(sha, "$")[3], 1, "salt"},
		{"hash length", "bob:$6$" + strings.Split(sha, "$")[2] + "$YWJj", 1, "invalid password hash"},
		{"duplicate", good + "\n\n" + good + "\n", 3, "already defined on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePasswords(strings.NewReader(tt.in), "users.pw")
			if err == nil {
				t.Fatal("no error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "users.pw" || pe.Line != tt.line {
				t.Fatalf("error %q: want a ParseError at users.pw:%d", err, tt.line)
			}
			prefix := "users.pw:" + strconv.Itoa(tt.line) + ": "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q: want prefix %q and %q", err, prefix, tt.want)
			}
		})
	}
}

func TestParsePasswordsReportsEveryLine(t *testing.T) {
	_, err := ParsePasswords(strings.NewReader("a:x\nb:y\nc\n"), "f")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"f:1:", "f:2:", "f:3:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	var many strings.Builder
	for range 1000 {
		many.WriteString("junk\n")
	}
	_, err = ParsePasswords(strings.NewReader(many.String()), "f")
	if n := strings.Count(err.Error(), "\n") + 1; n > maxParseErrors+1 {
		t.Errorf("%d errors reported, want at most %d", n, maxParseErrors+1)
	}
}

func TestLoadPasswordsMissingFile(t *testing.T) {
	_, err := LoadPasswords(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func readUsers(t *testing.T, path string) *Passwords {
	t.Helper()
	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUpdateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pw")

	// -c creates a file holding only the user, readable by its owner only.
	if err := os.WriteFile(path, []byte("old:junk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateFile(path, true, "alice", "one", false); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("created file mode %v, want 0600", st.Mode().Perm())
	}
	p := readUsers(t, path)
	if p.Len() != 1 || !p.Check("alice", []byte("one")) {
		t.Fatal("create: alice/one not the only user")
	}

	// Add keeps other lines byte for byte, including comments.
	raw, _ := os.ReadFile(path)
	raw = append([]byte("# keep me\n"), raw...)
	raw = append(raw, []byte(mosquittoVectors[1].line)...) // no final newline
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := UpdateFileFormat(path, false, "carol", "three", false, SHA512); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(got), string(raw)+"\ncarol:$6$") {
		t.Fatalf("add changed other lines or format:\n%s", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v not kept, want 0640", st.Mode().Perm())
	}

	// Update replaces the user's hash in place.
	if err := UpdateFile(path, false, "alice", "uno", false); err != nil {
		t.Fatal(err)
	}
	p = readUsers(t, path)
	if p.Len() != 3 || !p.Check("alice", []byte("uno")) || p.Check("alice", []byte("one")) ||
		!p.Check("bob", []byte("hunter2")) || !p.Check("carol", []byte("three")) {
		t.Fatal("update: wrong users")
	}
	got, _ = os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if lines[0] != "# keep me" || !strings.HasPrefix(lines[1], "alice:$7$101$") {
		t.Fatalf("update did not replace in place:\n%s", got)
	}

	// -D deletes; deleting again fails and leaves the file alone.
	if err := UpdateFile(path, false, "bob", "", true); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if err := UpdateFile(path, false, "bob", "", true); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("deleting a missing user: err = %v, want ErrUserNotFound", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("failed delete changed the file")
	}
	p = readUsers(t, path)
	if p.Len() != 2 || p.Check("bob", []byte("hunter2")) {
		t.Fatal("delete: bob still there")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
}

func TestUpdateFileErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pw")
	if err := UpdateFile(path, false, "a", "p", false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("update of a missing file: err = %v, want ErrNotExist", err)
	}
	if err := UpdateFile(path, true, "a", "p", true); err == nil {
		t.Error("-c with -D: no error")
	}
	for _, u := range []string{"", "a:b", "a\nb", "tab\t", strings.Repeat("u", 65536)} {
		if err := UpdateFile(path, true, u, "p", false); err == nil {
			t.Errorf("username %.10q: no error", u)
		}
	}
	if err := UpdateFile(path, true, "a", strings.Repeat("p", 65536), false); err == nil {
		t.Error("65536-byte password: no error")
	}
	if err := os.WriteFile(path, []byte("a:"+strings.TrimPrefix(mosquittoVectors[0].line, "alice:")+"\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := UpdateFile(path, false, "b", "p", false)
	if err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("corrupt file: err = %v, want one naming %s:2", err, path)
	}
}

func TestWritePasswordEntry(t *testing.T) {
	var b strings.Builder
	if err := WritePasswordEntry(&b, "zoe", "pw", PBKDF2SHA512); err != nil {
		t.Fatal(err)
	}
	p, err := ParsePasswords(strings.NewReader(b.String()), "x")
	if err != nil || !p.Check("zoe", []byte("pw")) || !strings.HasSuffix(b.String(), "\n") {
		t.Fatalf("entry %q: %v", b.String(), err)
	}
	if err := WritePasswordEntry(&b, "a:b", "pw", SHA512); err == nil {
		t.Error("username with ':' accepted")
	}
}
