package config

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testdataFS reads included files from testdata only, so that fuzzed
// include_dir lines cannot wander the file system.
type testdataFS struct{}

func (testdataFS) allowed(name string) bool {
	clean := filepath.ToSlash(filepath.Clean(name))
	return clean == "testdata" || strings.HasPrefix(clean, "testdata/") && !strings.Contains(clean, "..")
}

func (f testdataFS) Open(name string) (io.ReadCloser, error) {
	if !f.allowed(name) {
		return nil, os.ErrNotExist
	}
	return osFS{}.Open(name)
}

func (f testdataFS) ReadDir(name string) ([]string, error) {
	if !f.allowed(name) {
		return nil, os.ErrNotExist
	}
	return osFS{}.ReadDir(name)
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"listener 1883\nallow_anonymous true\n",
		"port 1884\nbind_address 0.0.0.0\nmax_connections 3\nlistener 8883 ::1\ncertfile c\nkeyfile k\n",
		"per_listener_settings true\nlistener 1\nallow_anonymous false\npassword_file p\nauth_plugin x\nauth_opt_a b c\n",
		"connection c\naddress h:1\ntopic # both 2 a/ b/\n",
		"log_type all\nlog_dest file /x y\nlog_dest none\nlog_dest topic\n",
		"persistent_client_expiration 13w\nmax_packet_size 20\nlog_level debug\n",
		"include_dir testdata/conf.d\n",
		"node_name n\ncluster_join a b\n",
		"max_connections 1 # comment\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	if b, err := os.ReadFile("testdata/mosquitto.conf"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := parse(strings.NewReader(text), "fuzz.conf", testdataFS{})
		if err != nil {
			return
		}
		_ = c.Validate()
		out := c.String()
		c2, err := parse(strings.NewReader(out), "string.conf", testdataFS{})
		if err != nil {
			t.Fatalf("String() output does not parse: %v\ninput:\n%q\nString():\n%s", err, text, out)
		}
		if a, b := normalize(c), normalize(c2); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip differs:\n%+v\n%+v\ninput:\n%q\nString():\n%s", a, b, text, out)
		}
		if out2 := c2.String(); out2 != out {
			t.Fatalf("String() not stable:\n%s\n---\n%s", out, out2)
		}
	})
}
