package file

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// Format is a password hash format of mosquitto_passwd.
type Format int

// Hash formats. The zero value is PBKDF2SHA512, mosquitto_passwd's default
// since Mosquitto 2.0.
const (
	PBKDF2SHA512 Format = iota // "$7$<iterations>$<salt>$<hash>", -H sha512-pbkdf2
	SHA512                     // "$6$<salt>$<hash>": SHA512(password || salt), -H sha512
)

// String names the format as mosquitto_passwd's -H option does.
func (f Format) String() string {
	switch f {
	case PBKDF2SHA512:
		return "sha512-pbkdf2"
	case SHA512:
		return "sha512"
	}
	return "unknown"
}

// ParseFormat reads a format named as mosquitto_passwd's -H option names it.
func ParseFormat(name string) (Format, error) {
	switch name {
	case "sha512-pbkdf2":
		return PBKDF2SHA512, nil
	case "sha512":
		return SHA512, nil
	}
	return 0, fmt.Errorf("unknown hash type %q (want sha512 or sha512-pbkdf2)", name)
}

// Parameters of mosquitto_passwd (Mosquitto 2.0).
const (
	DefaultIterations = 101 // PBKDF2 iterations written by HashPassword
	saltLen           = 12  // bytes of salt written by HashPassword
	hashLen           = 64  // SHA-512 output, the only hash length accepted
	maxFieldLen       = 65535
)

// entry is one user's parsed hash.
type entry struct {
	format     Format
	iterations int
	salt       []byte
	hash       []byte
}

func (e *entry) digest(password []byte) []byte {
	if e.format == SHA512 {
		h := sha512.New()
		h.Write(password)
		h.Write(e.salt)
		return h.Sum(nil)
	}
	// pbkdf2.Key only fails for a key length out of range or, in FIPS
	// mode, a short key; neither applies to a verification, so an error
	// yields a digest that matches nothing.
	k, err := pbkdf2.Key(sha512.New, string(password), e.salt, e.iterations, hashLen)
	if err != nil {
		return nil
	}
	return k
}

// Passwords is a parsed password file. It is immutable and safe for
// concurrent use.
type Passwords struct {
	users map[string]*entry
}

// dummy is checked against when a username is unknown, so that unknown and
// known usernames take the same time to refuse.
var dummy = entry{format: PBKDF2SHA512, iterations: DefaultIterations, salt: make([]byte, saltLen), hash: make([]byte, hashLen)}

// Len returns the number of users.
func (p *Passwords) Len() int { return len(p.users) }

// Check reports whether password is the password of username. The hash
// comparison takes constant time, and an unknown username costs the same
// work as a known one.
func (p *Passwords) Check(username string, password []byte) bool {
	e, ok := p.users[username]
	if !ok {
		e = &dummy
	}
	d := e.digest(password)
	match := len(d) == len(e.hash) && subtle.ConstantTimeCompare(d, e.hash) == 1
	return ok && match
}

// LoadPasswords reads a password file; errors name the file and line.
func LoadPasswords(path string) (*Passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	return ParsePasswords(f, path)
}

// ParsePasswords reads a password file in mosquitto_passwd's format, one
// "username:hash" a line; name is used in errors. Blank lines and lines
// starting with '#' are skipped, and blanks around the username and hash
// are ignored, as Mosquitto does. Unlike Mosquitto, which logs and drops
// them, a line that is not "username:hash" with a valid "$6$" or "$7$"
// hash (a plaintext password, say) and a username given twice are errors,
// so a broken file is never half loaded.
func ParsePasswords(r io.Reader, name string) (*Passwords, error) {
	p := &Passwords{users: make(map[string]*entry)}
	firstLine := make(map[string]int)
	errs := errorList{name: name}
	err := eachLine(r, func(line string, n int) {
		line = trimBlanks(line)
		if line == "" || line[0] == '#' {
			return
		}
		user, rest, ok := strings.Cut(line, ":")
		if !ok {
			errs.add(n, "missing ':' between username and password hash")
			return
		}
		user = trimBlanks(user)
		// Mosquitto reads the hash up to the next ':' and ignores the rest.
		hash, _, _ := strings.Cut(rest, ":")
		hash = trimBlanks(hash)
		switch {
		case user == "":
			errs.add(n, "empty username")
			return
		case len(user) > maxFieldLen:
			errs.add(n, "username longer than %d bytes", maxFieldLen)
			return
		}
		e, err := parseHash(hash)
		if err != nil {
			errs.add(n, "user %q: %v", user, err)
			return
		}
		if first, dup := firstLine[user]; dup {
			errs.add(n, "user %q already defined on line %d", user, first)
			return
		}
		firstLine[user] = n
		p.users[user] = e
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := errs.join(); err != nil {
		return nil, err
	}
	return p, nil
}

var b64 = base64.StdEncoding

// parseHash reads "$6$salt$hash" or "$7$iterations$salt$hash".
func parseHash(s string) (*entry, error) {
	if s == "" {
		return nil, fmt.Errorf("empty password hash")
	}
	if s[0] != '$' {
		return nil, fmt.Errorf("password is not a mosquitto_passwd hash (plaintext passwords are not accepted; hash them with `starling passwd`)")
	}
	f := strings.Split(s[1:], "$")
	e := &entry{}
	switch {
	case f[0] == "6" && len(f) == 3:
		e.format = SHA512
		f = f[1:]
	case f[0] == "7" && len(f) == 4:
		e.format = PBKDF2SHA512
		it, err := strconv.Atoi(f[1])
		if err != nil || it < 1 || it > math.MaxInt32 {
			return nil, fmt.Errorf("invalid hash iterations %q", f[1])
		}
		e.iterations = it
		f = f[2:]
	case f[0] == "6" || f[0] == "7":
		return nil, fmt.Errorf("malformed $%s$ password hash", f[0])
	default:
		return nil, fmt.Errorf("unknown password hash type $%s$ (want $6$ or $7$)", f[0])
	}
	salt, err := b64.DecodeString(f[0])
	if err != nil || (len(salt) != saltLen && len(salt) != hashLen) {
		return nil, fmt.Errorf("invalid password salt")
	}
	hash, err := b64.DecodeString(f[1])
	if err != nil || len(hash) != hashLen {
		return nil, fmt.Errorf("invalid password hash")
	}
	e.salt, e.hash = salt, hash
	return e, nil
}

// HashPassword hashes password with a fresh random salt in format, as
// mosquitto_passwd does, and returns the text that follows "username:" in a
// password file.
func HashPassword(password string, format Format) (string, error) {
	if len(password) > maxFieldLen {
		return "", fmt.Errorf("password longer than %d bytes", maxFieldLen)
	}
	e := &entry{format: format, iterations: DefaultIterations, salt: make([]byte, saltLen)}
	if format != SHA512 && format != PBKDF2SHA512 {
		return "", fmt.Errorf("unknown hash format %d", int(format))
	}
	if _, err := rand.Read(e.salt); err != nil {
		return "", err
	}
	return e.encode([]byte(password))
}

func (e *entry) encode(password []byte) (string, error) {
	d := e.digest(password)
	if len(d) != hashLen {
		return "", fmt.Errorf("hashing password failed")
	}
	if e.format == SHA512 {
		return "$6$" + b64.EncodeToString(e.salt) + "$" + b64.EncodeToString(d), nil
	}
	return "$7$" + strconv.Itoa(e.iterations) + "$" + b64.EncodeToString(e.salt) + "$" + b64.EncodeToString(d), nil
}
