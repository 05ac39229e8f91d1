// Package config reads Mosquitto's configuration syntax (mosquitto.conf(5))
// into a typed Config: `key value` lines, `#` comments, `listener` and
// `connection` lines opening their own sections, and include_dir. Starling's
// own keys (cluster_*, proxy_protocol, log_level, ...) use the same style.
//
// Parse reports every problem of a file at once, each naming its file and
// line; Validate adds the cross-field checks; String prints the effective
// settings back in the same syntax, so that parsing String's output gives an
// equal Config.
//
// Keys that belong to work not done yet (bridges, auth plugins, persistence,
// cluster) are recognised, kept (bridge, plugin and cluster lines verbatim as
// Directives) and reported in Config.Warnings rather than rejected.
//
// It owns no goroutines and must not import any other Starling package.
package config
