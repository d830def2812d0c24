package rueidislock

// ReleaseTimeouts is releaseTimeouts, for the tests' bounds.
const ReleaseTimeouts = releaseTimeouts
