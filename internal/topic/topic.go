package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic name or filter in bytes: an MQTT UTF-8 string
// carries a two-byte length [MQTT-1.5.4], so a topic is at most 65535 bytes
// [MQTT-4.7.3-3].
const MaxLen = 65535

// Prefixes of the shared-subscription forms ParseShared understands.
const (
	sharePrefix = "$share" // MQTT 5 4.8.2: $share/{ShareName}/{filter}
	queuePrefix = "$queue" // EMQX/HiveMQ: $queue/{filter}, group "$queue"
)

// QueueGroup is the group ParseShared reports for "$queue/{filter}".
const QueueGroup = "$queue"

// The errors the validators wrap; test for them with errors.Is. The broker
// maps a failed ValidName to reason 0x90 (Topic Name invalid) and a failed
// ValidFilter or ParseShared to 0x8F (Topic Filter invalid).
var (
	// ErrEmpty: a topic name or filter is at least one character long
	// [MQTT-4.7.3-1].
	ErrEmpty = errors.New("topic: empty")
	// ErrTooLong: longer than MaxLen bytes.
	ErrTooLong = errors.New("topic: longer than 65535 bytes")
	// ErrNull: a topic must not contain U+0000 [MQTT-4.7.3-2, MQTT-1.5.4-2].
	ErrNull = errors.New("topic: contains U+0000")
	// ErrInvalidUTF8: a topic is a well-formed UTF-8 string [MQTT-1.5.4-1].
	ErrInvalidUTF8 = errors.New("topic: not valid UTF-8")
	// ErrWildcardInName: a topic name must not contain '+' or '#'
	// [MQTT-4.7.1-1, MQTT-3.3.2-2].
	ErrWildcardInName = errors.New("topic: wildcard in topic name")
	// ErrWildcardPlacement: in a filter '#' must be the whole last level
	// [MQTT-4.7.1-2] and '+' a whole level [MQTT-4.7.1-3].
	ErrWildcardPlacement = errors.New("topic: misplaced wildcard")
	// ErrSharedFilter: ValidFilter was given a shared-subscription filter;
	// call ParseShared first and validate only what it returns.
	ErrSharedFilter = errors.New("topic: shared subscription filter")
	// ErrInvalidShared: a filter in the shared form "$share/..." or
	// "$queue/..." is malformed [MQTT-4.8.2-1, MQTT-4.8.2-2].
	ErrInvalidShared = errors.New("topic: malformed shared subscription")
)

// ValidName checks a topic name used in PUBLISH or in a will: non-empty, at
// most MaxLen bytes, well-formed UTF-8, no '+' or '#' and no U+0000
// [MQTT-4.7.3-1, MQTT-4.7.1-1, MQTT-1.5.4-1, MQTT-1.5.4-2]. The error wraps
// one of the Err values above and says where the problem is.
func ValidName(name string) error {
	if err := checkCommon("topic name", name); err != nil {
		return err
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '+', '#':
			return fmt.Errorf("topic name %s: %q at byte %d [MQTT-4.7.1-1]: %w", quote(name), name[i], i, ErrWildcardInName)
		case 0:
			return fmt.Errorf("topic name %s: byte %d [MQTT-4.7.3-2]: %w", quote(name), i, ErrNull)
		}
	}
	return nil
}

// ValidFilter checks a topic filter used in SUBSCRIBE or UNSUBSCRIBE:
// non-empty, at most MaxLen bytes, well-formed UTF-8, no U+0000, '#' only as
// the whole last level [MQTT-4.7.1-2] and '+' only as a whole level
// [MQTT-4.7.1-3].
//
// Shared filters ("$share/..." and "$queue/...") are rejected with
// ErrSharedFilter: split them with ParseShared first, which validates the
// inner filter itself.
func ValidFilter(filter string) error {
	if err := checkCommon("topic filter", filter); err != nil {
		return err
	}
	if isSharedForm(filter) {
		return fmt.Errorf("topic filter %s: use ParseShared: %w", quote(filter), ErrSharedFilter)
	}
	return checkFilterLevels(filter)
}

// checkFilterLevels checks wildcards placement and U+0000 of a filter that
// has passed checkCommon.
func checkFilterLevels(filter string) error {
	start := 0 // first byte of the current level
	for i := 0; i < len(filter); i++ {
		switch filter[i] {
		case '/':
			start = i + 1
		case '+':
			if i != start || (i+1 < len(filter) && filter[i+1] != '/') {
				return fmt.Errorf("topic filter %s: '+' at byte %d is not a whole level [MQTT-4.7.1-3]: %w", quote(filter), i, ErrWildcardPlacement)
			}
		case '#':
			if i != start || i+1 != len(filter) {
				return fmt.Errorf("topic filter %s: '#' at byte %d is not the whole last level [MQTT-4.7.1-2]: %w", quote(filter), i, ErrWildcardPlacement)
			}
		case 0:
			return fmt.Errorf("topic filter %s: byte %d [MQTT-4.7.3-2]: %w", quote(filter), i, ErrNull)
		}
	}
	return nil
}

// checkCommon checks what names and filters share: length and encoding.
func checkCommon(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s [MQTT-4.7.3-1]: %w", what, ErrEmpty)
	case len(s) > MaxLen:
		return fmt.Errorf("%s of %d bytes: %w", what, len(s), ErrTooLong)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %s [MQTT-1.5.4-1]: %w", what, quote(s), ErrInvalidUTF8)
	}
	return nil
}

// isSharedForm reports whether the first level of filter is "$share" or
// "$queue", the levels that make a filter shared whether or not the rest is
// well formed.
func isSharedForm(filter string) bool {
	first := filter
	if i := strings.IndexByte(filter, '/'); i >= 0 {
		first = filter[:i]
	}
	return first == sharePrefix || first == queuePrefix
}

// ParseShared splits a shared-subscription filter. "$share/{group}/{filter}"
// (MQTT 5 4.8.2) yields group and filter; "$queue/{filter}" (as in EMQX and
// HiveMQ) yields group QueueGroup and filter.
//
// ok is false, with a nil error, when filter is not shared: its first level
// is neither "$share" nor "$queue" ("$sharefoo/x" is an ordinary filter).
// When it is shared but malformed, ok is true and err wraps
// ErrInvalidShared: an empty group [MQTT-4.8.2-1], a group containing '+',
// '#' [MQTT-4.8.2-2] or U+0000, a missing or empty filter, or a filter that
// ValidFilter rejects (including a nested shared filter). On success inner
// has passed ValidFilter.
func ParseShared(filter string) (group, inner string, ok bool, err error) {
	if !isSharedForm(filter) {
		return "", "", false, nil
	}
	if err := checkCommon("shared subscription", filter); err != nil {
		return "", "", true, fmt.Errorf("%w: %w", ErrInvalidShared, err)
	}
	// isSharedForm guarantees the first level is exactly one of the two
	// prefixes, so rest is "" or starts with '/'.
	var rest string
	if strings.HasPrefix(filter, queuePrefix) {
		group = QueueGroup
		rest = filter[len(queuePrefix):]
	} else {
		// A ShareName ends at the next '/', so it cannot contain one
		// [MQTT-4.8.2-2]; what is left to check is its other characters.
		rest = filter[len(sharePrefix):]
		if rest == "" {
			return "", "", true, fmt.Errorf("shared subscription %s: missing share name and filter: %w", quote(filter), ErrInvalidShared)
		}
		rest = rest[1:] // the '/' after "$share"
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return "", "", true, fmt.Errorf("shared subscription %s: missing filter after share name: %w", quote(filter), ErrInvalidShared)
		}
		group, rest = rest[:i], rest[i:]
		if group == "" {
			return "", "", true, fmt.Errorf("shared subscription %s: empty share name [MQTT-4.8.2-1]: %w", quote(filter), ErrInvalidShared)
		}
		if j := strings.IndexAny(group, "+#\x00"); j >= 0 {
			return "", "", true, fmt.Errorf("shared subscription %s: share name contains %q [MQTT-4.8.2-2]: %w", quote(filter), group[j], ErrInvalidShared)
		}
	}
	// rest is "" or starts with '/'.
	if len(rest) <= 1 {
		return "", "", true, fmt.Errorf("shared subscription %s: missing filter: %w", quote(filter), ErrInvalidShared)
	}
	inner = rest[1:]
	if err := ValidFilter(inner); err != nil {
		return "", "", true, fmt.Errorf("shared subscription %s: %w: %w", quote(filter), ErrInvalidShared, err)
	}
	return group, inner, true, nil
}

// IsSys reports whether name begins with '$'. Such topics ($SYS/... and any
// other $-topic) are not matched by a filter starting with a wildcard
// [MQTT-4.7.2-1], and clients cannot publish to $SYS.
func IsSys(name string) bool {
	return len(name) > 0 && name[0] == '$'
}

// skipsDollar reports whether the '$' rule stops filter from matching name:
// a filter starting with '+' or '#' does not match a name starting with '$'
// [MQTT-4.7.2-1].
func skipsDollar(filter, name string) bool {
	return IsSys(name) && filter != "" && (filter[0] == '+' || filter[0] == '#')
}

// Match reports whether the topic name matches the topic filter [MQTT-4.7],
// with the rule that a filter starting with '+' or '#' does not match a name
// starting with '$' [MQTT-4.7.2-1]. Matching is case sensitive and empty
// levels are levels: "+/+" matches "/", "a//b" does not match "a/b". A
// trailing "/#" also matches the parent level: "sport/#" matches "sport".
//
// name and filter are expected to have passed ValidName and ValidFilter;
// for other input the result is unspecified, but Match does not panic. It
// does not allocate.
func Match(filter, name string) bool {
	if skipsDollar(filter, name) {
		return false
	}
	for {
		fl, frest, fmore := cutLevel(filter)
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := cutLevel(name)
		if fl != "+" && fl != nl {
			return false
		}
		switch {
		case !fmore && !nmore:
			return true
		case !nmore:
			// The name has no more levels: only a final "#", which also
			// matches its parent, can match [MQTT-4.7.1-2].
			return frest == "#"
		case !fmore:
			return false
		}
		filter, name = frest, nrest
	}
}

// cutLevel splits s at its first '/': the first level, what follows the
// '/', and whether there was one.
func cutLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// quote quotes s for an error message, shortened so that a 64 KiB topic does
// not make a 64 KiB error.
func quote(s string) string {
	const limit = 64
	if len(s) <= limit {
		return fmt.Sprintf("%q", s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q...(%d bytes)", s[:cut], len(s))
}
