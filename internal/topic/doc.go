// Package topic owns MQTT topic names and topic filters: their validation
// (ValidName, ValidFilter), shared-subscription parsing ($share/{group}/ and
// $queue/, see ParseShared), the matching rule including the '$' rule for
// $SYS-style topics (Match, IsSys), the subscription index from filters to
// subscribers (Trie) and the reverse index of retained-message names that a
// filter is matched against on SUBSCRIBE (Names).
//
// It is pure: no goroutines, no I/O, no clocks, no logging. Its indexes are
// not safe for concurrent use; the broker guards them with a sync.RWMutex,
// and the read-only methods (Match, Get, Len, Walk) never modify an index, so
// they may run concurrently with each other under a read lock.
//
// It must not import any other Starling package; only the standard library.
package topic
