package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/starlingmq/starling/internal/broker"
)

// rawPebble opens a store folder with Pebble directly, to look under or
// damage what Starling wrote.
func rawPebble(t *testing.T, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{
		FormatMajorVersion: pebbleFormat,
		ErrorIfNotExists:   true,
		Logger:             pebbleLogger{slog.New(slog.DiscardHandler)},
	})
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	return db
}

func closeT(t *testing.T, c interface{ Close() error }) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestOpenCreatesFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "store")
	s := openPebbleT(t, dir)
	closeT(t, s)
	db := rawPebble(t, dir)
	defer closeT(t, db)
	v, c, err := db.Get(keyVersion)
	if err != nil {
		t.Fatalf("no version record: %v", err)
	}
	defer c.Close()
	if !bytes.Equal(v, []byte{0, 0, 0, 1}) {
		t.Fatalf("version record %x", v)
	}
}

func TestOpenRefusesForeignFolder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte("root:x:0:0"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open of a foreign folder: %v; want an error naming %s", err, dir)
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 1 {
		t.Fatalf("Open wrote into a foreign folder: %v", names)
	}
	// A file, not a folder.
	if _, err := Open(Options{Dir: filepath.Join(dir, "passwd")}); err == nil {
		t.Fatal("Open of a file succeeded")
	}
}

// A crash while creating a store leaves Pebble's files without a version
// record and without keys: Open finishes the creation.
func TestOpenFinishesInterruptedCreation(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebbleFormat, Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	closeT(t, db)
	closeT(t, openPebbleT(t, dir))
}

func TestOpenVersion(t *testing.T) {
	tests := []struct {
		name    string
		version []byte // nil: delete it
		want    string
	}{
		{"newer", binary.BigEndian.AppendUint32(nil, 2), "format version 2 is not supported"},
		{"zero", binary.BigEndian.AppendUint32(nil, 0), "format version 0 is not supported"},
		{"garbage", []byte("v1"), "corrupt"},
		{"missing with data", nil, "without a Starling format version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openPebbleT(t, dir)
			var b broker.Batch
			b.PutSession(session("a"))
			apply(t, s, &b)
			closeT(t, s)
			db := rawPebble(t, dir)
			var err error
			if tt.version == nil {
				err = db.Delete(keyVersion, pebble.Sync)
			} else {
				err = db.Set(keyVersion, tt.version, pebble.Sync)
			}
			if err != nil {
				t.Fatal(err)
			}
			closeT(t, db)
			_, err = Open(Options{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open: %v; want an error naming %s and saying %q", err, dir, tt.want)
			}
		})
	}
}

// A damaged store is refused with an error naming the folder, and nothing
// in it is removed.
func TestOpenRefusesCorruptStore(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"manifest overwritten", func(t *testing.T, dir string) {
			for _, m := range glob(t, dir, "MANIFEST-*") {
				writeFile(t, m, bytes.Repeat([]byte{0xA5}, 4096))
			}
		}},
		{"manifest truncated", func(t *testing.T, dir string) {
			for _, m := range glob(t, dir, "MANIFEST-*") {
				if err := os.Truncate(m, 10); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"manifest missing", func(t *testing.T, dir string) {
			for _, m := range glob(t, dir, "MANIFEST-*") {
				if err := os.Remove(m); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"sstable damaged", func(t *testing.T, dir string) {
			for _, m := range glob(t, dir, "*.sst") {
				data, err := os.ReadFile(m)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < len(data)/2; i += 7 {
					data[i] ^= 0x5A
				}
				writeFile(t, m, data)
			}
		}},
		{"sstable missing", func(t *testing.T, dir string) {
			for _, m := range glob(t, dir, "*.sst") {
				if err := os.Remove(m); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openPebbleT(t, dir)
			var b broker.Batch
			b.PutSession(session("a"))
			apply(t, s, &b)
			if err := s.db.Flush(); err != nil { // make an sstable
				t.Fatal(err)
			}
			closeT(t, s)
			tt.damage(t, dir)
			// Pebble itself retires old WALs, OPTIONS and manifests on a
			// successful open; the data in sstables must stay.
			before, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			p, err := Open(Options{Dir: dir})
			if err == nil {
				// Some damage only shows when the data is read.
				err = p.Load(context.Background(), &recorder{})
				_ = p.Close()
			}
			if err == nil || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Open and Load of a damaged store: %v; want an error naming %s", err, dir)
			}
			t.Logf("error: %v", err)
			for _, n := range before {
				if _, err := os.Stat(n); err != nil {
					t.Errorf("%s disappeared: %v", n, err)
				}
			}
		})
	}
}

func TestLoadCorruptRecordNamesKey(t *testing.T) {
	dir := t.TempDir()
	closeT(t, openPebbleT(t, dir))
	db := rawPebble(t, dir)
	key, _ := deliveryKey(nil, "a", 9)
	if err := db.Set(key, []byte{recordV1, 1}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	closeT(t, db)
	s := openPebbleT(t, dir)
	err := s.Load(context.Background(), &recorder{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), `\x03\x00\x00\x00\x00\x00\x00\x00\t`) {
		t.Fatalf("Load: %v; want ErrCorrupt naming the folder and the key", err)
	}
}

// Every key a session writes starts with 's' and its partition.
func TestKeysCarryPartition(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleT(t, dir)
	ids := []string{"a", "b", "client-1", "client-2", "x/y"}
	var b broker.Batch
	for _, id := range ids {
		b.PutSession(session(id))
		b.PutSubscription(id, sub("f"))
		b.PutDelivery(id, delivery(1))
		b.PutIncoming(id, 1)
	}
	apply(t, s, &b)
	closeT(t, s)
	db := rawPebble(t, dir)
	defer closeT(t, db)
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if k[0] != prefixSession {
			continue
		}
		n++
		id := string(k[4 : 4+binary.BigEndian.Uint16(k[2:4])])
		if k[1] != Partition(id) {
			t.Errorf("key %q: partition byte %d, want %d", k, k[1], Partition(id))
		}
	}
	if n != 4*len(ids) {
		t.Fatalf("%d session keys, want %d", n, 4*len(ids))
	}
}

// Reopening keeps everything, after NoSync batches too (Close writes them).
func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleT(t, dir)
	var b broker.Batch
	b.PutRetained(ptr(fullMessage("r")))
	for i := range 100 {
		id := string(rune('a'+i%26)) + string(rune('0'+i/26))
		b.PutSession(fullSession(id))
		b.PutSubscription(id, sub("f/"+id))
		b.PutDelivery(id, delivery(uint64(i)))
		b.PutIncoming(id, uint16(i))
		if err := s.Apply(context.Background(), &b, false); err != nil {
			t.Fatal(err)
		}
		b.Reset()
	}
	want := load(t, s)
	closeT(t, s)
	for range 2 {
		s = openPebbleT(t, dir)
		got := load(t, s)
		if len(got) != 401 || len(got) != len(want) {
			t.Fatalf("%d records after reopen, want 401", len(got))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after reopen:\n%swant:\n%s", formatEvents(got), formatEvents(want))
		}
		closeT(t, s)
	}
}

func glob(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s in %s (%v)", pattern, dir, listDir(t, dir))
	}
	return m
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
