//! Service discovery: a registry of service instances held in the replicated
//! log. An instance registers with a lease (`PUT /registry/{service}/{instance}`)
//! and renews it by registering again; an instance whose lease lapsed is no
//! longer listed. Lease times come from the proposing node's clock inside the
//! command, so every replica applies the same state.

pub mod api;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::kv::KvStore;
use super::Service;
use crate::http::ApiState;

/// One registered instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Where the instance serves (`host:port`).
    pub addr: String,
    /// Its share for the weighted balancer.
    pub weight: u32,
    /// When the last registration was proposed (the proposer's clock, ms).
    pub renewed_ms: u64,
    /// How long a registration lasts.
    pub ttl_ms: u64,
}

impl Entry {
    /// Whether the lease still holds at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        now_ms < self.renewed_ms.saturating_add(self.ttl_ms)
    }
}

/// A registry command.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum RegistryCommand {
    /// Registers or renews an instance.
    RegistryPut {
        /// The service it belongs to.
        service: String,
        /// The instance's id.
        instance: String,
        /// Its address, weight and lease.
        addr: String,
        /// Weight for the weighted balancer.
        weight: u32,
        /// Lease length.
        ttl_ms: u64,
        /// The proposer's clock.
        now_ms: u64,
    },
    /// Removes an instance at once.
    RegistryRemove {
        /// The service.
        service: String,
        /// The instance.
        instance: String,
    },
}

impl RegistryCommand {
    fn owns(command: &Value) -> bool {
        matches!(
            command.get("op").and_then(Value::as_str),
            Some("registry-put" | "registry-remove")
        )
    }
}

/// Every service's instances.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Directory {
    services: BTreeMap<String, BTreeMap<String, Entry>>,
}

impl Directory {
    /// Applies one command.
    pub fn apply(&mut self, cmd: RegistryCommand) -> Value {
        match cmd {
            RegistryCommand::RegistryPut {
                service,
                instance,
                addr,
                weight,
                ttl_ms,
                now_ms,
            } => {
                // Lapsed leases are dropped here, at a time every replica
                // agrees on, so the directory does not grow without bound.
                for instances in self.services.values_mut() {
                    instances.retain(|_, e| e.live(now_ms));
                }
                self.services.retain(|_, i| !i.is_empty());
                let fresh = !self
                    .services
                    .get(&service)
                    .is_some_and(|i| i.contains_key(&instance));
                self.services.entry(service).or_default().insert(
                    instance,
                    Entry {
                        addr,
                        weight,
                        renewed_ms: now_ms,
                        ttl_ms,
                    },
                );
                json!({"ok": true, "new": fresh, "expires_ms": now_ms.saturating_add(ttl_ms)})
            }
            RegistryCommand::RegistryRemove { service, instance } => {
                let removed = self
                    .services
                    .get_mut(&service)
                    .and_then(|i| i.remove(&instance))
                    .is_some();
                self.services.retain(|_, i| !i.is_empty());
                json!({"ok": true, "removed": removed})
            }
        }
    }

    /// The live instances of `service` (every service when `None`) at `now_ms`.
    pub fn live(&self, service: Option<&str>, now_ms: u64) -> Value {
        let mut out = Map::new();
        for (name, instances) in &self.services {
            if service.is_some_and(|s| s != name) {
                continue;
            }
            let list: Vec<Value> = instances
                .iter()
                .filter(|(_, e)| e.live(now_ms))
                .map(|(id, e)| {
                    json!({"instance": id, "addr": e.addr, "weight": e.weight,
                           "expires_in_ms": e.renewed_ms + e.ttl_ms - now_ms})
                })
                .collect();
            if !list.is_empty() {
                out.insert(name.clone(), Value::Array(list));
            }
        }
        Value::Object(out)
    }
}

/// The registry as a service on the log.
#[derive(Debug, Default)]
pub struct RegistryService {
    directory: Directory,
}

impl Service for RegistryService {
    fn owns(&self, command: &Value) -> bool {
        RegistryCommand::owns(command)
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        match serde_json::from_value::<RegistryCommand>(command.clone()) {
            Ok(cmd) => self.directory.apply(cmd),
            Err(e) => json!({"ok": false, "error": format!("not a registry command: {e}")}),
        }
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        let asked = query.get("registry")?;
        let now = query.get("now_ms").and_then(Value::as_u64).unwrap_or(0);
        Some(self.directory.live(asked.as_str(), now))
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert(
            "registry".into(),
            serde_json::to_value(&self.directory).unwrap_or(Value::Null),
        );
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.directory = match snapshot.get("registry") {
            None | Some(Value::Null) => Directory::default(),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| format!("registry snapshot: {e}"))?
            }
        };
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        api::routes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(instance: &str, now_ms: u64, ttl_ms: u64) -> RegistryCommand {
        RegistryCommand::RegistryPut {
            service: "api".into(),
            instance: instance.into(),
            addr: format!("127.0.0.1:{}", 7000 + instance.len()),
            weight: 1,
            ttl_ms,
            now_ms,
        }
    }

    #[test]
    fn leases_lapse_renewals_extend_them_and_removal_is_at_once() {
        let mut d = Directory::default();
        assert_eq!(d.apply(put("a", 1_000, 500))["new"], true);
        d.apply(put("bb", 1_000, 2_000));
        assert_eq!(
            d.live(Some("api"), 1_400)["api"].as_array().unwrap().len(),
            2
        );
        // a's lease lapsed at 1 500; bb's holds.
        let at = d.live(Some("api"), 1_500);
        assert_eq!(at["api"][0]["instance"], "bb");
        assert_eq!(at["api"].as_array().unwrap().len(), 1);
        // A renewal before it lapses keeps it; one after registers it anew.
        assert_eq!(d.apply(put("bb", 2_500, 2_000))["new"], false);
        assert_eq!(d.live(None, 4_000)["api"][0]["expires_in_ms"], 500);
        assert_eq!(d.apply(put("a", 5_000, 500))["new"], true);
        let r = d.apply(RegistryCommand::RegistryRemove {
            service: "api".into(),
            instance: "a".into(),
        });
        assert_eq!(r["removed"], true);
        assert_eq!(d.live(None, 5_001), json!({}));
    }

    #[test]
    fn the_directory_survives_a_snapshot_and_unknown_services_list_nothing() {
        let mut s = RegistryService::default();
        let cmd = serde_json::to_value(put("a", 10, 1_000)).unwrap();
        assert!(s.owns(&cmd));
        s.apply(&cmd, &mut KvStore::default());
        let mut snap = Map::new();
        s.snapshot(&mut snap);
        let mut copy = RegistryService::default();
        copy.restore(&Value::Object(snap)).unwrap();
        let q = json!({"registry": "api", "now_ms": 20});
        assert_eq!(
            copy.query(&q, &KvStore::default()),
            s.query(&q, &KvStore::default())
        );
        let none = json!({"registry": "other", "now_ms": 20});
        assert_eq!(copy.query(&none, &KvStore::default()), Some(json!({})));
        assert!(copy.restore(&json!({"registry": {"services": 3}})).is_err());
    }
}
