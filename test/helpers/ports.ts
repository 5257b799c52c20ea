/** Free loopback TCP ports for tests: the benchmarks' helper (below the ephemeral range; see there). */
export { freePort } from '../../bench/ports';
