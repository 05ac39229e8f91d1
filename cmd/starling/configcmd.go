package main

import (
	"fmt"
	"io"

	"github.com/starlingmq/starling/internal/config"
)

// configCmd implements `starling config check FILE`: parse, validate and
// print the effective settings.
func configCmd(args []string, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		return usageError{"usage: starling config check FILE"}
	}
	cfg, err := config.Load(args[1])
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "# warning:", w)
	}
	fmt.Fprint(stdout, cfg.Redacted())
	fmt.Fprintf(stdout, "# %s: configuration OK\n", args[1])
	return nil
}
