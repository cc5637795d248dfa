package sqlload

// MaxAutoConnections bounds the connections chosen from the server's CPUs:
// each is a client process beside the agent, and a dump's tables and
// chunks, not connections, bound its parallelism.
const MaxAutoConnections = 8

// AutoConnections is how many connections load a restore into a server
// that reports cpus CPUs (0: it does not say, and 2 are used): two per CPU,
// 4 to MaxAutoConnections. A connection's statements also wait on the
// server's log flushes and page reads, so one per CPU leaves CPUs idle:
// on 2 CPUs, 4 connections loaded the bench in 0.59x the raw restore's
// time against 0.63x with 2, and one 1 GiB table in 0.16x against 0.17x
// (docs/benchmarks.md, decision 59).
func AutoConnections(cpus int) int {
	if cpus <= 0 {
		return 2
	}
	return min(max(2*cpus, 4), MaxAutoConnections)
}
