//go:build mips || mipsle || mips64 || mips64le

package redistest

// soReusePort is SO_REUSEPORT, which MIPS numbers differently.
const soReusePort = 0x200
