package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/starlingmq/starling/internal/auth/file"
)

// passwdCmd manages a password file with mosquitto_passwd's options:
//
//	starling passwd [-H sha512|sha512-pbkdf2] [-c | -D] FILE USER
//	starling passwd [-H ...] [-c] -b FILE USER PASSWORD
func passwdCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("starling passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	create := fs.Bool("c", false, "create a new password file, overwriting an existing one")
	del := fs.Bool("D", false, "delete the user from the file")
	batch := fs.Bool("b", false, "batch mode: take the password from the command line")
	hash := fs.String("H", "sha512-pbkdf2", "hash `type`: sha512 or sha512-pbkdf2")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: starling passwd [-H sha512|sha512-pbkdf2] [-c | -D] FILE USER")
		fmt.Fprintln(stderr, "       starling passwd [-H sha512|sha512-pbkdf2] [-c] -b FILE USER PASSWORD")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	format, err := file.ParseFormat(*hash)
	if err != nil {
		return usageError{err.Error()}
	}
	want := 2
	if *batch {
		want = 3
	}
	if fs.NArg() != want || (*batch && *del) {
		fs.Usage()
		return usageError{"wrong arguments"}
	}
	path, user := fs.Arg(0), fs.Arg(1)
	var password string
	switch {
	case *del:
	case *batch:
		password = fs.Arg(2)
	default:
		password, err = promptPassword(stderr)
		if err != nil {
			return err
		}
	}
	err = file.UpdateFileFormat(path, *create, user, password, *del, format)
	if errors.Is(err, file.ErrUserNotFound) {
		return fmt.Errorf("user %s not in password file %s", user, path)
	}
	return err
}

// promptPassword asks twice without echo on a terminal, or reads one line
// from a pipe.
func promptPassword(stderr io.Writer) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("reading password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fmt.Fprint(stderr, "Password: ")
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Reenter password: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("passwords do not match")
	}
	return string(a), nil
}
