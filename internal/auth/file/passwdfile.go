package file

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrUserNotFound is returned by UpdateFile when asked to delete a user the
// file does not hold (mosquitto_passwd -D warns and exits with status 1).
var ErrUserNotFound = errors.New("user not found in password file")

// ValidUsername reports why username cannot go in a password file, as
// mosquitto_passwd checks it: not empty, at most 65535 bytes, no control
// characters and no ':'.
func ValidUsername(username string) error {
	switch {
	case username == "":
		return errors.New("username must not be empty")
	case len(username) > maxFieldLen:
		return fmt.Errorf("username must be less than %d bytes long", maxFieldLen+1)
	case strings.ContainsRune(username, ':'):
		return errors.New("username must not contain the ':' character")
	}
	for i := 0; i < len(username); i++ {
		if c := username[i]; c < 0x20 || c == 0x7f {
			return errors.New("username must not contain control characters")
		}
	}
	return nil
}

// WritePasswordEntry writes one "username:hash" line for password, hashed
// in format with a fresh salt.
func WritePasswordEntry(w io.Writer, username, password string, format Format) error {
	if err := ValidUsername(username); err != nil {
		return err
	}
	h, err := HashPassword(password, format)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, username+":"+h+"\n")
	return err
}

// UpdateFile edits a password file as mosquitto_passwd does, hashing with
// the default format (PBKDF2-SHA512); see UpdateFileFormat.
func UpdateFile(path string, create bool, username, password string, del bool) error {
	return UpdateFileFormat(path, create, username, password, del, PBKDF2SHA512)
}

// UpdateFileFormat edits a password file as mosquitto_passwd does:
//
//   - create (-c): replace the file (or make it, mode 0600) with only
//     username and password;
//   - del (-D): remove every line of username, or fail with ErrUserNotFound;
//   - otherwise: replace the hash of every line of username, or append a
//     line if there is none.
//
// Other lines are kept byte for byte. The file is rewritten through a
// temporary file and a rename, keeping its permissions, so a crash leaves
// either the old or the new file. create and del together are an error, as
// is a line that is not "username:hash" (named by file:line).
func UpdateFileFormat(path string, create bool, username, password string, del bool, format Format) error {
	if create && del {
		return errors.New("-c and -D cannot be used together")
	}
	if err := ValidUsername(username); err != nil {
		return err
	}
	newLine := func() (string, error) {
		h, err := HashPassword(password, format)
		if err != nil {
			return "", err
		}
		return username + ":" + h + "\n", nil
	}
	if create {
		l, err := newLine()
		if err != nil {
			return err
		}
		return replaceFile(path, []byte(l), 0o600)
	}

	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	var out bytes.Buffer
	found := false
	errs := errorList{name: path}
	n := 0
	for rest := string(old); rest != ""; {
		var line string
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			line, rest = rest+"\n", ""
		}
		n++
		t := trimBlanks(line)
		if t == "" || t[0] == '#' {
			out.WriteString(line)
			continue
		}
		user, hash, ok := strings.Cut(t, ":")
		user, hash = trimBlanks(user), trimBlanks(hash)
		if !ok || user == "" || hash == "" {
			errs.add(n, "corrupt password file line (want username:hash)")
			continue
		}
		if user != username {
			out.WriteString(line)
			continue
		}
		found = true
		if del {
			continue
		}
		l, err := newLine()
		if err != nil {
			return err
		}
		out.WriteString(l)
	}
	if err := errs.join(); err != nil {
		return err
	}
	if del && !found {
		return fmt.Errorf("%s: %q: %w", path, username, ErrUserNotFound)
	}
	if !del && !found {
		l, err := newLine()
		if err != nil {
			return err
		}
		out.WriteString(l)
	}
	return replaceFile(path, out.Bytes(), st.Mode().Perm())
}

// replaceFile writes data to path atomically: a temporary file in the same
// folder, synced, then renamed over path.
func replaceFile(path string, data []byte, perm fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	return nil
}
