package lockconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"strconv"

	"github.com/leaselock/lock"
)

// config returns the TLS configuration for a node at host, reading the
// files of t; path is the node's, for errors. Verification stays on: a
// lock whose server may be anyone excludes no one.
func (t *TLS) config(host, path string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fileError(path+".tls.caFile", t.CAFile, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, lock.Invalid(path+".tls.caFile", strconv.Quote(t.CAFile), "holds no PEM certificate")
		}
	}
	if t.CertFile != "" { // and KeyFile, as Node.check made sure
		// Name the field of a missing file, which LoadX509KeyPair cannot.
		for _, f := range []struct{ field, file string }{{"certFile", t.CertFile}, {"keyFile", t.KeyFile}} {
			if _, err := os.Stat(f.file); err != nil {
				return nil, fileError(path+".tls."+f.field, f.file, err)
			}
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The message of crypto/tls says what is wrong without
			// quoting the key.
			return nil, lock.Invalid(path+".tls.certFile", strconv.Quote(t.CertFile), "with keyFile "+strconv.Quote(t.KeyFile)+": "+err.Error())
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// fileError names the field and file of a file that cannot be read.
func fileError(field, file string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is shown already
	}
	return lock.Invalid(field, strconv.Quote(file), "cannot be read: "+err.Error())
}
