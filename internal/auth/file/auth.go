package file

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/packet"
)

// Options are the mosquitto.conf settings the file backend reads.
type Options struct {
	AllowAnonymous bool   // allow_anonymous
	PasswordFile   string // password_file; "" for none
	ACLFile        string // acl_file; "" for none
}

// Auth authenticates clients against a password file and authorizes them
// against an ACL file, as Mosquitto 2.0 does with per_listener_settings
// false. It is safe for concurrent use; Reload swaps the files' contents
// atomically.
type Auth struct {
	opts     Options
	reloadMu sync.Mutex // serializes Reload, so an older read never replaces a newer one
	state    atomic.Pointer[state]
}

// state is what one load of the files produced; nil fields mean no file.
type state struct {
	passwords *Passwords
	acl       *ACL
}

var (
	_ broker.Authenticator = (*Auth)(nil)
	_ broker.Authorizer    = (*Auth)(nil)
)

// New loads the files named in o.
func New(o Options) (*Auth, error) {
	a := &Auth{opts: o}
	st, err := a.load()
	if err != nil {
		return nil, err
	}
	a.state.Store(st)
	return a, nil
}

func (a *Auth) load() (*state, error) {
	st := &state{}
	var err error
	if a.opts.PasswordFile != "" {
		if st.passwords, err = LoadPasswords(a.opts.PasswordFile); err != nil {
			return nil, err
		}
	}
	if a.opts.ACLFile != "" {
		if st.acl, err = LoadACL(a.opts.ACLFile); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Reload re-reads both files (on SIGHUP). Either both new contents are used
// or, on any error, the old contents are kept and the error returned.
// Clients already connected are not re-checked here; that is the broker's
// decision.
func (a *Auth) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	st, err := a.load()
	if err != nil {
		return err
	}
	a.state.Store(st)
	return nil
}

// Authenticate accepts or refuses a connecting client:
//
//   - without a username: accepted only if AllowAnonymous, else refused
//     with NotAuthorized;
//   - with a username and a password file: accepted only if the file holds
//     the username and the client sent its password; else refused with
//     BadUsernameOrPassword, the same for an unknown user and a wrong
//     password;
//   - with a username and no password file: accepted if AllowAnonymous,
//     else refused with NotAuthorized.
func (a *Auth) Authenticate(_ context.Context, c *broker.ClientInfo) error {
	if !c.HasUsername {
		if a.opts.AllowAnonymous {
			return nil
		}
		return fmt.Errorf("auth/file: anonymous clients are not allowed: %w", packet.NotAuthorized)
	}
	pw := a.state.Load().passwords
	if pw == nil {
		if a.opts.AllowAnonymous {
			return nil
		}
		return fmt.Errorf("auth/file: no password file to check a username against: %w", packet.NotAuthorized)
	}
	// Check runs even without a password so that the refusal takes as
	// long as any other.
	if ok := pw.Check(c.Username, c.Password); ok && c.HasPassword {
		return nil
	}
	return fmt.Errorf("auth/file: unknown username or wrong password: %w", packet.BadUsernameOrPassword)
}

// Authorize reports whether the client may have access to topic. With no
// ACL file everything is allowed; otherwise see ACL.Allowed.
func (a *Auth) Authorize(_ context.Context, c *broker.ClientInfo, topic string, access broker.Access) bool {
	acl := a.state.Load().acl
	if acl == nil {
		return true
	}
	return acl.Allowed(c.ClientID, c.Username, c.HasUsername, topic, access)
}
