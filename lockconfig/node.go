package lockconfig

import (
	"errors"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/leaselock/lock"
)

// A node is written in one of three ways, in "connection" (the seed's
// field, which the seed hands to its Redis client) or as an element of
// "nodes":
//
//	"10.0.0.1:6379"                                    host and port
//	"rediss://user:pw@redis.example:6380/2"            a redis:// or rediss:// URL
//	{"host": "10.0.0.1", "port": 6379, "password": …}  the seed's object
//
// The object may also hold a "url" instead of host and port, so that TLS
// files or a password kept out of the URL can go with it.

// parseNodes reads "nodes": an array of at least one node.
func parseNodes(v value) ([]Node, error) {
	elems, err := v.elements()
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, v.bad(`type "redis" needs at least one node`)
	}
	nodes := make([]Node, len(elems))
	for i, e := range elems {
		if nodes[i], err = parseNode(e); err != nil {
			return nil, err
		}
	}
	return nodes, nil
}

// parseNode reads one node, written in any of the three ways.
func parseNode(v value) (Node, error) {
	switch v.kind() {
	case "string":
		s, err := v.str()
		if err != nil {
			return Node{}, err
		}
		if strings.Contains(s, "://") {
			return nodeFromURL(s, v.path)
		}
		return nodeFromHostPort(s, v)
	case "object":
		return nodeFromObject(v)
	}
	return Node{}, v.wrongKind(`"host:port", a redis:// URL or an object`)
}

// nodeFromHostPort reads "host:port".
func nodeFromHostPort(s string, v value) (Node, error) {
	if strings.Contains(s, "@") {
		// user:password@host without a scheme: say so without showing it.
		return Node{}, lock.Invalid(v.path, "(not shown: it may hold a password)", `must be "host:port" or a redis:// URL`)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Node{}, v.bad(`must be "host:port" or a redis:// or rediss:// URL`)
	}
	if err := checkHost(host); err != nil {
		return Node{}, v.bad("the host " + err.Error())
	}
	n := Node{Host: host, path: v.path}
	if n.Port, err = parsePort(port); err != nil {
		return Node{}, v.bad(err.Error())
	}
	return n, nil
}

// parsePort reads a port number in 1..65535.
func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, errPort
	}
	return p, nil
}

var errPort = errors.New("the port must be in 1..65535")

// nodeFromURL reads a redis:// or rediss:// URL. Its password is never
// shown: errors show the URL with the password replaced, or nothing of it
// when it cannot be parsed.
func nodeFromURL(s, path string) (Node, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Node{}, lock.Invalid(path, "(not shown: it may hold a password)", "is not a valid URL")
	}
	shown := u.Redacted()
	bad := func(reason string) (Node, error) {
		return Node{}, lock.Invalid(path, strconv.Quote(shown), reason)
	}
	n := Node{path: path}
	switch u.Scheme {
	case "redis":
	case "rediss":
		n.TLS = &TLS{}
	case "unix":
		return bad("Unix sockets are not supported")
	default:
		return bad("the scheme must be redis:// or rediss://")
	}
	if u.Opaque != "" || u.Fragment != "" || u.RawFragment != "" {
		return bad("is not a valid Redis URL")
	}
	n.Host = u.Hostname()
	n.Port = DefaultPort
	if p := u.Port(); p != "" {
		if n.Port, err = parsePort(p); err != nil {
			return bad(err.Error())
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad(errPort.Error())
	}
	if u.User != nil {
		n.Username = u.User.Username()
		n.Password, _ = u.User.Password()
	}
	db := strings.TrimPrefix(u.Path, "/")
	switch {
	case db == "":
	case strings.Contains(db, "/"):
		return bad("the path must be empty or a database number")
	default:
		if n.DB, err = strconv.Atoi(db); err != nil || n.DB < 0 {
			return bad("the path must be empty or a database number")
		}
	}
	query := u.Query()
	names := slices.Sorted(maps.Keys(query))
	for _, name := range names {
		vals := query[name]
		switch {
		case name == "db" && len(vals) == 1 && db == "":
			if n.DB, err = strconv.Atoi(vals[0]); err != nil || n.DB < 0 {
				return bad("db must be a database number")
			}
		case name == "db":
			return bad("the database is given twice")
		case name == "skip_verify":
			return bad("certificate verification cannot be turned off")
		case name == "addr":
			return bad(`one URL is one node: give each node in "nodes"`)
		default:
			// Other parameters of rueidis.ParseURL tune the client, and
			// some (master_set) change what it connects to: refuse them
			// rather than ignore them.
			return bad("the URL parameter " + strconv.Quote(name) + " is not supported")
		}
	}
	if err := checkHost(n.Host); err != nil {
		return bad("the host " + err.Error())
	}
	return n, nil
}

// nodeFromObject reads the seed's connection object, with this package's
// additions: url, username, tls.
func nodeFromObject(v value) (Node, error) {
	o, err := v.object()
	if err != nil {
		return Node{}, err
	}
	o.hints = connectionHints
	var n Node
	if u, ok := o.take("url"); ok {
		for _, f := range []string{"host", "port"} {
			if o.has(f) {
				hp, _ := o.take(f)
				return Node{}, hp.bad(`give "url" or "host" and "port", not both`)
			}
		}
		s, err := u.str()
		if err != nil {
			return Node{}, err
		}
		if n, err = nodeFromURL(s, u.path); err != nil {
			return Node{}, err
		}
	} else {
		h, ok := o.take("host")
		if !ok {
			return Node{}, lock.Invalid(h.path, none, `is missing: give "host" or "url"`)
		}
		if n.Host, err = h.str(); err != nil {
			return Node{}, err
		}
		if err := checkHost(n.Host); err != nil {
			return Node{}, h.bad(err.Error())
		}
		n.Port = DefaultPort
		if p, ok := o.take("port"); ok {
			if n.Port, err = p.integer(); err != nil {
				return Node{}, err
			}
			if n.Port < 1 || n.Port > 65535 {
				return Node{}, p.bad("must be in 1..65535")
			}
		}
	}
	n.path = v.path

	if u, ok := o.take("username"); ok {
		s, err := u.str()
		if err != nil {
			return Node{}, err
		}
		if n.Username != "" && s != "" {
			return Node{}, u.bad(`the URL gives a username already`)
		}
		if s != "" {
			n.Username = s
		}
	}
	if p, ok := o.take("password"); ok {
		p.secret = true
		s, err := p.str()
		if err != nil {
			return Node{}, err
		}
		if n.Password != "" && s != "" {
			return Node{}, p.bad(`the URL gives a password already`)
		}
		if s != "" {
			n.Password = s
		}
	}
	if d, ok := o.take("db"); ok {
		db, err := d.integer()
		if err != nil {
			return Node{}, err
		}
		if db < 0 {
			return Node{}, d.bad("must not be negative")
		}
		if n.DB != 0 && db != n.DB {
			return Node{}, d.bad("the URL gives another database")
		}
		n.DB = db
	}
	if t, ok := o.take("tls"); ok {
		fromURL := n.TLS != nil
		if n.TLS, err = parseTLS(t); err != nil {
			return Node{}, err
		}
		if fromURL && n.TLS == nil {
			return Node{}, t.bad("the URL is rediss://, which is TLS")
		}
		if o.has("url") && !fromURL && n.TLS != nil {
			return Node{}, t.bad("the URL is redis://, which is plaintext: use rediss://")
		}
	}
	if err := o.rest(); err != nil {
		return Node{}, err
	}
	return n, n.check(v.path)
}

// parseTLS reads "tls": true, false, or an object of file names. It
// returns nil for false.
func parseTLS(v value) (*TLS, error) {
	if v.kind() == "boolean" {
		on, err := v.boolean()
		if err != nil || !on {
			return nil, err
		}
		return &TLS{}, nil
	}
	if v.kind() != "object" {
		return nil, v.wrongKind("true, false or an object")
	}
	o, err := v.object()
	if err != nil {
		return nil, err
	}
	o.hints = tlsHints
	t := &TLS{}
	for _, f := range []struct {
		name string
		to   *string
	}{
		{"caFile", &t.CAFile},
		{"certFile", &t.CertFile},
		{"keyFile", &t.KeyFile},
		{"serverName", &t.ServerName},
	} {
		if fv, ok := o.take(f.name); ok {
			if *f.to, err = fv.str(); err != nil {
				return nil, err
			}
		}
	}
	return t, o.rest()
}
