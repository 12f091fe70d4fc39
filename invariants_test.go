package payretry

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The guarantees that protect money, checked over random sequences of
// outcomes: first on the decision alone, then end to end over loopback
// HTTP, for each preset and for random custom policies.

// choices draws from a fuzzer's bytes, or from a seeded generator when they
// run out.
type choices struct {
	data []byte
	rng  *rand.Rand
}

func (c *choices) intn(n int) int {
	if len(c.data) >= 2 {
		v := int(binary.BigEndian.Uint16(c.data))
		c.data = c.data[2:]
		return v % n
	}
	return c.rng.IntN(n)
}

func (c *choices) flip() bool { return c.intn(2) == 1 }

// randomPolicy returns a preset, or a preset or the generic policy with
// random rules, attempts and hooks.
func randomPolicy(c *choices) Policy {
	bases := []func() Policy{ORZCash, Verto, KeyStone, SmartRetry, keyed,
		func() Policy { return Policy{Name: "nokeys"} }}
	p := bases[c.intn(len(bases))]()
	if c.flip() {
		return p
	}
	p.Name += "-custom"
	p.MaxAttempts = 1 + c.intn(6)
	if p.Rules == nil {
		p.Rules = DefaultRules()
	}
	for range c.intn(4) {
		class := Class(c.intn(numClasses))
		r := Rule{Retry: c.flip() && class != ClassSuccess && class != ClassCanceled}
		if class != ClassTimeout && class != ClassNetwork && class != ClassCanceled {
			r.NewKey = c.flip()
		}
		r.OutcomeUnknown = c.intn(4) == 0
		if c.flip() {
			r.MinWait = time.Duration(c.intn(3)) * time.Second
		}
		p.Rules[class] = r
	}
	if c.flip() {
		p.RefreshAuth = func(r *http.Request) error { r.Header.Set("Authorization", "Bearer new"); return nil }
	}
	return p
}

// TestDecideInvariants runs random outcomes through the decision function
// and checks every guarantee it keeps.
func TestDecideInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for seq := range 3000 {
		c := &choices{rng: rng}
		p := randomPolicy(c)
		tr, err := NewTransport(nil, p)
		require.NoError(t, err)
		s := state{write: c.intn(4) != 0, keyed: c.flip(), replayable: c.intn(5) != 0}
		for s.attempts = 1; s.attempts <= 8; s.attempts++ {
			o := outcome{class: Class(c.intn(numClasses))}
			switch o.class {
			case ClassTimeout, ClassCanceled:
				o.sent = c.intn(4) != 0
			case ClassNetwork:
				o.permanent = c.intn(5) == 0
			default:
				o.status, o.sent = []int{200, 400, 401, 403, 404, 409, 422, 429, 500, 503, 302}[c.intn(11)], true
			}
			o.compliance = c.intn(8) == 0
			o.keyInUse = o.class == ClassConflict && c.flip()
			if o.status != 0 && c.flip() {
				o.retryAfter, o.hasRetryAfter = time.Duration(c.intn(200))*time.Second, true
			}
			b := bounds{left: time.Duration(c.intn(120)) * time.Second, backoff: time.Duration(c.intn(20)) * time.Second,
				budget: c.intn(6) != 0}
			d := tr.decide(s, o, b)
			where := fmt.Sprintf("sequence %d, policy %s, state %+v, outcome %+v, bounds %+v: %+v", seq, p.Name, s, o, b, d)
			rule := tr.rules[o.class]

			switch {
			case o.class == ClassSuccess:
				require.Equal(t, decision{}, d, where)
				continue
			case s.unknown:
				require.True(t, d.unknown, "an unknown outcome stays unknown: "+where)
			case s.write && o.sent && o.status == 0:
				require.True(t, d.unknown, "no answer after the request may have left: "+where)
			}
			if d.unknown {
				require.True(t, s.write, "only a write's outcome matters: "+where)
				require.False(t, d.newKey, "never a new key after an unknown outcome: "+where)
			}
			if !d.retry {
				require.Error(t, d.reason, "a failure that is not retried says why: "+where)
				require.False(t, d.newKey, where)
				require.Zero(t, d.wait, where)
				break
			}
			require.NoError(t, d.reason, where)
			require.True(t, rule.Retry, "only what the rule retries: "+where)
			require.Less(t, s.attempts, tr.p.MaxAttempts, where)
			require.True(t, s.replayable, "never a retry with a body that cannot be replayed: "+where)
			require.True(t, b.budget, where)
			require.False(t, o.compliance, "never a retry of a compliance review: "+where)
			require.False(t, o.permanent, where)
			require.NotEqual(t, ClassCanceled, o.class, where)
			require.LessOrEqual(t, d.wait, b.left, "no wait past the time left: "+where)
			if o.hasRetryAfter {
				require.LessOrEqual(t, o.retryAfter, tr.p.MaxRetryAfter, where)
				require.GreaterOrEqual(t, d.wait, o.retryAfter, "never shorter than the provider asks: "+where)
			}
			require.GreaterOrEqual(t, d.wait, rule.MinWait, where)
			if s.write && !s.keyed {
				require.True(t, !o.sent || o.class == ClassUnauthorized,
					"a write without a key is sent again only when it did not execute: "+where)
			}
			if d.newKey {
				require.True(t, rule.NewKey && s.keyed && o.status != 0, where)
			}
			s.unknown = d.unknown
			if d.refresh {
				s.refreshed = true
			}
		}
	}
}

// An action is what one attempt meets: refused before it leaves, a reset or
// a stall after the server read it, or an answer.
type action struct {
	refuse, reset, stall bool
	status               int
	body                 string
	header               []string
}

func (a action) String() string {
	switch {
	case a.refuse:
		return "refused"
	case a.reset:
		return "reset"
	case a.stall:
		return "stall"
	}
	return fmt.Sprintf("%d %s %v", a.status, a.body, a.header)
}

var answers = []action{
	{status: 200, body: `{"id":"p1"}`}, {status: 201, body: `{"id":"p1"}`},
	{status: 400, body: `{"code":"BAD","errorCode":"VALIDATION_ERROR","detail":"bad"}`},
	{status: 401, body: `{"detail":"Invalid or expired JWT"}`},
	{status: 403, body: `{"errorCode":"ROUTE_NOT_AVAILABLE"}`},
	{status: 404, body: `{"detail":"not found"}`},
	{status: 409, body: `{"code":"IDEMPOTENCY_CONFLICT","detail":"Request with this idempotency key is in progress"}`},
	{status: 409, body: `{"detail":"Settlement is not awaiting a compliance decision"}`},
	{status: 409, body: `{"errorCode":"RFI_REQUIRED","message":"compliance review open"}`},
	{status: 422, body: `{"detail":[{"loc":["body","amount"],"msg":"Field required"}]}`},
	{status: 429, body: `{"reason_code":"RATE_LIMIT_EXCEEDED"}`, header: []string{"Retry-After", "1"}},
	{status: 429, body: `{"code":"RATE","message":"slow"}`, header: []string{"Retry-After", "4294967296"}},
	{status: 500, body: `{"code":"E500","message":"internal"}`},
	{status: 500, body: ``},
	{status: 502, body: `<html>502 Bad Gateway</html>`},
	{status: 503, body: `{"code":"E503","message":"unavailable"}`, header: []string{"Retry-After", "2"}},
	{status: 504, body: `<html>gateway time-out</html>`},
	{status: 524, body: `<html>A timeout occurred</html>`},
	{status: 503, body: `{"reason_code":"COMPLIANCE_HOLD"}`},
	{status: 200, header: []string{"X-RateLimit-Limit", "0"}},
}

func randomActions(c *choices) []action {
	acts := make([]action, 8)
	for i := range acts {
		switch k := c.intn(20); {
		case k == 0:
			acts[i] = action{refuse: true}
		case k == 1:
			acts[i] = action{reset: true}
		case k == 2:
			acts[i] = action{stall: true}
		default:
			acts[i] = answers[c.intn(len(answers))]
		}
	}
	return acts
}

// stage serves a sequence of actions, one per attempt: the dialer (keep-alives
// off, so each attempt dials) takes the next action, refuses it or tags the
// connection with it, and the server plays it. Each refusal and each request
// received is logged, in order. A dial may outlive the attempt that started
// it (net/http keeps dialing after the attempt's context ends), so refusals
// are not attempts one for one: the checks read the requests received.
type stage struct {
	id     string // on every request of this stage's call: a port the OS reuses may bring another's
	srv    *httptest.Server
	closed string
	acts   []action
	mu     sync.Mutex
	next   int
	byConn map[string]int
	log    []event
}

// event is an attempt as the provider's side saw it.
type event struct {
	act       int // index in acts
	key, body string
	refused   bool
}

func newStage(t *testing.T, acts []action) *stage {
	st := &stage{id: fmt.Sprint(rand.Uint64()), acts: acts, byConn: map[string]int{}, closed: closedPort(t)}
	st.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Stage") != st.id {
			w.WriteHeader(http.StatusTeapot) // not this stage's call
			return
		}
		body, _ := io.ReadAll(r.Body)
		st.mu.Lock()
		i := st.byConn[r.RemoteAddr]
		st.log = append(st.log, event{act: i, key: r.Header.Get("Idempotency-Key"), body: string(body)})
		st.mu.Unlock()
		a := st.acts[i]
		switch {
		case a.reset:
			reset(w, r)
		case a.stall:
			<-r.Context().Done()
		default:
			for j := 0; j+1 < len(a.header); j += 2 {
				w.Header().Set(a.header[j], a.header[j+1])
			}
			w.WriteHeader(a.status)
			io.WriteString(w, a.body)
		}
	}))
	t.Cleanup(st.srv.Close)
	return st
}

func (st *stage) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	st.mu.Lock()
	i := st.next % len(st.acts)
	st.next++
	if st.acts[i].refuse {
		st.log = append(st.log, event{act: i, refused: true})
	}
	st.mu.Unlock()
	d := net.Dialer{}
	if st.acts[i].refuse {
		return d.DialContext(ctx, network, st.closed)
	}
	conn, err := d.DialContext(ctx, network, addr)
	if err == nil {
		st.mu.Lock()
		st.byConn[conn.LocalAddr().String()] = i
		st.mu.Unlock()
	}
	return conn, err
}

// checkSequence sends one payment through a random policy against a random
// sequence of actions and checks the guarantees on what the server saw.
func checkSequence(t *testing.T, c *choices) {
	p := randomPolicy(c)
	acts := randomActions(c)
	method := []string{http.MethodPost, http.MethodPost, http.MethodPut, http.MethodGet}[c.intn(4)]
	callerKey := c.intn(4) == 0
	st := newStage(t, acts)
	base := &http.Transport{DialContext: st.dial, DisableKeepAlives: true}
	defer base.CloseIdleConnections()
	p.AttemptTimeout = 100 * time.Millisecond
	var attempts []Attempt
	p.OnAttempt = func(a Attempt) { attempts = append(attempts, a) }
	tr, clk := newTestTransport(t, base, p)

	body := `{"reference":"r1","amount":1000}`
	if method == http.MethodGet {
		body = ""
	}
	req, err := http.NewRequest(method, st.srv.URL+"/v1/payments/sale", stringsReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer old")
	req.Header.Set("X-Stage", st.id)
	if callerKey {
		req.Header.Set("Idempotency-Key", "caller-key-1")
	}
	before := req.Header.Clone()
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		defer resp.Body.Close()
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	var seen []string
	for _, a := range attempts {
		seen = append(seen, fmt.Sprintf("%d:%v/%d retry=%v reason=%v", a.Number, a.Class, a.StatusCode, a.Retry, a.Reason))
	}
	where := fmt.Sprintf("policy %s %s, caller key %v, provider saw %v, attempts %v, error %v: ",
		p.Name, method, callerKey, describe(acts, st.log), seen, err)
	require.LessOrEqual(t, len(attempts), tr.p.MaxAttempts, where+"at most MaxAttempts")
	var received []event
	for _, e := range st.log {
		if !e.refused {
			received = append(received, e)
		}
	}
	// net/http may send a request again on its own (a GET, or a request
	// with a key, on a connection it saw fail): every request the provider
	// received must carry the key of an attempt payretry reported.
	sentKeys := map[string]bool{}
	for _, a := range attempts {
		sentKeys[a.IdempotencyKey] = true
	}
	require.Equal(t, before, req.Header, where+"the caller's request is never modified")
	require.Equal(t, st.srv.URL+"/v1/payments/sale", req.URL.String(), where)

	write := method != http.MethodGet
	field := tr.p.IdempotencyField
	key := func(e event) string {
		if field != "" {
			var v map[string]any
			json.Unmarshal([]byte(e.body), &v)
			if k, ok := v[field]; ok {
				return fmt.Sprint(k)
			}
			return ""
		}
		return e.key
	}
	// The caller's Idempotency-Key header is a key unless the policy reads
	// its key from the body (KeyStone): then the provider ignores it.
	keyed := callerKey && field == "" || len(received) > 0 && write && key(received[0]) != ""
	unknown, pinned, sentBody := false, "", ""
	for i, e := range received {
		a := acts[e.act]
		b := e.body
		if field != "" {
			b = stripField(b, field)
		}
		if sentBody != "" {
			require.Equal(t, sentBody, b, where+"every attempt sends the same body")
		}
		sentBody = b
		require.True(t, !write || sentKeys[key(e)], where+"every request is an attempt's")
		if pinned != "" {
			require.Equal(t, pinned, key(e), where+"never a new key after an unknown outcome")
		}
		if i+1 < len(received) {
			require.False(t, write && !keyed && a.status != 401,
				where+"a write without a key is sent again only when it did not execute")
		}
		if write && leavesUnknownOnTheWire(tr, a, keyed) {
			unknown = true
			if pinned == "" {
				pinned = key(e)
			}
		}
	}
	for _, a := range attempts[:max(0, len(attempts)-1)] {
		require.False(t, isCompliance(a.Code, ""), where+"never a retry after a compliance review")
	}
	if write && unknown {
		if err != nil {
			var e *Error
			require.ErrorAs(t, err, &e, where)
			require.True(t, e.OutcomeUnknown, where+"reported unknown")
		} else if !success(resp.StatusCode) {
			var e *Error
			require.ErrorAs(t, CheckResponse(resp), &e, where)
			require.True(t, e.OutcomeUnknown, where+"reported unknown")
		}
	}
	if err == nil {
		require.NotEmpty(t, attempts, where)
		require.Equal(t, attempts[len(attempts)-1].StatusCode, resp.StatusCode, where+"the final attempt's answer is returned")
	}
	var waited time.Duration
	for _, w := range clk.Waits() {
		waited += w
	}
	require.LessOrEqual(t, waited, tr.p.MaxElapsedTime, where+"waits within MaxElapsedTime")
}

// leavesUnknownOnTheWire says, from the outside, whether an action leaves a
// write's outcome unknown: no answer after the request may have left; a 5xx
// that the provider does not store as the key's answer (the policy declares
// that with NewKey, and with Stored which answers are its own); a 409 saying
// the key is in use.
func leavesUnknownOnTheWire(tr *Transport, a action, keyed bool) bool {
	code, msg := decodeError([]byte(a.body))
	switch {
	case a.reset || a.stall:
		return true
	case a.status >= 500:
		resp := &http.Response{StatusCode: a.status, Body: io.NopCloser(strings.NewReader(a.body))}
		return !(tr.rules[ClassServerError].NewKey && (tr.p.Stored == nil || tr.p.Stored(resp)))
	case a.status == 409:
		return keyed && keyInUse(code, msg)
	}
	return false
}

func describe(acts []action, log []event) []string {
	var out []string
	for _, e := range log {
		out = append(out, acts[e.act].String())
	}
	return out
}

func stripField(body, field string) string {
	var v map[string]json.RawMessage
	if json.Unmarshal([]byte(body), &v) != nil {
		return body
	}
	delete(v, field)
	b, _ := json.Marshal(v)
	return string(b)
}

// TestTransportInvariants checks random sequences end to end.
func TestTransportInvariants(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 60
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range n {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkSequence(t, &choices{rng: rng}) })
	}
}

// FuzzTransportInvariants lets the fuzzer choose the sequences:
// go test -fuzz FuzzTransportInvariants -run '^$'.
func FuzzTransportInvariants(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 1, 0, 2})
	f.Add([]byte("orzcash: time-out, then 429"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSequence(t, &choices{data: data, rng: rand.New(rand.NewPCG(uint64(len(data)), 5))})
	})
}
