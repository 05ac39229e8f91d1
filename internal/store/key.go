package store

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Partitions is the number of session partitions. It is part of the on-disk
// format: changing it means a new format version.
const Partitions = 256

// Partition is the partition of a client id: FNV-1a 32 of the id's bytes,
// low 8 bits. It is stable across versions and platforms.
func Partition(clientID string) byte {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(clientID); i++ {
		h ^= uint32(clientID[i])
		h *= prime32
	}
	return byte(h & (Partitions - 1))
}

// Key prefixes and session suffixes (see the package doc).
const (
	prefixRetained byte = 'r'
	prefixSession  byte = 's'

	suffixSession      byte = 0x01
	suffixSubscription byte = 0x02
	suffixDelivery     byte = 0x03
	suffixIncoming     byte = 0x04
	// suffixEnd bounds a session's keys from above for DeleteRange.
	suffixEnd byte = 0xFF
)

// keyVersion holds the store's format version.
var keyVersion = []byte("meta/version")

// keyCounters holds the broker's counters.
var keyCounters = []byte("meta/counters")

// appendSessionPrefix appends 's' part len16 clientID.
func appendSessionPrefix(dst []byte, clientID string) ([]byte, error) {
	if len(clientID) > math.MaxUint16 {
		return dst, fmt.Errorf("store: client id of %d bytes is longer than 65535", len(clientID))
	}
	dst = append(dst, prefixSession, Partition(clientID))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(clientID)))
	return append(dst, clientID...), nil
}

func sessionKey(dst []byte, clientID string) ([]byte, error) {
	dst, err := appendSessionPrefix(dst, clientID)
	return append(dst, suffixSession), err
}

func subscriptionKey(dst []byte, clientID, filter string) ([]byte, error) {
	dst, err := appendSessionPrefix(dst, clientID)
	return append(append(dst, suffixSubscription), filter...), err
}

func deliveryKey(dst []byte, clientID string, seq uint64) ([]byte, error) {
	dst, err := appendSessionPrefix(dst, clientID)
	return binary.BigEndian.AppendUint64(append(dst, suffixDelivery), seq), err
}

func incomingKey(dst []byte, clientID string, id uint16) ([]byte, error) {
	dst, err := appendSessionPrefix(dst, clientID)
	return binary.BigEndian.AppendUint16(append(dst, suffixIncoming), id), err
}

// sessionRange returns the bounds [start, end) of every key of a session.
func sessionRange(clientID string) (start, end []byte, err error) {
	p, err := appendSessionPrefix(nil, clientID)
	if err != nil {
		return nil, nil, err
	}
	start = append(p[:len(p):len(p)], 0x00)
	end = append(p[:len(p):len(p)], suffixEnd)
	return start, end, nil
}

func retainedKey(dst []byte, topic string) []byte {
	return append(append(dst, prefixRetained), topic...)
}

// sessionKeyParts is a parsed session key.
type sessionKeyParts struct {
	clientID string
	suffix   byte
	rest     []byte // after the suffix: filter, seq or packet id
}

// parseSessionKey splits a key that starts with prefixSession. It checks the
// partition byte against the id so that a damaged key is not attributed to
// the wrong session.
func parseSessionKey(key []byte) (sessionKeyParts, error) {
	var p sessionKeyParts
	if len(key) < 5 || key[0] != prefixSession {
		return p, fmt.Errorf("session key too short")
	}
	n := int(binary.BigEndian.Uint16(key[2:4]))
	if len(key) < 4+n+1 {
		return p, fmt.Errorf("session key shorter than its client id length %d", n)
	}
	p.clientID = string(key[4 : 4+n])
	if Partition(p.clientID) != key[1] {
		return p, fmt.Errorf("partition byte %d does not match client id (want %d)", key[1], Partition(p.clientID))
	}
	p.suffix = key[4+n]
	p.rest = key[4+n+1:]
	switch p.suffix {
	case suffixSession:
		if len(p.rest) != 0 {
			return p, fmt.Errorf("session record key has %d trailing bytes", len(p.rest))
		}
	case suffixSubscription:
	case suffixDelivery:
		if len(p.rest) != 8 {
			return p, fmt.Errorf("delivery key has a %d-byte seq", len(p.rest))
		}
	case suffixIncoming:
		if len(p.rest) != 2 {
			return p, fmt.Errorf("incoming key has a %d-byte packet id", len(p.rest))
		}
	default:
		return p, fmt.Errorf("unknown session key suffix 0x%02x", p.suffix)
	}
	return p, nil
}
