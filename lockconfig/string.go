package lockconfig

import (
	"encoding/json"
	"net/url"
	"strconv"
	"time"
)

// hidden replaces passwords in the text of a Config or Node.
const hidden = "xxxxx"

// String returns c as JSON in the form Parse reads, with every field that
// c sets and passwords replaced by "xxxxx", for logs. Parse reads it back
// to the same Config, passwords aside.
func (c Config) String() string {
	type tlsJSON struct {
		CAFile     string `json:"caFile,omitempty"`
		CertFile   string `json:"certFile,omitempty"`
		KeyFile    string `json:"keyFile,omitempty"`
		ServerName string `json:"serverName,omitempty"`
	}
	type nodeJSON struct {
		Host     string   `json:"host"`
		Port     int      `json:"port"`
		Username string   `json:"username,omitempty"`
		Password string   `json:"password,omitempty"`
		DB       int      `json:"db,omitempty"`
		TLS      *tlsJSON `json:"tls,omitempty"`
	}
	type lockOptionsJSON struct {
		DriftFactor *float64 `json:"driftFactor,omitempty"`
		RetryCount  *int     `json:"retryCount,omitempty"`
		RetryDelay  *string  `json:"retryDelay,omitempty"`
		RetryJitter *string  `json:"retryJitter,omitempty"`
	}
	out := struct {
		Type        string           `json:"type"`
		Namespace   string           `json:"namespace,omitempty"`
		Nodes       []nodeJSON       `json:"nodes,omitempty"`
		NodeTimeout string           `json:"nodeTimeout,omitempty"`
		TTL         string           `json:"ttl,omitempty"`
		AutoExtend  *bool            `json:"autoExtend,omitempty"`
		LockOptions *lockOptionsJSON `json:"lockOptions,omitempty"`
	}{Type: c.Type, Namespace: c.Namespace, AutoExtend: c.AutoExtend}

	for _, n := range c.Nodes {
		nj := nodeJSON{Host: n.Host, Port: n.Port, Username: n.Username, DB: n.DB}
		if nj.Port == 0 {
			nj.Port = DefaultPort
		}
		if n.Password != "" {
			nj.Password = hidden
		}
		if t := n.TLS; t != nil {
			nj.TLS = &tlsJSON{t.CAFile, t.CertFile, t.KeyFile, t.ServerName}
		}
		out.Nodes = append(out.Nodes, nj)
	}
	if c.NodeTimeout != 0 {
		out.NodeTimeout = c.NodeTimeout.String()
	}
	if c.TTL != 0 {
		out.TTL = c.TTL.String()
	}
	// Durations as strings, exact to the nanosecond, which whole
	// milliseconds are not.
	str := func(d *time.Duration) *string {
		if d == nil {
			return nil
		}
		s := d.String()
		return &s
	}
	lo := lockOptionsJSON{DriftFactor: c.DriftFactor, RetryDelay: str(c.Delay), RetryJitter: str(c.Jitter)}
	if c.Retry != nil {
		// Every negative count means the same; lockOptions.retryCount
		// spells it -1.
		r := max(*c.Retry, -1)
		lo.RetryCount = &r
	}
	if lo != (lockOptionsJSON{}) {
		out.LockOptions = &lo
	}
	b, err := json.Marshal(out)
	if err != nil {
		// Only a NaN or infinite DriftFactor, which no parsed Config has.
		return `{"type":` + strconv.Quote(c.Type) + `,"error":` + strconv.Quote(err.Error()) + `}`
	}
	return string(b)
}

// String returns n as a redis:// or rediss:// URL, with the password
// replaced by "xxxxx" and without the TLS files, for logs.
func (n Node) String() string {
	u := url.URL{Scheme: "redis", Host: n.addr()}
	if n.TLS != nil {
		u.Scheme = "rediss"
	}
	switch {
	case n.Password != "":
		u.User = url.UserPassword(n.Username, hidden)
	case n.Username != "":
		u.User = url.User(n.Username)
	}
	if n.DB != 0 {
		u.Path = "/" + strconv.Itoa(n.DB)
	}
	return u.String()
}
