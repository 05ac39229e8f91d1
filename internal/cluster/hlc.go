package cluster

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/starlingmq/starling/internal/cluster/proto"
)

// ErrClockOffset: a remote timestamp is further ahead of the local clock
// than the Clock's maximum offset. The clock does not follow it, so that
// one node with a wrong clock cannot drag every other node's clock into
// the future; the write it stamps still compares by its timestamp.
var ErrClockOffset = errors.New("cluster: remote clock too far ahead")

// Clock is a hybrid logical clock: readings follow physical time in
// milliseconds, never go backwards, are greater than every timestamp the
// clock has observed, and carry the node's name so that no two nodes'
// readings are equal. Retained messages are stamped with it and merged
// last-writer-wins (LastWriterWins).
//
// The caller passes the physical time; Clock never reads it. A Clock is
// not safe for concurrent use.
type Clock struct {
	node      string
	maxOffset time.Duration
	last      proto.Timestamp
}

// NewClock returns the clock of node. Remote timestamps more than
// maxOffset ahead of the physical time are refused by Observe (0: no
// limit).
func NewClock(node string, maxOffset time.Duration) *Clock {
	return &Clock{node: node, maxOffset: maxOffset, last: proto.Timestamp{Node: node}}
}

// Last returns the latest reading or observed time, with this node's name.
func (c *Clock) Last() proto.Timestamp { return c.last }

// Now returns a reading for a local event at physical time now, greater
// than every earlier reading and every observed timestamp.
func (c *Clock) Now(now time.Time) proto.Timestamp {
	if pt := now.UnixMilli(); pt > c.last.WallMilli {
		c.last = proto.Timestamp{WallMilli: pt, Node: c.node}
	} else {
		c.tick(c.last.Logical)
	}
	return c.last
}

// Observe moves the clock past a timestamp received from another node at
// physical time now, so that every later reading is greater than it. A
// remote timestamp beyond the maximum offset is ErrClockOffset and leaves
// the clock unchanged.
func (c *Clock) Observe(now time.Time, remote proto.Timestamp) error {
	pt := now.UnixMilli()
	if c.maxOffset > 0 && remote.WallMilli > pt && remote.WallMilli-pt > c.maxOffset.Milliseconds() {
		return fmt.Errorf("cluster: timestamp of %s is %v ahead, maximum %v: %w",
			remote.Node, time.Duration(remote.WallMilli-pt)*time.Millisecond, c.maxOffset, ErrClockOffset)
	}
	wall := max(pt, c.last.WallMilli, remote.WallMilli)
	switch {
	case wall == c.last.WallMilli && wall == remote.WallMilli:
		c.tick(max(c.last.Logical, remote.Logical))
	case wall == c.last.WallMilli:
		c.tick(c.last.Logical)
	case wall == remote.WallMilli:
		c.last.WallMilli = wall
		c.tick(remote.Logical)
	default:
		c.last = proto.Timestamp{WallMilli: wall, Node: c.node}
	}
	return nil
}

// tick sets the logical counter to after+1 at the current wall time, or
// moves to the next millisecond when the counter would overflow.
func (c *Clock) tick(after uint32) {
	if after == math.MaxUint32 {
		c.last = proto.Timestamp{WallMilli: c.last.WallMilli + 1, Node: c.node}
		return
	}
	c.last = proto.Timestamp{WallMilli: c.last.WallMilli, Logical: after + 1, Node: c.node}
}

// LastWriterWins reports whether a write stamped incoming replaces the one
// stamped current: it must be strictly later. The same write received
// twice does not replace itself, and since timestamps carry the writing
// node, every node picks the same winner whatever the order of arrival.
// A delete is a write too, kept as a tombstone.
func LastWriterWins(current, incoming proto.Timestamp) bool {
	return incoming.Compare(current) > 0
}
