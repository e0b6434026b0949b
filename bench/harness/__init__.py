"""The rig the benchmarks share: servers, load generator, payloads, TLS fronts, report."""
