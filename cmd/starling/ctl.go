package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/starlingmq/starling/internal/admin"
)

// Defaults of `starling ctl`.
const (
	ctlEnvAdmin     = "STARLING_ADMIN"
	ctlDefaultAdmin = "http://127.0.0.1:8081"
	// ctlTimeout bounds a status or health request; a leave hands a node's
	// sessions over and may take longer.
	ctlTimeout      = 10 * time.Second
	ctlLeaveTimeout = 2 * time.Minute
	// ctlMaxBody bounds what ctl reads of an answer.
	ctlMaxBody = 4 << 20
)

const ctlUsage = `usage: starling ctl [-a URL] cluster status [-json]
       starling ctl [-a URL] cluster leave
       starling ctl [-a URL] health
-a is the node's admin URL or host:port (default $` + ctlEnvAdmin + `, else ` + ctlDefaultAdmin + `)`

// runCtl implements `starling ctl`, a client of a node's admin endpoint,
// and returns the exit code: 0 done, 1 failed, 2 bad command line.
func runCtl(args []string, stdout, stderr io.Writer) int {
	err := ctlCmd(args, os.Getenv(ctlEnvAdmin), stdout)
	if err == nil {
		return 0
	}
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintln(stderr, err)
		return 2
	}
	fmt.Fprintln(stderr, "starling ctl:", err)
	return 1
}

// ctlCmd runs one ctl command; envAdmin is $STARLING_ADMIN.
func ctlCmd(args []string, envAdmin string, stdout io.Writer) error {
	fs := flag.NewFlagSet("starling ctl", flag.ContinueOnError)
	// The flag package's own messages are folded into the usageError, so
	// the usage is printed once.
	fs.SetOutput(io.Discard)
	def := envAdmin
	if def == "" {
		def = ctlDefaultAdmin
	}
	addr := fs.String("a", def, "admin `URL` or host:port of the node")
	if err := fs.Parse(args); err != nil {
		return ctlUsageError(err)
	}
	base, err := adminURL(*addr)
	if err != nil {
		return usageError{fmt.Sprintf("starling ctl: -a %q: %v\n%s", *addr, err, ctlUsage)}
	}
	// A transport of its own, without $HTTP_PROXY: the admin endpoint is
	// reached directly, and its idle connections end with the command.
	c := &ctlClient{base: base, http: &http.Client{Transport: &http.Transport{}}}
	defer c.http.CloseIdleConnections()

	rest := fs.Args()
	switch {
	case len(rest) == 1 && rest[0] == "health":
		return c.health(stdout)
	case len(rest) >= 2 && rest[0] == "cluster" && rest[1] == "status":
		sfs := flag.NewFlagSet("starling ctl cluster status", flag.ContinueOnError)
		sfs.SetOutput(io.Discard)
		asJSON := sfs.Bool("json", false, "print the status as JSON")
		if err := sfs.Parse(rest[2:]); err != nil {
			return ctlUsageError(err)
		}
		if sfs.NArg() != 0 {
			return usageError{ctlUsage}
		}
		return c.status(stdout, *asJSON)
	case len(rest) == 2 && rest[0] == "cluster" && rest[1] == "leave":
		return c.leave(stdout)
	}
	return usageError{ctlUsage}
}

// ctlUsageError is the usage, after the flag package's complaint unless
// help was asked for.
func ctlUsageError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return usageError{ctlUsage}
	}
	return usageError{"starling ctl: " + err.Error() + "\n" + ctlUsage}
}

// adminURL turns "host:port" or "http(s)://host:port[/prefix]" into a base
// URL without a trailing slash.
func adminURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty address")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("no host")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// ctlClient talks to one admin server.
type ctlClient struct {
	base string
	http *http.Client
}

// do sends one request and returns the status code and body. Only a
// transport failure is an error.
func (c *ctlClient) do(method, path string, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The url.Error repeats the URL: keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, fmt.Errorf("cannot reach admin server at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, ctlMaxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading answer: %w", method, c.base+path, err)
	}
	return resp.StatusCode, body, nil
}

// httpError describes a non-2xx answer, with the server's JSON "error"
// when it sent one.
func httpError(code int, body []byte) error {
	msg := strings.TrimSpace(string(body))
	var e admin.LeaveResult
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		return fmt.Errorf("admin server answered %d %s", code, http.StatusText(code))
	}
	return fmt.Errorf("admin server answered %d %s: %s", code, http.StatusText(code), msg)
}

func (c *ctlClient) health(stdout io.Writer) error {
	code, body, err := c.do(http.MethodGet, admin.PathHealth, ctlTimeout)
	if err != nil {
		return err
	}
	stdout.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	if code != http.StatusOK {
		return fmt.Errorf("unhealthy: %d %s", code, http.StatusText(code))
	}
	return nil
}

func (c *ctlClient) status(stdout io.Writer, asJSON bool) error {
	code, body, err := c.do(http.MethodGet, admin.PathStatus, ctlTimeout)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return httpError(code, body)
	}
	if asJSON {
		// Passed through, re-indented: fields this ctl does not know
		// survive.
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return fmt.Errorf("admin server sent invalid JSON: %w", err)
		}
		out.WriteByte('\n')
		_, err := stdout.Write(out.Bytes())
		return err
	}
	var st admin.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("admin server sent invalid JSON: %w", err)
	}
	return printStatus(stdout, &st)
}

// printStatus writes st as a summary and a table of members.
func printStatus(w io.Writer, st *admin.ClusterStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "node:\t%s\n", st.Node)
	fmt.Fprintf(tw, "serving:\t%s\n", yesNo(st.Serving))
	fmt.Fprintf(tw, "clustered:\t%s\n", yesNo(st.Clustered))
	r := st.Registry
	fmt.Fprintf(tw, "registry:\t%s, leader %s, last index %d, %d sessions\n",
		dash(r.State), dash(r.Leader), r.LastIndex, r.Sessions)
	fmt.Fprintf(tw, "voters:\t%s\n", dash(strings.Join(r.Voters, ", ")))
	fmt.Fprintf(tw, "non-voters:\t%s\n", dash(strings.Join(r.NonVoters, ", ")))
	fmt.Fprintf(tw, "here:\t%d clients, %d sessions, %d retained, %d remote routes\n",
		st.Clients, st.Sessions, st.Retained, st.Routes)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Members) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDR\tSTATE\tLINK\tRTT\tVOTER\tLEADER\tSINCE")
	for _, m := range st.Members {
		rtt := "-"
		if m.Link != admin.LinkSelf && m.RTTMillis > 0 {
			rtt = fmt.Sprintf("%.1fms", m.RTTMillis)
		}
		since := "-"
		if !m.Since.IsZero() {
			since = m.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			m.Name, dash(m.Addr), dash(m.State), dash(m.Link), rtt, mark(m.Voter), mark(m.Leader), since)
	}
	return tw.Flush()
}

func (c *ctlClient) leave(stdout io.Writer) error {
	code, body, err := c.do(http.MethodPost, admin.PathLeave, ctlLeaveTimeout)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("leave failed: %w", httpError(code, body))
	}
	fmt.Fprintf(stdout, "%s: left the cluster\n", c.base)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func mark(b bool) string {
	if b {
		return "*"
	}
	return "-"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
