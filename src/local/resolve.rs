//! Following a Mapping's references to its Model, Source and Destination, and
//! resolving the Secrets they need, as the operator does through the API.

use std::path::PathBuf;

use super::LocalError;
use super::manifests::{Loaded, Manifests};
use crate::api::{Action, Destination, Mapping, Model, SecretKeyRef, Source};
use crate::warehouse::SecretValues;

/// A Mapping with everything it refers to.
pub struct Resolved<'a> {
    pub namespace: String,
    pub mapping: &'a Loaded<Mapping>,
    pub model: &'a Loaded<Model>,
    pub source: &'a Loaded<Source>,
    pub destination: &'a Loaded<Destination>,
    pub action: Action,
    pub secrets: SecretValues,
}

impl Resolved<'_> {
    pub fn mapping_name(&self) -> &str {
        self.mapping.object.metadata.name.as_deref().unwrap_or_default()
    }
    pub fn model_name(&self) -> &str {
        self.model.object.metadata.name.as_deref().unwrap_or_default()
    }
    pub fn source_name(&self) -> &str {
        self.source.object.metadata.name.as_deref().unwrap_or_default()
    }
    pub fn destination_name(&self) -> &str {
        self.destination.object.metadata.name.as_deref().unwrap_or_default()
    }
    /// The Mapping's UID: from its metadata, or (in a local run, where nothing
    /// assigns one) derived from its namespace and name so that its state is
    /// found again on the next run.
    pub fn mapping_uid(&self) -> String {
        self.mapping.object.metadata.uid.clone().unwrap_or_else(|| {
            let name = format!("retl.dev/{}/{}", self.namespace, self.mapping_name());
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
        })
    }
    pub fn source_dir(&self) -> PathBuf {
        self.source.dir.clone()
    }
}

/// Resolves one Mapping's references (never across namespaces).
pub fn resolve<'a>(m: &'a Manifests, namespace: &str, mapping: &'a Loaded<Mapping>) -> Result<Resolved<'a>, LocalError> {
    let mname = mapping.object.metadata.name.clone().unwrap_or_default();
    let missing = |kind: &str, name: &str| LocalError::Reference {
        mapping: mname.clone(),
        message: format!("{kind} {name:?} does not exist in namespace {namespace:?}; create it there (references never cross namespaces)"),
    };
    let key = |name: &str| (namespace.to_string(), name.to_string());
    let spec = &mapping.object.spec;
    let model = m.models.get(&key(&spec.model_ref.name)).ok_or_else(|| missing("Model", &spec.model_ref.name))?;
    let source_name = &model.object.spec.source_ref.name;
    let source = m.sources.get(&key(source_name)).ok_or_else(|| missing("Source", source_name))?;
    let destination =
        m.destinations.get(&key(&spec.destination_ref.name)).ok_or_else(|| missing("Destination", &spec.destination_ref.name))?;
    let action = crate::destination::find_action(&spec.destination_ref.name, &destination.object.spec, &spec.action)
        .map_err(|message| LocalError::Reference { mapping: mname.clone(), message })?;
    let mut refs = crate::warehouse::secret_refs(&source.object.spec);
    refs.extend(crate::destination::secret_refs(&destination.object.spec));
    let mut secrets = SecretValues::new();
    for r in refs {
        let value = secret_value(m, namespace, &r)?;
        secrets.insert((r.name.clone(), r.key.clone()), value);
    }
    Ok(Resolved { namespace: namespace.to_string(), mapping, model, source, destination, action, secrets })
}

/// A Secret key's value: from a Secret manifest, else from the environment
/// variable the reference names (see [`SecretKeyRef::env_var_name`]).
pub fn secret_value(m: &Manifests, namespace: &str, r: &SecretKeyRef) -> Result<String, LocalError> {
    if let Some(secret) = m.secrets.get(&(namespace.to_string(), r.name.clone())) {
        if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(&r.key)) {
            return Ok(v.clone());
        }
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(&r.key)) {
            return String::from_utf8(v.0.clone()).map_err(|_| LocalError::Secret {
                name: r.name.clone(),
                key: r.key.clone(),
                message: "is not UTF-8 text".into(),
            });
        }
    }
    if let Ok(v) = std::env::var(r.env_var_name()) {
        return Ok(v);
    }
    Err(LocalError::Secret {
        name: r.name.clone(),
        key: r.key.clone(),
        message: format!(
            "is not set: add a Secret manifest {:?} with key {:?} in namespace {namespace:?}, or set the environment variable {}",
            r.name,
            r.key,
            r.env_var_name()
        ),
    })
}
