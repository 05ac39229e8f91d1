package proto

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode, FrameLen and ReadFrame. None
// may panic; they must agree on where a frame ends; an error is either
// io.ErrUnexpectedEOF (only for a short frame), ErrFrameTooLarge or wraps
// ErrMalformed; and whatever decodes must re-encode to a frame that decodes
// to an equal message. Seeds are every vector of the table plus
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, tc := range vectors {
		if tc.raw != nil {
			f.Add(tc.raw)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A frame wholly inside data is at most len(data) bytes; a larger
		// limit would only make ReadFrame allocate what a prefix claims.
		maxSize := len(data) + 1
		m, err := Decode(data)
		switch {
		case err == nil:
		case errors.Is(err, io.ErrUnexpectedEOF):
			if n, ferr := FrameLen(data, maxSize); ferr == nil && n <= len(data) {
				t.Fatalf("Decode: %v, but FrameLen says the frame has %d of %d bytes", err, n, len(data))
			}
		case !errors.Is(err, ErrMalformed):
			t.Fatalf("Decode error %v is neither short nor malformed", err)
		}
		if err != nil && m != nil {
			t.Fatalf("Decode returned %#v with error %v", m, err)
		}

		f, rerr := ReadFrame(bytes.NewReader(data), nil, maxSize)
		if rerr == nil {
			// ReadFrame takes the first frame; Decode wants exactly one.
			fm, ferr := Decode(f)
			if len(f) == len(data) && ((ferr == nil) != (err == nil) || !reflect.DeepEqual(fm, m)) {
				t.Fatalf("ReadFrame+Decode = %#v, %v; Decode = %#v, %v", fm, ferr, m, err)
			}
		} else if err == nil {
			t.Fatalf("Decode succeeded, ReadFrame: %v", rerr)
		}
		checkRoundTrip(t, data)
		if len(data) > HeaderLen && (Type(data[HeaderLen]) == TypeForward || Type(data[HeaderLen]) == TypeForwardV2) {
			// the reusing decoder agrees with Decode, even after decoding
			// another frame into the same memory
			var fd ForwardDecoder
			fd.Decode(data)
			fm, ferr := fd.Decode(data)
			if (ferr == nil) != (err == nil) {
				t.Fatalf("ForwardDecoder: %v; Decode: %v", ferr, err)
			}
			if err == nil && !forwardEqual(fm, m.(*Forward)) {
				t.Fatalf("ForwardDecoder = %#v; Decode = %#v", fm, m)
			}
		}
	})
}

// forwardEqual compares Forward messages, an empty list equal to none.
func forwardEqual(a, b *Forward) bool {
	if len(a.Messages) == 0 && len(b.Messages) == 0 {
		return true
	}
	return reflect.DeepEqual(a.Messages, b.Messages)
}
