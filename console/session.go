package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/blacktree/blacktree/internal/auth"
)

// cookieName is the session cookie. Its value is the role, the expiry and
// the SHA-256 of the token that logged in, signed with the console's key:
// never the token itself. It is HttpOnly, SameSite=Strict, scoped to
// Prefix, and Secure when the request came over TLS.
const cookieName = "blacktree_console"

// maxTokenField bounds the login form's token.
const maxTokenField = 4096

// session is a logged-in browser.
type session struct {
	role   string // auth.ConsoleAdmin or auth.ConsoleViewer
	cookie string // the cookie's value, which the form key derives from
}

// admin reports whether the session may drain and cancel.
func (s session) admin() bool { return s.role == auth.ConsoleAdmin }

var errBadCookie = errors.New("console: bad session cookie")

func (c *Console) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(payload)
	return m.Sum(nil)
}

// newCookie encodes a session for role, logged in with the token of
// digest, until expires.
func (c *Console) newCookie(role string, digest auth.ConsoleDigest, expires time.Time) string {
	payload := make([]byte, 0, 1+8+len(digest))
	payload = append(payload, roleByte(role))
	payload = binary.BigEndian.AppendUint64(payload, uint64(expires.Unix()))
	payload = append(payload, digest[:]...)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(c.sign(payload))
}

func roleByte(role string) byte {
	if role == auth.ConsoleAdmin {
		return 'a'
	}
	return 'v'
}

// checkCookie returns the session a cookie value stands for: its
// signature must be the console's, it must not have expired, and its
// token must still log in (a rotated token ends its sessions). The role
// is the token's current one.
func (c *Console) checkCookie(value string) (session, error) {
	p, sig, ok := strings.Cut(value, ".")
	if !ok {
		return session{}, errBadCookie
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	mac, err2 := enc.DecodeString(sig)
	if err1 != nil || err2 != nil || len(payload) != 1+8+sha256.Size || !hmac.Equal(mac, c.sign(payload)) {
		return session{}, errBadCookie
	}
	if time.Now().Unix() >= int64(binary.BigEndian.Uint64(payload[1:9])) {
		return session{}, errBadCookie
	}
	var digest auth.ConsoleDigest
	copy(digest[:], payload[9:])
	role := c.cfg.Auth.ConsoleRole(digest)
	if role == "" {
		return session{}, errBadCookie
	}
	return session{role: role, cookie: value}, nil
}

// formKey is the value every form of a session posts back: an HMAC of its
// cookie, which a page of another site cannot know. It guards the
// console's POSTs beyond the cookie's SameSite=Strict.
func (c *Console) formKey(s session) string {
	return base64.RawURLEncoding.EncodeToString(c.sign([]byte("form\x00" + s.cookie)))[:32]
}

func (c *Console) validFormKey(r *http.Request, s session) bool {
	got := r.PostFormValue("form_key")
	return hmac.Equal([]byte(got), []byte(c.formKey(s)))
}

// withSession serves next to logged-in browsers only. Others are sent to
// the login page (a page) or refused with 401 (anything else); either
// way they get no data.
func (c *Console) withSession(next func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(cookieName)
		var s session
		if err == nil {
			s, err = c.checkCookie(ck.Value)
		}
		if err != nil {
			if r.Method == http.MethodGet && !isFragment(r) && !strings.HasSuffix(r.URL.Path, "/log") {
				http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
				return
			}
			http.Error(w, "log in to the console first", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		next(w, r, s)
	}
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.renderLogin(w, http.StatusOK, "")
}

func (c *Console) renderLogin(w http.ResponseWriter, code int, problem string) {
	w.Header().Set("Cache-Control", "no-store")
	c.render(w, code, "login", loginView{
		Title:   "Log in",
		HubID:   c.cfg.HubID,
		Problem: problem,
		Enabled: c.cfg.Auth.ConsoleEnabled(),
	})
}

type loginView struct {
	Title   string
	HubID   string
	Problem string
	Enabled bool
}

// login checks the token from the form and, when it logs in, sets the
// session cookie. The token is never logged, echoed or put in a URL.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenField+1024)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		c.renderLogin(w, http.StatusBadRequest, "Enter the admin token or the console token.")
		return
	}
	role, digest, err := c.cfg.Auth.ConsoleLogin(clientIP(r), token)
	switch {
	case errors.Is(err, auth.ErrConsoleLimited):
		c.renderLogin(w, http.StatusTooManyRequests, "Too many failed logins from this address: wait a minute.")
		return
	case err != nil:
		c.renderLogin(w, http.StatusUnauthorized, "Wrong token.")
		return
	}
	expires := time.Now().Add(c.cfg.SessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    c.newCookie(role, digest, expires),
		Path:     Prefix,
		Expires:  expires,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s session) {
	if !c.validFormKey(r, s) {
		http.Error(w, "stale form: reload the page", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    "",
		Path:     Prefix,
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// clientIP is the peer's IP, for the login failure limit.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
