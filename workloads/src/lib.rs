//! Faultline workloads, one module per workload (generator, client, checkers).
//! Empty until `harness run` lands; the `kv` workload will be the first.
