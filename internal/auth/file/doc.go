// Package file implements Mosquitto's file-based security: the password_file
// written by mosquitto_passwd ("$6$" salted SHA-512 and "$7$" PBKDF2-SHA512
// hashes) and the acl_file (user, topic and pattern lines), behind the
// broker's Authenticator and Authorizer interfaces.
//
// It owns parsing, hashing, verification and the editing of password files
// for `starling passwd`. Semantics follow Mosquitto 2.0 (checked against the
// real mosquitto 2.0.11 broker and mosquitto_passwd in the tests), with the
// differences listed on ACL.Allowed and ParsePasswords.
//
// It imports only the standard library and internal/broker and
// internal/packet; it must not import store, cluster, config or anything
// that does I/O beyond reading and writing its own files.
package file
