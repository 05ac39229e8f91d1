package file

import (
	"errors"
	"fmt"
)

// ParseError is a problem on one line of a password or ACL file.
type ParseError struct {
	File string // the name given to the parser, usually the path
	Line int    // 1-based
	Err  error
}

// Error formats the problem as "file:line: message".
func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

// Unwrap returns the underlying problem.
func (e *ParseError) Unwrap() error { return e.Err }

// maxParseErrors bounds how many line errors one parse reports, so a binary
// file given by mistake does not produce a megabyte of errors.
const maxParseErrors = 20

// errorList collects line errors; join returns them as one error.
type errorList struct {
	name string
	errs []error
}

func (l *errorList) add(line int, format string, args ...any) {
	if len(l.errs) == maxParseErrors {
		l.errs = append(l.errs, fmt.Errorf("%s: too many errors", l.name))
	}
	if len(l.errs) > maxParseErrors {
		return
	}
	l.errs = append(l.errs, &ParseError{File: l.name, Line: line, Err: fmt.Errorf(format, args...)})
}

func (l *errorList) join() error { return errors.Join(l.errs...) }
