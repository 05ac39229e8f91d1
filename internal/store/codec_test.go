package store

import (
	"bytes"
	"errors"
	"hash/fnv"
	"reflect"
	"testing"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/packet"
)

func TestPartitionIsFNV1a(t *testing.T) {
	for _, id := range []string{"", "a", "client-1", "sensor/42", "ünïcode", string(make([]byte, 300))} {
		h := fnv.New32a()
		h.Write([]byte(id))
		if got, want := Partition(id), byte(h.Sum32()&0xFF); got != want {
			t.Errorf("Partition(%q) = %d, want %d", id, got, want)
		}
	}
	// Pinned: the partition is part of the on-disk format.
	if got := Partition("client-1"); got != 0xe8 {
		t.Errorf("Partition(client-1) = %#x, want 0xe8", got)
	}
}

func TestKeyLayout(t *testing.T) {
	id := "client-1"
	p := Partition(id)
	head := []byte{'s', p, 0, 8, 'c', 'l', 'i', 'e', 'n', 't', '-', '1'}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		got  func() ([]byte, error)
		want []byte
	}{
		{"session", func() ([]byte, error) { return sessionKey(nil, id) }, cat(head, []byte{1})},
		{"subscription", func() ([]byte, error) { return subscriptionKey(nil, id, "a/#") }, cat(head, []byte{2}, []byte("a/#"))},
		{"delivery", func() ([]byte, error) { return deliveryKey(nil, id, 0x0102) }, cat(head, []byte{3, 0, 0, 0, 0, 0, 0, 1, 2})},
		{"incoming", func() ([]byte, error) { return incomingKey(nil, id, 0x0304) }, cat(head, []byte{4, 3, 4})},
		{"retained", func() ([]byte, error) { return retainedKey(nil, "a/b"), nil }, []byte("ra/b")},
	}
	for _, tt := range tests {
		got, err := tt.got()
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("%s key = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	start, end, err := sessionRange(id)
	if err != nil || !bytes.Equal(start, cat(head, []byte{0})) || !bytes.Equal(end, cat(head, []byte{0xFF})) {
		t.Errorf("sessionRange = %q, %q, %v", start, end, err)
	}
}

// Every record kind with every field set survives encode and decode.
func TestRecordRoundTrip(t *testing.T) {
	sess := []*broker.SessionRecord{fullSession("c"), session("c"), {ClientID: "c", Will: &packet.Will{}}}
	for _, s := range sess {
		got, err := decodeSession("c", encodeSession(nil, s))
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("session: %+v, %v; want %+v", got, err, s)
		}
	}
	subs := []*broker.SubscriptionRecord{sub("f"), {Filter: "f"}, {Filter: "f", SubscriptionID: 268435455}}
	for _, s := range subs {
		got, err := decodeSubscription("f", encodeSubscription(nil, s))
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("subscription: %+v, %v; want %+v", got, err, s)
		}
	}
	dels := []*broker.DeliveryRecord{delivery(7), {Seq: 7}, {Seq: 7, SubIDs: []int{}, Message: broker.MessageRecord{Payload: []byte{}}}}
	for _, d := range dels {
		got, err := decodeDelivery(7, encodeDelivery(nil, d))
		if err != nil || !reflect.DeepEqual(got, d) {
			t.Errorf("delivery: %+v, %v; want %+v", got, err, d)
		}
	}
	for _, m := range []broker.MessageRecord{fullMessage("t"), {Topic: "t"}} {
		got, err := decodeRetained("t", encodeRetained(nil, &m))
		if err != nil || !reflect.DeepEqual(*got, m) {
			t.Errorf("retained: %+v, %v; want %+v", got, err, m)
		}
	}
	// No properties cost one byte.
	if n := len(putProperties(nil, &packet.Properties{})); n != 1 {
		t.Errorf("empty properties take %d bytes", n)
	}
}

// Every truncation and every single-byte change of valid records either
// decodes or fails with ErrCorrupt naming the key; none panics.
func TestDecodeDamagedRecords(t *testing.T) {
	for _, s := range fuzzSeeds(t) {
		for n := range len(s.val) {
			checkDecode(t, s.key, s.val[:n])
		}
		for i := range s.val {
			for _, x := range []byte{0x00, 0x01, 0x7F, 0x80, 0xFF} {
				v := bytes.Clone(s.val)
				v[i] ^= x
				checkDecode(t, s.key, v)
			}
		}
	}
}

func checkDecode(t *testing.T, key, val []byte) {
	t.Helper()
	err := dispatch(key, val, &recorder{})
	if err != nil && (!errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("key "))) {
		t.Fatalf("dispatch(%q, %x): %v; want an ErrCorrupt naming the key", key, val, err)
	}
}

type seed struct{ key, val []byte }

// fuzzSeeds are one valid key and value of each record kind.
func fuzzSeeds(t testing.TB) []seed {
	var out []seed
	var b broker.Batch
	b.PutSession(fullSession("client"))
	b.PutSession(session("c"))
	b.PutSubscription("client", sub("a/+/b"))
	b.PutDelivery("client", delivery(42))
	b.PutDelivery("c", &broker.DeliveryRecord{Seq: 1})
	b.PutIncoming("client", 7)
	b.PutRetained(ptr(fullMessage("r/t")))
	b.PutRetained(&broker.MessageRecord{Topic: "r"})
	for i := range b.Ops {
		_, e, err := encodeOp(nil, &b.Ops[i])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, seed{e.key, e.val})
	}
	return append(out, seed{keyVersion, []byte{0, 0, 0, 1}})
}

// reencode turns the records a Loader received back into keys and values.
func reencode(t *testing.T, r *recorder) []seed {
	var b broker.Batch
	for _, e := range r.events {
		switch rec := e.Rec.(type) {
		case *broker.SessionRecord:
			b.PutSession(rec)
		case *broker.SubscriptionRecord:
			b.PutSubscription(e.ClientID, rec)
		case *broker.DeliveryRecord:
			b.PutDelivery(e.ClientID, rec)
		case uint16:
			b.PutIncoming(e.ClientID, rec)
		case *broker.MessageRecord:
			b.PutRetained(rec)
		}
	}
	var out []seed
	for i := range b.Ops {
		_, e, err := encodeOp(nil, &b.Ops[i])
		if err != nil {
			t.Fatalf("re-encoding %v: %v", r.events[i], err)
		}
		out = append(out, seed{e.key, e.val})
	}
	return out
}

// FuzzDecodeRecord decodes arbitrary keys and values: no panic, errors
// wrap ErrCorrupt and name the key, and what decodes re-encodes to bytes
// that decode to the same records (decode-encode-decode round trip).
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.key, s.val)
	}
	f.Fuzz(func(t *testing.T, key, val []byte) {
		var r1 recorder
		err := dispatch(key, val, &r1)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if len(r1.events) == 0 {
			return // the meta key: no record
		}
		enc := reencode(t, &r1)
		var r2 recorder
		if err := dispatch(enc[0].key, enc[0].val, &r2); err != nil {
			t.Fatalf("re-encoded %q %x does not decode: %v", enc[0].key, enc[0].val, err)
		}
		if !reflect.DeepEqual(r1.events, r2.events) {
			t.Fatalf("round trip:\n%s!=\n%s", formatEvents(r1.events), formatEvents(r2.events))
		}
		enc2 := reencode(t, &r2)
		if !bytes.Equal(enc[0].key, enc2[0].key) || !bytes.Equal(enc[0].val, enc2[0].val) {
			t.Fatalf("encoding is not stable: %x then %x", enc[0].val, enc2[0].val)
		}
	})
}
