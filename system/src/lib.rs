//! The Faultline reference system: the node binary and its distributed-systems
//! patterns (Raft KV first). Empty until the Raft issue lands; it depends on none
//! of the harness crates, so the system under test knows nothing of its tester.
