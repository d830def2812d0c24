//go:build !(mips || mipsle || mips64 || mips64le)

package redistest

// soReusePort is SO_REUSEPORT, which package syscall does not define on
// Linux (golang.org/x/sys/unix does, but is not a direct dependency).
const soReusePort = 0xf
