//! The resource types the server knows: built-ins retl uses, plus every
//! version of every established CustomResourceDefinition.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which hand-written Table a built-in type uses (custom resources use their printer columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinTable {
    Namespace,
    Secret,
    ConfigMap,
    Event,
    Job,
    Lease,
    Crd,
    Generic,
}

/// The parts of a CRD version that change how objects are served.
#[derive(Debug, Clone, Default)]
pub struct CustomInfo {
    /// `openAPIV3Schema` of this version.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns` (raw JSON objects).
    pub printer_columns: Vec<Value>,
    /// `selectableFields[].jsonPath`, e.g. `.status.phase`.
    pub selectable_fields: Vec<String>,
    /// All versions served by the CRD (served objects are stored once, `None` conversion).
    pub crd_name: String,
}

#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained.
    pub has_generation: bool,
    pub table: BuiltinTable,
    pub custom: Option<CustomInfo>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
    /// Objects of every version of a resource share one storage (events of both groups too).
    pub fn storage_key(&self) -> String {
        if self.plural == "events" {
            return "/events".into();
        }
        format!("{}/{}", self.group, self.plural)
    }
    pub fn verbs(&self) -> Vec<&'static str> {
        vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
    /// Whether strategic merge patch is accepted (built-in types only, as kube-apiserver).
    pub fn is_builtin(&self) -> bool {
        self.custom.is_none()
    }
}

fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool, short: &[&str], table: BuiltinTable) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status_subresource: false,
        has_generation: false,
        table,
        custom: None,
    }
}

/// The built-in types served from the start.
pub fn builtins() -> Vec<ResourceType> {
    let mut v = vec![
        builtin("", "v1", "Namespace", "namespaces", false, &["ns"], BuiltinTable::Namespace),
        builtin("", "v1", "Secret", "secrets", true, &[], BuiltinTable::Secret),
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], BuiltinTable::ConfigMap),
        builtin("", "v1", "Event", "events", true, &["ev"], BuiltinTable::Event),
        builtin("events.k8s.io", "v1", "Event", "events", true, &["ev"], BuiltinTable::Event),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true, &[], BuiltinTable::Lease),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            BuiltinTable::Crd,
        ),
        builtin("batch", "v1", "Job", "jobs", true, &[], BuiltinTable::Job),
    ];
    for r in v.iter_mut() {
        match r.plural.as_str() {
            "namespaces" => r.status_subresource = true,
            "customresourcedefinitions" => {
                r.status_subresource = true;
                r.has_generation = true;
                r.categories = vec!["api-extensions".into()];
            }
            "jobs" => {
                r.status_subresource = true;
                r.has_generation = true;
                r.categories = vec!["all".into()];
            }
            _ => {}
        }
    }
    v
}

/// Served types, keyed by (group, version, plural).
#[derive(Debug, Default, Clone)]
pub struct Registry {
    pub types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for t in builtins() {
            r.insert(t);
        }
        r
    }
    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert((t.group.clone(), t.version.clone(), t.plural.clone()), Arc::new(t));
    }
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types.get(&(group.to_string(), version.to_string(), plural.to_string())).cloned()
    }
    /// Removes all versions served by the CRD `crd_name`.
    pub fn remove_crd(&mut self, crd_name: &str) {
        self.types.retain(|_, t| t.custom.as_ref().map(|c| c.crd_name != crd_name).unwrap_or(true));
    }
    /// Any served version of a storage key (used by garbage collection and namespace cleanup).
    pub fn by_storage(&self) -> BTreeMap<String, Arc<ResourceType>> {
        let mut out = BTreeMap::new();
        for t in self.types.values() {
            // prefer the core group for events
            if t.group == "events.k8s.io" {
                continue;
            }
            out.entry(t.storage_key()).or_insert_with(|| t.clone());
        }
        out
    }
    /// The served type for an `apiVersion` + `kind` pair.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types.values().find(|t| t.api_version() == api_version && t.kind == kind).cloned()
    }
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values() {
            let e = g.entry(t.group.clone()).or_default();
            if !e.contains(&t.version) {
                e.push(t.version.clone());
            }
        }
        g
    }
}
