package bench

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// Gateway is a reverse proxy on loopback in front of a provider, standing
// in for nginx with proxy_read_timeout: when the provider has not sent its
// response header within ReadTimeout, the gateway answers 504 with nginx's
// HTML page (whether or not the provider executed the request); when the
// provider's connection fails (a reset, a drop), 502. It passes everything
// else through, headers included, and never retries a request.
type Gateway struct {
	*httptest.Server

	transport *http.Transport
	requests  atomic.Int64
	timeouts  atomic.Int64 // 504s
	badGw     atomic.Int64 // 502s
}

// NewGateway starts a Gateway to upstream (a base URL such as
// "http://127.0.0.1:1234"). The caller closes it.
func NewGateway(upstream string, readTimeout time.Duration) (*Gateway, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	g := &Gateway{transport: &http.Transport{
		Proxy:                 nil,
		ResponseHeaderTimeout: readTimeout,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       30 * time.Second,
		DisableCompression:    true,
	}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		Transport:    g.transport,
		ErrorHandler: g.fail,
	}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.requests.Add(1)
		rp.ServeHTTP(w, r)
	}))
	return g, nil
}

// fail answers a request the provider did not answer: 504 when it was too
// slow, else 502, each with the page nginx sends.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var ne net.Error
	switch {
	case r.Context().Err() != nil:
		// The client left first (nginx logs a 499); nobody reads this.
	case errors.As(err, &ne) && ne.Timeout():
		status = http.StatusGatewayTimeout
		g.timeouts.Add(1)
	default:
		g.badGw.Add(1)
	}
	writeNginxError(w, status)
}

// writeNginxError writes nginx's own error page for status.
func writeNginxError(w http.ResponseWriter, status int) {
	title := strconv.Itoa(status) + " " + http.StatusText(status)
	if status == http.StatusGatewayTimeout {
		title = "504 Gateway Time-out" // nginx's spelling
	}
	body := "<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" + title +
		"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	h := w.Header()
	h.Set("Server", "nginx")
	h.Set("Content-Type", "text/html")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// Requests is the number of requests the gateway received.
func (g *Gateway) Requests() int64 { return g.requests.Load() }

// Timeouts is the number of 504s the gateway answered itself.
func (g *Gateway) Timeouts() int64 { return g.timeouts.Load() }

// BadGateways is the number of 502s the gateway answered itself.
func (g *Gateway) BadGateways() int64 { return g.badGw.Load() }

// Close shuts the gateway down and closes its connections to the provider.
func (g *Gateway) Close() {
	g.Server.Close()
	g.transport.CloseIdleConnections()
}
