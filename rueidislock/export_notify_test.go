package rueidislock

// QueueKey is queueKey, for the tests of the queue of waiters.
var QueueKey = queueKey

// Waiting returns how many waiters sleep in b's Wait, for tests that must
// act while one does.
func (b *Backend) Waiting() int {
	b.notes.mu.Lock()
	defer b.notes.mu.Unlock()
	n := 0
	for _, w := range b.notes.watches {
		n += len(w.queue)
	}
	return n
}

// RegistrationsKey is registrationsKey, for the tests of hand-overs.
var RegistrationsKey = registrationsKey
