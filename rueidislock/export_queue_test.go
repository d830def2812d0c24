package rueidislock

// QueueKey is queueKey, for the tests of the queue of waiters.
var QueueKey = queueKey
