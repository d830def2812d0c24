// Package lockconfig opens a [lock.Mutex] from a JSON config, such as the
// LOCK_CONFIG environment variable that services of the seed, the npm
// package @leverege/lock, are deployed with. The same value works for Node
// and Go services, which then exclude each other on the same Redis nodes:
//
//	m, err := lockconfig.OpenEnv("myApp") // LOCK_CONFIG={"type":"redis","connection":{"host":"10.0.0.1","port":6379}}
//	if err != nil {
//		return err
//	}
//	defer m.Close() // closes the Redis connections too
//	lease, err := m.AcquireNS(ctx, "job") // the key "myApp:job"
//
// [Parse] and [FromEnv] return a [Config], which a program may also fill by
// hand; [Config.Backend] and [Config.Options] give its parts for
// [lock.New]. A program that wants the seed's fallback when LOCK_CONFIG is
// unset checks for [ErrNotSet].
//
// # The two shapes
//
// Both shapes of the seed are read as they stand, at the top of the value
// or under a "lockConfig" key (beside which only "namespace" may stand, as
// in the seed's create() options; lockConfig may also be a string holding
// the object):
//
//	{"type":"inMemory","retry":0,"delay":100}
//	{"type":"redis","connection":{"host":"127.0.0.1","port":6379},
//	 "lockOptions":{"driftFactor":0.01,"retryCount":0,"retryDelay":200,"retryJitter":100}}
//	{"lockConfig":{"type":"inMemory"},"namespace":"myApp"}
//
// # Fields
//
// A field left out leaves the setting to the options given to [Open], else
// to the default of package lock or rueidislock; the seed's engine had
// defaults of its own (node-redlock: retryCount 10, retryDelay 200,
// retryJitter 100), which are not copied, because a Go Acquire is bounded
// by its context rather than by a count. Durations of the seed's fields are
// milliseconds, as in the seed, or Go duration strings such as "1.5s";
// fields that only Go reads take duration strings only, so that 5000 is
// never read as 5µs.
//
//	field                    type                      default                         origin
//	type                     "inMemory" or "redis"     required                        seed
//	namespace                string                    none; Open's argument wins      seed, create() option
//	retry                    integer, attempts         lock.DefaultRetry (forever)     seed, inMemory only
//	delay                    ms or duration string     lock.DefaultDelay               seed, inMemory only
//	lockOptions.retryCount   integer >= -1, attempts   lock.DefaultRetry (forever)     seed (node-redlock)
//	lockOptions.retryDelay   ms or duration string     lock.DefaultDelay               seed (node-redlock)
//	lockOptions.retryJitter  ms or duration string     lock.DefaultJitter              seed (node-redlock)
//	lockOptions.driftFactor  number in [0, 1)          lock.DefaultDriftFactor         seed (node-redlock)
//	connection               node                      required, or nodes              seed, redis only
//	nodes                    array of nodes            required, or connection         Go, redis only
//	nodeTimeout              duration string           rueidislock.DefaultNodeTimeout  Go, redis only
//	ttl                      duration string           lock.DefaultTTL                 Go (seed: per lock call)
//	autoExtend               boolean                   lock.DefaultAutoExtend          Go
//
// The seed hands "connection" to its Redis client, so a seed config may
// hold that client's options (ioredis and node-redis share host, port,
// password and db); those that would change which keys are locked, or
// weaken TLS, are refused with a reason. lockOptions is read for both
// types (for inMemory, as a Go addition; retry and delay there are the
// seed's own names of retryCount and retryDelay, and only one of each pair
// may be given). A node is
// "host:port", a "redis://" or "rediss://" URL (user, password, and the
// database in the path or as ?db=; other URL parameters are refused), or an
// object:
//
//	field           type                    default                      origin
//	host            string                  required, or url             seed
//	port            integer 1..65535        6379                         seed
//	url             redis:// URL            instead of host and port     Redis client option
//	username        string                  the default user             Redis client option
//	password        string                  no AUTH                      Redis client option
//	db              integer >= 0            0, or the URL's              Redis client option
//	tls             true, false or object   TLS for rediss:// only       Redis client option; Go
//	tls.caFile      PEM file name           the system's roots           Go
//	tls.certFile    PEM file name           none; needs keyFile          Go
//	tls.keyFile     PEM file name           none; needs certFile         Go
//	tls.serverName  string                  the host                     Go
//
// How the seed's fields map: retry and retryCount are attempts after the
// first, as [lock.WithRetry] counts them; a negative retry and a
// retryCount of -1 mean "until the context is done" (node-redlock 5 reads
// -1 as forever, its older redlock.js as "no retry"; a retryCount below -1
// is refused).
// retryJitter becomes [lock.WithJitter], which adds [0, jitter) to each
// wait, as node-redlock documents it; its code spreads waits over delay ±
// jitter, so the mean wait is jitter/2 longer here. The seed's lock(key,
// ttl) took the TTL per call; ttl sets the default of all calls.
//
// # Errors
//
// Unknown fields at any level, a field given twice, a value of the wrong
// type or out of range, "retry" or "delay" under type "redis" (whose
// settings the seed reads from lockOptions), and a bare number where only
// a duration string is read are errors. Every error matches [lock.ErrInvalid] and, as a [*lock.ArgError], names
// the field by its path, such as "lockConfig.lockOptions.retryDelay" or
// "nodes[1].tls.caFile". No error, and no [Config.String], shows a
// password.
//
// Certificate verification cannot be turned off: a lock whose server may
// be anyone excludes no one. Unix sockets, Sentinel, Cluster and other
// client settings are not read; for those, build rueidis clients and call
// rueidislock.New.
package lockconfig
