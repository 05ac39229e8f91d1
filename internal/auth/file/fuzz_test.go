package file

import (
	"bytes"
	"strings"
	"testing"

	"github.com/starlingmq/starling/internal/broker"
)

func FuzzParsePasswords(f *testing.F) {
	for _, v := range mosquittoVectors {
		f.Add([]byte(v.line + "\n"))
	}
	f.Add([]byte("# c\n\n a : $6$YWJj$YWJj \r\nb:$7$1$$\n"))
	f.Add([]byte("u:$7$99999999999999999999$x$y\n:\n::\n$"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePasswords(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		// Every accepted user must be checkable without panicking. Cap
		// the work: fuzzed iteration counts can be huge.
		for u, e := range p.users {
			if e.iterations <= 1000 {
				p.Check(u, []byte("x"))
			}
		}
	})
}

func FuzzParseACL(f *testing.F) {
	f.Add([]byte(testACL))
	f.Add([]byte("topic\npattern deny %c/%u/#\nuser \nuser x\ntopic read a b c\n  # x\nfoo"))
	f.Add([]byte("topic $SYS/#\npattern %%c%u/+/#\ntopic deny +/#/a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		acl, err := ParseACL(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		// Accepted files hold only valid filters, and checking them must
		// not panic; substituted matching must agree with the reference.
		lists := []*rules{&acl.anon, &acl.patterns}
		for _, rs := range acl.users {
			lists = append(lists, rs)
		}
		for _, rs := range lists {
			for _, r := range append(append([]rule(nil), rs.deny...), rs.allow...) {
				if err := validFilter(r.filter); err != nil {
					t.Fatalf("accepted invalid filter %q: %v", r.filter, err)
				}
				s := &subst{clientID: "c1", username: "u1", hasUsername: true}
				topic := expand(strings.NewReplacer("+", "x", "#", "y").Replace(r.filter), s)
				if topic != "" && matchSubst(r.filter, topic, s) != match(expand(r.filter, s), topic) {
					t.Fatalf("matchSubst(%q, %q) disagrees with match(expand)", r.filter, topic)
				}
			}
		}
		for _, topic := range []string{"a", "a/b", "$SYS/x", "c1/u1", "", "/"} {
			for _, acc := range []broker.Access{R, W, S} {
				acl.Allowed("c1", "u1", true, topic, acc)
				acl.Allowed("c1", "", false, topic, acc)
			}
		}
	})
}
