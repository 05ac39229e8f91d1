// Command starling is the Starling MQTT broker.
//
//	starling [-c FILE] [-p PORT] [-v]     serve
//	starling config check FILE            validate a configuration and print it
//	starling passwd [-c] [-b] [-D] ...    manage a password file (as mosquitto_passwd)
//	starling bench ...                    load-test a broker
//	starling ctl [-a ADMIN] cluster status|leave, ctl health
//	starling version
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var err error
	switch {
	case len(args) > 0 && args[0] == "config":
		err = configCmd(args[1:], stdout)
	case len(args) > 0 && args[0] == "bench":
		err = benchCmd(args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "ctl":
		return runCtl(args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "passwd":
		err = passwdCmd(args[1:], stdout, stderr)
	case len(args) > 0 && (args[0] == "version" || args[0] == "--version"):
		fmt.Fprintln(stdout, "starling", version)
	default:
		err = serveCmd(args, stderr)
	}
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintln(stderr, err)
			return 2
		}
		fmt.Fprintln(stderr, "starling:", err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }
