"""Benchmarks: fan-out, throughput, failover, election, memory, and the IRC baseline."""
