package packet

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode and ReadPacket for an
// arbitrary negotiated version (the first argument; 3, 4 and 5 are the
// interesting ones, 0 means before CONNECT). Neither may panic, they must
// agree, and whatever decodes must re-encode to bytes that decode to an
// equal packet. Seeds are every vector of the codec table in every version,
// plus testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, tc := range vectors {
		if tc.raw == nil {
			continue
		}
		for _, v := range []Version{0, V31, V311, V5} {
			f.Add(byte(v), tc.raw)
		}
	}
	f.Fuzz(func(t *testing.T, ver byte, data []byte) {
		v := Version(ver)
		p, n, err := Decode(data, v)

		rp, rerr := ReadPacket(bytes.NewReader(data), v, 0)
		rd := NewReader(bytes.NewReader(data))
		if xp, xerr := rd.ReadPacket(v, 0); (xerr == nil) != (rerr == nil) || (rerr == nil && !reflect.DeepEqual(xp, rp)) {
			t.Fatalf("Reader.ReadPacket = %#v, %v; ReadPacket = %#v, %v", xp, xerr, rp, rerr)
		}
		switch {
		case err == nil:
			if rerr != nil || !reflect.DeepEqual(p, rp) {
				t.Fatalf("ReadPacket disagrees with Decode: %#v, %v; Decode gave %#v", rp, rerr, p)
			}
		case errors.Is(err, io.ErrUnexpectedEOF):
			if !errors.Is(rerr, io.ErrUnexpectedEOF) && !(len(data) == 0 && rerr == io.EOF) {
				t.Fatalf("Decode: %v; ReadPacket: %v", err, rerr)
			}
		default:
			var rc ReasonCode
			if !errors.As(err, &rc) || !rc.IsError() {
				t.Fatalf("Decode error %v wraps no failure reason code", err)
			}
			if rerr == nil {
				t.Fatalf("Decode: %v; ReadPacket succeeded", err)
			}
		}
		checkRoundTrip(t, data, v)
		_ = n
	})
}
