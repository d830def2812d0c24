//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package redistest

// soReusePort is 0 where SO_REUSEPORT is unknown: view listeners do without
// it, and a refusing view cannot reserve its port (see proxy_listen.go).
const soReusePort = 0
