package topic

import (
	"errors"
	"strings"
	"testing"
)

// matchVectors is the one table of (filter, name) pairs: it feeds the tests
// of Match, Trie.Match and Names.Match, and seeds FuzzMatch. Every filter
// passes ValidFilter and every name passes ValidName.
var matchVectors = []struct {
	filter, name string
	want         bool
}{
	// The examples of MQTT 4.7.1.2.
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"sport/tennis/#", "sport/tennis", true},
	{"sport/#", "sports", false},
	{"sport/#", "sport/", true},
	{"#", "sport", true},
	{"#", "sport/tennis/player1", true},
	{"#", "/", true},
	{"/#", "/", true},
	{"/#", "sport", false},
	{"+/#", "sport", true},
	{"a/+/#", "a/b", true},
	{"a/+/#", "a", false},
	// The examples of MQTT 4.7.1.3.
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	{"+/+", "/", true},
	{"+", "/", false},
	{"+/+/+", "a/b", false},
	{"+", "a", true},
	// Empty levels are levels.
	{"a//b", "a//b", true},
	{"a/b", "a//b", false},
	{"a//b", "a/b", false},
	{"a/+/b", "a//b", true},
	{"a/+", "a//b", false},
	{"a/b", "a/b/", false},
	{"a/b/", "a/b/", true},
	{"//", "//", true},
	{"+/+/+", "//", true},
	// Literals.
	{"a/b/c", "a/b/c", true},
	{"a/b/c", "a/b", false},
	{"a/b", "a/b/c", false},
	{"a/#", "ab", false},
	{"a/b/#", "a", false},
	// Case sensitive, no normalization [MQTT-4.7.3-4].
	{"Sport", "sport", false},
	{"ACCOUNTS", "accounts", false},
	{"sport/Tennis/#", "sport/tennis/x", false},
	{"€/+", "€/x", true},
	{"caf\u00e9", "cafe\u0301", false},
	// The '$' rule [MQTT-4.7.2-1].
	{"$SYS/#", "$SYS/broker/x", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"#", "$SYS/broker/x", false},
	{"#", "$SYS", false},
	{"#", "$", false},
	{"+", "$SYS", false},
	{"+/#", "$SYS/x", false},
	{"+/b", "$a/b", false},
	{"+/b", "a$/b", true},
	{"a/#", "a/$b", true},
	{"a/+", "a/$b", true},
}

func TestMatch(t *testing.T) {
	for _, v := range matchVectors {
		if err := ValidFilter(v.filter); err != nil {
			t.Fatalf("vector filter %q: %v", v.filter, err)
		}
		if err := ValidName(v.name); err != nil {
			t.Fatalf("vector name %q: %v", v.name, err)
		}
		if got := Match(v.filter, v.name); got != v.want {
			t.Errorf("Match(%q, %q) = %v, want %v", v.filter, v.name, got, v.want)
		}
		if got := refMatch(v.filter, v.name); got != v.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v", v.filter, v.name, got, v.want)
		}
	}
}

// refMatch is an independent, allocating implementation of Match that the
// tests and fuzzers compare against.
func refMatch(filter, name string) bool {
	if strings.HasPrefix(name, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f, n := strings.Split(filter, "/"), strings.Split(name, "/")
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(n) || (fl != "+" && fl != n[i]) {
			return false
		}
	}
	return len(f) == len(n)
}

func TestMQTT_4_7_1_2_MultiLevelWildcardLast(t *testing.T) {
	tests := []struct {
		filter string
		ok     bool
	}{
		{"#", true},
		{"sport/#", true},
		{"sport/tennis/#", true},
		{"/#", true},
		{"sport/tennis#", false},
		{"sport/tennis/#/ranking", false},
		{"#/", false},
		{"##", false},
		{"#a", false},
		{"a#", false},
		{"sport/#/", false},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			err := ValidFilter(tt.filter)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidFilter(%q) = %v, want ok=%v", tt.filter, err, tt.ok)
			}
			if !tt.ok && !errors.Is(err, ErrWildcardPlacement) {
				t.Fatalf("ValidFilter(%q) = %v, want ErrWildcardPlacement", tt.filter, err)
			}
		})
	}
	// "sport/#" also matches the parent level.
	if !Match("sport/#", "sport") {
		t.Error(`"sport/#" does not match "sport"`)
	}
}

func TestMQTT_4_7_1_3_SingleLevelWildcardWholeLevel(t *testing.T) {
	tests := []struct {
		filter string
		ok     bool
	}{
		{"+", true},
		{"+/tennis/#", true},
		{"sport/+/player1", true},
		{"+/+", true},
		{"/+", true},
		{"+/", true},
		{"sport+", false},
		{"+sport", false},
		{"sport/+tennis", false},
		{"++", false},
		{"sport/+/+x", false},
		{"+#", false},
		{"+/#", true},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			err := ValidFilter(tt.filter)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidFilter(%q) = %v, want ok=%v", tt.filter, err, tt.ok)
			}
			if !tt.ok && !errors.Is(err, ErrWildcardPlacement) {
				t.Fatalf("ValidFilter(%q) = %v, want ErrWildcardPlacement", tt.filter, err)
			}
		})
	}
	// '+' matches an empty level.
	for _, v := range [][2]string{{"+/+", "/finance"}, {"/+", "/finance"}, {"+/+", "/"}, {"a/+/b", "a//b"}} {
		if !Match(v[0], v[1]) {
			t.Errorf("Match(%q, %q) = false, want true", v[0], v[1])
		}
	}
	if Match("+", "/finance") {
		t.Error(`"+" matches "/finance"`)
	}
}

func TestMQTT_4_7_1_1_NoWildcardsInTopicNames(t *testing.T) {
	for _, name := range []string{"+", "#", "sport/+", "sport/#", "a+b", "a#b", "sport/tennis/#/x"} {
		err := ValidName(name)
		if !errors.Is(err, ErrWildcardInName) {
			t.Errorf("ValidName(%q) = %v, want ErrWildcardInName", name, err)
		}
	}
}

func TestMQTT_4_7_2_1_DollarTopicsNotMatchedByLeadingWildcard(t *testing.T) {
	tests := []struct {
		filter, name string
		want         bool
	}{
		{"#", "$SYS/broker/clients", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/broker/x", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"#", "a/$SYS", true},
		{"$+", "$SYS", false}, // not a valid filter; '$' then '+' is a literal mismatch
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
	}
	for _, name := range []string{"$SYS", "$SYS/x", "$", "$share/g/x"} {
		if !IsSys(name) {
			t.Errorf("IsSys(%q) = false", name)
		}
	}
	for _, name := range []string{"", "SYS", "a/$SYS", " $SYS"} {
		if IsSys(name) {
			t.Errorf("IsSys(%q) = true", name)
		}
	}
}

func TestMQTT_4_7_3_1_TopicAtLeastOneCharacter(t *testing.T) {
	if err := ValidName(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("ValidName(\"\") = %v, want ErrEmpty", err)
	}
	if err := ValidFilter(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("ValidFilter(\"\") = %v, want ErrEmpty", err)
	}
	// A single '/' is one character: two empty levels.
	if err := ValidName("/"); err != nil {
		t.Errorf("ValidName(\"/\") = %v", err)
	}
	if err := ValidFilter("/"); err != nil {
		t.Errorf("ValidFilter(\"/\") = %v", err)
	}
}

func TestMQTT_4_7_3_2_NoNullCharacter(t *testing.T) {
	for _, s := range []string{"\x00", "a\x00b", "a/\x00", "a/b\x00"} {
		if err := ValidName(s); !errors.Is(err, ErrNull) {
			t.Errorf("ValidName(%q) = %v, want ErrNull", s, err)
		}
		if err := ValidFilter(s); !errors.Is(err, ErrNull) {
			t.Errorf("ValidFilter(%q) = %v, want ErrNull", s, err)
		}
	}
}

func TestMQTT_4_7_3_3_AtMost65535Bytes(t *testing.T) {
	ok := strings.Repeat("a", MaxLen)
	long := ok + "b"
	if err := ValidName(ok); err != nil {
		t.Errorf("ValidName(65535 bytes) = %v", err)
	}
	if err := ValidFilter(ok); err != nil {
		t.Errorf("ValidFilter(65535 bytes) = %v", err)
	}
	if err := ValidName(long); !errors.Is(err, ErrTooLong) {
		t.Errorf("ValidName(65536 bytes) = %v, want ErrTooLong", err)
	}
	if err := ValidFilter(long); !errors.Is(err, ErrTooLong) {
		t.Errorf("ValidFilter(65536 bytes) = %v, want ErrTooLong", err)
	}
	// Errors quote a bounded prefix, not the whole topic.
	err := ValidName(strings.Repeat("€", 20000) + "+")
	if err == nil || len(err.Error()) > 400 {
		t.Errorf("error for a long name is %d bytes", len(err.Error()))
	}
}

func TestMQTT_4_7_3_4_NoNormalization(t *testing.T) {
	tests := []struct{ filter, name string }{
		{"ACCOUNTS", "accounts"},
		{"Accounts payable", "accounts payable"},
		{"a/b", "a//b"},
		{"a/b", "a/b/"},
		{"a/b", "/a/b"},
		{"caf\u00e9", "cafe\u0301"},
		{"a b", "ab"},
	}
	for _, tt := range tests {
		if Match(tt.filter, tt.name) {
			t.Errorf("Match(%q, %q) = true", tt.filter, tt.name)
		}
		if !Match(tt.filter, tt.filter) || !Match(tt.name, tt.name) {
			t.Errorf("a literal filter does not match itself: %q, %q", tt.filter, tt.name)
		}
	}
}

func TestMQTT_1_5_4_1_WellFormedUTF8(t *testing.T) {
	for _, s := range []string{"\xff", "a/\xc3", "\xed\xa0\x80" /* U+D800 */, "a/\xc0\x80"} {
		if err := ValidName(s); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidUTF8", s, err)
		}
		if err := ValidFilter(s); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("ValidFilter(%q) = %v, want ErrInvalidUTF8", s, err)
		}
	}
	for _, s := range []string{"€/日本/🙂", "\uFEFF"} {
		if err := ValidName(s); err != nil {
			t.Errorf("ValidName(%q) = %v", s, err)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"a", nil},
		{"/", nil},
		{"//", nil},
		{"a/b/c", nil},
		{"$SYS/broker", nil},
		{"$share/g/x", nil}, // a name, not a filter: valid, the broker decides
		{" ", nil},
		{"", ErrEmpty},
		{"a/+", ErrWildcardInName},
		{"#", ErrWildcardInName},
		{"a\x00", ErrNull},
		{"\xff", ErrInvalidUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidName(tt.name)
			if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("ValidName(%q) = %v, want %v", tt.name, err, tt.err)
			}
		})
	}
}

func TestValidFilterRejectsShared(t *testing.T) {
	for _, f := range []string{"$share/g/x", "$share/g/#", "$share", "$share/g", "$queue/x", "$queue", "$queue/"} {
		if err := ValidFilter(f); !errors.Is(err, ErrSharedFilter) {
			t.Errorf("ValidFilter(%q) = %v, want ErrSharedFilter", f, err)
		}
	}
	for _, f := range []string{"$sharefoo/x", "$SHARE/g/x", "$queues/x", "a/$share/g/x", "$share_/g", "$SYS/#"} {
		if err := ValidFilter(f); err != nil {
			t.Errorf("ValidFilter(%q) = %v", f, err)
		}
	}
}

func TestParseShared(t *testing.T) {
	tests := []struct {
		filter       string
		group, inner string
		ok, bad      bool
	}{
		{filter: "$share/g/#", group: "g", inner: "#", ok: true},
		{filter: "$share/g/a/b", group: "g", inner: "a/b", ok: true},
		{filter: "$share/group-1/sport/+/x", group: "group-1", inner: "sport/+/x", ok: true},
		{filter: "$share/g//", group: "g", inner: "/", ok: true},
		{filter: "$share/g/$SYS/#", group: "g", inner: "$SYS/#", ok: true},
		{filter: "$share/日本/x", group: "日本", inner: "x", ok: true},
		{filter: "$share/$queue/x", group: "$queue", inner: "x", ok: true},
		{filter: "$queue/a/b", group: QueueGroup, inner: "a/b", ok: true},
		{filter: "$queue/#", group: QueueGroup, inner: "#", ok: true},
		{filter: "$queue//", group: QueueGroup, inner: "/", ok: true},

		// Not shared.
		{filter: "$sharefoo/x"},
		{filter: "$SHARE/g/x"},
		{filter: "$queues/x"},
		{filter: "share/g/x"},
		{filter: "a/$share/g/x"},
		{filter: "#"},
		{filter: "$SYS/#"},
		{filter: ""},

		// Shared but malformed.
		{filter: "$share", ok: true, bad: true},
		{filter: "$share/", ok: true, bad: true},
		{filter: "$share/g", ok: true, bad: true},
		{filter: "$share/g/", ok: true, bad: true},
		{filter: "$share//x", ok: true, bad: true},
		{filter: "$share/+/x", ok: true, bad: true},
		{filter: "$share/#/x", ok: true, bad: true},
		{filter: "$share/g+/x", ok: true, bad: true},
		{filter: "$share/g#/x", ok: true, bad: true},
		{filter: "$share/g\x00/x", ok: true, bad: true},
		{filter: "$share/g/a#", ok: true, bad: true},
		{filter: "$share/g/a+/b", ok: true, bad: true},
		{filter: "$share/g/#/a", ok: true, bad: true},
		{filter: "$share/g/a\x00", ok: true, bad: true},
		{filter: "$share/g/$share/h/x", ok: true, bad: true},
		{filter: "$share/g/\xff", ok: true, bad: true},
		{filter: "$queue", ok: true, bad: true},
		{filter: "$queue/", ok: true, bad: true},
		{filter: "$queue/a+", ok: true, bad: true},
		{filter: "$queue/$queue/x", ok: true, bad: true},
		{filter: "$share/g/" + strings.Repeat("a", MaxLen), ok: true, bad: true},
	}
	for _, tt := range tests {
		t.Run(quote(tt.filter), func(t *testing.T) {
			group, inner, ok, err := ParseShared(tt.filter)
			if ok != tt.ok || (err != nil) != tt.bad {
				t.Fatalf("ParseShared(%q) = ok %v, err %v; want ok %v, bad %v", tt.filter, ok, err, tt.ok, tt.bad)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidShared) {
					t.Fatalf("ParseShared(%q) error %v is not ErrInvalidShared", tt.filter, err)
				}
				return
			}
			if group != tt.group || inner != tt.inner {
				t.Fatalf("ParseShared(%q) = %q, %q; want %q, %q", tt.filter, group, inner, tt.group, tt.inner)
			}
		})
	}
}

func TestMQTT_4_8_2_1_ShareNameAtLeastOneCharacter(t *testing.T) {
	for _, f := range []string{"$share//x", "$share/", "$share"} {
		if _, _, ok, err := ParseShared(f); !ok || !errors.Is(err, ErrInvalidShared) {
			t.Errorf("ParseShared(%q) = ok %v, err %v; want ErrInvalidShared", f, ok, err)
		}
	}
}

func TestMQTT_4_8_2_2_ShareNameFollowedBySlashAndFilter(t *testing.T) {
	for _, f := range []string{"$share/a+b/x", "$share/a#/x", "$share/+/x", "$share/g", "$share/g/"} {
		if _, _, ok, err := ParseShared(f); !ok || !errors.Is(err, ErrInvalidShared) {
			t.Errorf("ParseShared(%q) = ok %v, err %v; want ErrInvalidShared", f, ok, err)
		}
	}
	// The ShareName ends at the first '/'; whatever follows is the filter.
	g, inner, ok, err := ParseShared("$share/a/b/c")
	if !ok || err != nil || g != "a" || inner != "b/c" {
		t.Errorf(`ParseShared("$share/a/b/c") = %q, %q, %v, %v`, g, inner, ok, err)
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		for _, v := range matchVectors {
			Match(v.filter, v.name)
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run", allocs)
	}
}
