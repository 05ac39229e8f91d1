package file

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// eachLine calls fn with every line of r (without its line ending) and its
// 1-based number. Lines may be of any length, as with Mosquitto's
// fgets_extending.
func eachLine(r io.Reader, fn func(line string, n int)) error {
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		s, err := br.ReadString('\n')
		if len(s) > 0 {
			fn(strings.TrimRight(s, "\r\n"), n)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// isBlank reports whether c is whitespace as C's isspace sees it.
func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// trimBlanks trims leading and trailing whitespace, like Mosquitto's
// misc__trimblanks.
func trimBlanks(s string) string {
	i, j := 0, len(s)
	for i < j && isBlank(s[i]) {
		i++
	}
	for j > i && isBlank(s[j-1]) {
		j--
	}
	return s[i:j]
}

// cutWord splits s at its first run of spaces or tabs: the first word and
// the rest with its leading blanks removed.
func cutWord(s string) (word, rest string) {
	s = trimBlanks(s)
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], trimBlanks(s[i:])
}
