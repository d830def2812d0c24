package lock

// The negative controls of RELIABILITY.md §6 (H7) that break this package;
// see mutants for what each does.
const (
	M1NoValidityMath = "M1" // deadline = grant + TTL: no drift, elapsed not subtracted
	M6LateRenewal    = "M6" // renewal not bounded by the validity; the deadline waits for it
	M9ReleaseFirst   = "M9" // Release frees the key before cancelling the context
)

// SetMutant breaks m as mutant, one of the constants above, says. Call it
// before m is used.
func SetMutant(m *Mutex, mutant string) {
	switch mutant {
	case M1NoValidityMath:
		m.mutants.noValidityMath = true
	case M6LateRenewal:
		m.mutants.lateRenewal = true
	case M9ReleaseFirst:
		m.mutants.releaseFirst = true
	default:
		panic("lock: no mutant " + mutant)
	}
}
