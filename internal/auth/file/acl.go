package file

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/starlingmq/starling/internal/broker"
)

// accessDeny marks a "deny" rule: it grants nothing and refuses what it
// matches.
const accessDeny broker.Access = 0

const accessReadWrite = broker.AccessRead | broker.AccessWrite

// rule is one topic or pattern line.
type rule struct {
	filter string
	access broker.Access // accessDeny, or a mask of AccessRead and AccessWrite
	subst  bool          // the filter holds %c or %u (patterns only)
	user   bool          // the filter holds %u: never matches a client without username
}

// rules is one list of rules, checked as Mosquitto checks it: deny rules
// first, then the others in file order.
type rules struct {
	deny  []rule
	allow []rule
}

func (rs *rules) add(r rule) {
	if r.access == accessDeny {
		rs.deny = append(rs.deny, r)
	} else {
		rs.allow = append(rs.allow, r)
	}
}

// check returns whether the list decides the request and, if so, whether
// access is allowed. sub, when not nil, is substituted into patterns.
func (rs *rules) check(topic string, access broker.Access, sub *subst) (decided, allowed bool) {
	for i := range rs.deny {
		if rs.deny[i].match(topic, sub) {
			return true, false
		}
	}
	for i := range rs.allow {
		if r := &rs.allow[i]; r.access&access != 0 && r.match(topic, sub) {
			return true, true
		}
	}
	return false, false
}

// subst is what %c and %u stand for. The values never contain '/', '+' or
// '#' (Allowed refuses such clients), so substitution never changes the
// levels of a filter and matching can substitute level by level without
// building the filter.
type subst struct {
	clientID, username string
	hasUsername        bool
}

// value returns what the two bytes at p[i:] stand for, if a substitution.
func (s *subst) value(p string, i int) (string, bool) {
	if p[i] != '%' || i+1 >= len(p) {
		return "", false
	}
	switch {
	case p[i+1] == 'c':
		return s.clientID, true
	case p[i+1] == 'u' && s.hasUsername:
		return s.username, true
	}
	return "", false
}

func (r *rule) match(topic string, sub *subst) bool {
	if sub == nil || !r.subst {
		return match(r.filter, topic)
	}
	if r.user && !sub.hasUsername {
		return false
	}
	return matchSubst(r.filter, topic, sub)
}

// ACL is a parsed acl_file. It is immutable and safe for concurrent use.
type ACL struct {
	anon     rules             // topic lines before the first user line
	users    map[string]*rules // topic lines after "user <name>"
	patterns rules             // pattern lines, for every client
}

// LoadACL reads an acl_file; errors name the file and line.
func LoadACL(path string) (*ACL, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("acl file: %w", err)
	}
	defer f.Close()
	return ParseACL(f, path)
}

// ParseACL reads an acl_file in Mosquitto's syntax; name is used in errors:
//
//	# comment
//	topic [read|write|readwrite|deny] <topic filter>
//	user <username>
//	pattern [read|write|readwrite|deny] <topic filter with %c and %u>
//
// The access defaults to readwrite. Topic lines before the first user line
// apply to clients without a username; pattern lines apply to every client
// wherever they appear. A topic filter may contain spaces when the access is
// given. Invalid filters, unknown access words and unknown lines are errors,
// as in Mosquitto 2.0; all of them are reported, each with its line number.
// Mosquitto only treats '#' in the first column as a comment; here leading
// blanks before it are allowed too.
func ParseACL(r io.Reader, name string) (*ACL, error) {
	a := &ACL{users: make(map[string]*rules)}
	errs := errorList{name: name}
	cur := &a.anon
	err := eachLine(r, func(line string, n int) {
		line = trimBlanks(line)
		if line == "" || line[0] == '#' {
			return
		}
		kw, rest := cutWord(line)
		switch kw {
		case "user":
			if rest == "" {
				errs.add(n, "missing username")
				return
			}
			rs, ok := a.users[rest]
			if !ok {
				rs = &rules{}
				a.users[rest] = rs
			}
			cur = rs
		case "topic", "pattern":
			if rest == "" {
				errs.add(n, "empty topic")
				return
			}
			word, filter := cutWord(rest)
			access := accessReadWrite
			if filter == "" {
				filter = word
			} else {
				switch word {
				case "read":
					access = broker.AccessRead
				case "write":
					access = broker.AccessWrite
				case "readwrite":
					access = accessReadWrite
				case "deny":
					access = accessDeny
				default:
					errs.add(n, "invalid topic access type %q (want read, write, readwrite or deny)", word)
					return
				}
			}
			if err := validFilter(filter); err != nil {
				errs.add(n, "invalid ACL topic %q: %v", filter, err)
				return
			}
			rl := rule{filter: filter, access: access}
			if kw == "pattern" {
				rl.user = strings.Contains(filter, "%u")
				rl.subst = rl.user || strings.Contains(filter, "%c")
				a.patterns.add(rl)
			} else {
				cur.add(rl)
			}
		default:
			errs.add(n, "invalid line: unknown keyword %q (want topic, pattern or user)", kw)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := errs.join(); err != nil {
		return nil, err
	}
	return a, nil
}

// Allowed reports whether a client may have access to topic, with
// Mosquitto 2.0's rules for acl_file:
//
//   - AccessSubscribe checks the filter as if it were a topic needing read
//     access, where a '#' level of the filter is only covered by a '#' of
//     the rule: "topic read a/#" lets a client subscribe to "a/#" and
//     "a/+/b", "topic read a/+" lets it subscribe to "a/+" but not "a/#",
//     and "topic read a/b" does not let it subscribe to "a/#". Mosquitto
//     2.0 does not check subscriptions at all; refusing in SUBACK what can
//     never be delivered is what MQTT 5 clients expect (0x87). Delivery is
//     still checked topic by topic with AccessRead.
//   - The client's own list is checked first: the topic lines of its user
//     section, or the anonymous section when it has no username. A matching
//     deny rule there refuses; else a matching rule granting access allows.
//   - Only if that list decides nothing are the patterns checked, the same
//     way, with %c replaced by clientID and %u by username (a pattern with
//     %u never matches a client without username). So a user section's
//     grant is not undone by a deny pattern, and a deny topic line is not
//     undone by a granting pattern, as in Mosquitto.
//   - When there are patterns, a client whose ID or username contains '+',
//     '#' or '/' gets nothing from them (Mosquitto 2.0 refuses '+' and '#';
//     '/' is refused here too so that %c always stands for one level).
//   - Otherwise access is denied. A filter and a topic only match when both
//     or neither start with '$'; $SYS is otherwise an ordinary topic here.
func (a *ACL) Allowed(clientID, username string, hasUsername bool, topic string, access broker.Access) bool {
	if access == broker.AccessSubscribe {
		if topic == "" {
			return false
		}
		access = broker.AccessRead
	} else if topic == "" || strings.ContainsAny(topic, "+#") {
		return false
	}
	own := &a.anon
	if hasUsername {
		own = a.users[username]
	}
	if own != nil {
		if decided, ok := own.check(topic, access, nil); decided {
			return ok
		}
	}
	if len(a.patterns.deny) == 0 && len(a.patterns.allow) == 0 {
		return false
	}
	if strings.ContainsAny(clientID, "+#/") || (hasUsername && strings.ContainsAny(username, "+#/")) {
		return false
	}
	_, ok := a.patterns.check(topic, access, &subst{clientID: clientID, username: username, hasUsername: hasUsername})
	return ok
}

// matchSubst is match(expand(filter, s), topic) without building the
// expanded filter.
func matchSubst(filter, topic string, s *subst) bool {
	if filter == "" || topic == "" {
		return false
	}
	// The expanded filter's first byte decides the '$' rule.
	first := -1
	for i := 0; i < len(filter) && first < 0; i++ {
		if v, ok := s.value(filter, i); ok {
			if v != "" {
				first = int(v[0])
			}
			i++
			continue
		}
		first = int(filter[i])
	}
	if first < 0 || (first == '$') != (topic[0] == '$') {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if t == "#" {
			return false // a subscription's '#' is only covered by a rule's '#'
		}
		if f != "+" && !levelEqual(f, t, s) {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// levelEqual reports whether filter level f, with s substituted, is t.
func levelEqual(f, t string, s *subst) bool {
	j := 0
	for i := 0; i < len(f); i++ {
		if v, ok := s.value(f, i); ok {
			if !strings.HasPrefix(t[j:], v) {
				return false
			}
			j += len(v)
			i++
			continue
		}
		if j >= len(t) || t[j] != f[i] {
			return false
		}
		j++
	}
	return j == len(t)
}

// validFilter checks a topic filter as Mosquitto's mosquitto_sub_topic_check
// does: '+' and '#' take a whole level, '#' only the last, at most 65535
// bytes.
func validFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty filter")
	}
	if len(f) > maxFieldLen {
		return fmt.Errorf("longer than %d bytes", maxFieldLen)
	}
	for rest, more := f, true; more; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		switch {
		case level == "#" && more:
			return fmt.Errorf("'#' must be the last level")
		case level != "+" && level != "#" && strings.ContainsAny(level, "+#"):
			return fmt.Errorf("wildcard must take a whole level")
		}
	}
	return nil
}

// match reports whether topic name matches filter, by MQTT's rules: '+' is
// one level (possibly empty), a final '#' is the parent level and anything
// below it, and names starting with '$' are only matched by filters that
// start with '$'.
func match(filter, topic string) bool {
	if filter == "" || topic == "" || (filter[0] == '$') != (topic[0] == '$') {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if t == "#" {
			return false // a subscription's '#' is only covered by a rule's '#'
		}
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}
