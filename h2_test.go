package payretry

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// resettingH2 is a hand-made HTTP/2 server over TLS for what httptest cannot
// send: it executes every request it receives, then resets the stream of the
// first one with PROTOCOL_ERROR (after the work was done, as a buggy proxy
// or server may) and answers the later ones 200. Go's HTTP/2 client re-sends
// a request whose stream was reset so whenever it can rewind its body
// (RFC 9113 promises "not processed" only for REFUSED_STREAM).
type resettingH2 struct {
	ln   net.Listener
	pool *x509.CertPool
	wg   sync.WaitGroup

	mu     sync.Mutex
	bodies []string   // the body of every request executed
	conns  []net.Conn // closed at the end, whatever the client left open
	done   bool
}

func newResettingH2(t *testing.T) *resettingH2 {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil) // for its certificate, valid for 127.0.0.1
	ts.StartTLS()
	cert, pool := ts.TLS.Certificates[0], x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	ts.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	require.NoError(t, err)
	s := &resettingH2{ln: ln, pool: pool}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			if s.done {
				c.Close()
			}
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		s.done = true
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *resettingH2) URL() string { return "https://" + s.ln.Addr().String() }

// client returns a transport that trusts the server and speaks HTTP/2.
func (s *resettingH2) client() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool}, ForceAttemptHTTP2: true}
}

func (s *resettingH2) executed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

const (
	h2Data, h2Headers, h2RSTStream, h2Settings, h2Ping, h2GoAway = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
	h2EndStream, h2Ack, h2EndHeaders                             = 0x1, 0x1, 0x4
	h2ProtocolError                                              = 0x1
)

func (s *resettingH2) serve(c net.Conn) {
	defer c.Close()
	preface := make([]byte, len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	var wmu sync.Mutex
	write := func(typ, flags byte, stream uint32, payload []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		hdr := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(hdr[5:], stream)
		c.Write(append(hdr, payload...))
	}
	write(h2Settings, 0, 0, nil)
	bodies := map[uint32]*bytes.Buffer{}
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags, stream := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&0x7fffffff
		payload := make([]byte, n)
		if _, err := io.ReadFull(c, payload); err != nil {
			return
		}
		switch typ {
		case h2Settings:
			if flags&h2Ack == 0 {
				write(h2Settings, h2Ack, 0, nil)
			}
		case h2Ping:
			if flags&h2Ack == 0 {
				write(h2Ping, h2Ack, 0, payload)
			}
		case h2GoAway:
			return
		case h2Headers:
			bodies[stream] = &bytes.Buffer{}
		case h2Data:
			if b := bodies[stream]; b != nil {
				b.Write(payload)
			}
		}
		if (typ == h2Headers || typ == h2Data) && flags&h2EndStream != 0 && bodies[stream] != nil {
			s.mu.Lock()
			s.bodies = append(s.bodies, bodies[stream].String()) // executed
			first := len(s.bodies) == 1
			s.mu.Unlock()
			delete(bodies, stream)
			if first {
				write(h2RSTStream, 0, stream, []byte{0, 0, 0, h2ProtocolError})
			} else {
				write(h2Headers, h2EndHeaders|h2EndStream, stream, []byte{0x88}) // :status 200, HPACK static index 8
			}
		}
	}
}

// Without payretry, net/http's HTTP/2 client itself sends a write twice when
// the server resets its stream with PROTOCOL_ERROR and the body can be
// rewound, and once when it cannot. The hazard payretry must not feed.
func TestH2ResetResendsWhenTheBodyRewinds(t *testing.T) {
	s := newResettingH2(t)
	base := s.client()
	defer base.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, s.URL(), strings.NewReader(`{"amount":1}`)) // has GetBody
	require.NoError(t, err)
	resp, err := base.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Len(t, s.executed(), 2, "executed twice by net/http alone")

	s2 := newResettingH2(t)
	base2 := s2.client()
	defer base2.CloseIdleConnections()
	req, err = http.NewRequest(http.MethodPost, s2.URL(), io.NopCloser(strings.NewReader(`{"amount":1}`)))
	require.NoError(t, err)
	_, err = base2.RoundTrip(req)
	require.Error(t, err)
	assert.Len(t, s2.executed(), 1)
}

// A write without a key reaches the base without a GetBody: the base cannot
// re-send it, so it executes once and its outcome is reported unknown.
func TestH2KeylessWriteIsNeverResentByTheBase(t *testing.T) {
	for _, getBody := range []bool{true, false} {
		t.Run(map[bool]string{true: "caller's GetBody", false: "buffered body"}[getBody], func(t *testing.T) {
			s := newResettingH2(t)
			base := s.client()
			defer base.CloseIdleConnections()
			tr, _ := newTestTransport(t, base, Policy{Name: "nokeys"})
			var body io.Reader = strings.NewReader(`{"amount":1}`)
			if !getBody {
				body = stringsReader(`{"amount":1}`)
			}
			req, err := http.NewRequest(http.MethodPost, s.URL(), body)
			require.NoError(t, err)
			require.Equal(t, getBody, req.GetBody != nil)
			resp, err := tr.RoundTrip(req)
			assert.Nil(t, resp)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.True(t, e.OutcomeUnknown)
			assert.Equal(t, ClassTimeout, e.Class)
			assert.Len(t, s.executed(), 1, "executed once")
		})
	}
}

// A write with a key may be re-sent by the base: it carries the same key,
// which the provider answers from its store. The key here is in the body,
// where the hand-made server can read it.
func TestH2KeyedWriteResentWithTheSameKey(t *testing.T) {
	s := newResettingH2(t)
	base := s.client()
	defer base.CloseIdleConnections()
	tr, _ := newTestTransport(t, base, KeyStone())
	req, err := http.NewRequest(http.MethodPost, s.URL(), strings.NewReader(`{"amount":"1.00"}`))
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	executed := s.executed()
	require.NotEmpty(t, executed)
	keys := map[string]bool{}
	for _, b := range executed {
		var v struct {
			Key string `json:"idempotency_key"`
		}
		require.NoError(t, json.Unmarshal([]byte(b), &v))
		require.NotEmpty(t, v.Key)
		keys[v.Key] = true
	}
	assert.Len(t, keys, 1, "every send carried one key")
	assert.Equal(t, 200, resp.StatusCode)
}
