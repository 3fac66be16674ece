//! Reading retl manifests (and Secrets) from files, the way `kubectl apply -f`
//! would: every `.yaml`/`.yml` file under a directory, multi-document.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::LocalError;
use crate::api::{Destination, Mapping, Model, Source, SyncAlert};

/// An object read from a file, with the directory its relative paths are anchored in.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    pub object: T,
    pub dir: PathBuf,
}

/// Everything read from a directory, by (namespace, name).
#[derive(Default, Debug)]
pub struct Manifests {
    pub sources: BTreeMap<(String, String), Loaded<Source>>,
    pub destinations: BTreeMap<(String, String), Loaded<Destination>>,
    pub models: BTreeMap<(String, String), Loaded<Model>>,
    pub mappings: BTreeMap<(String, String), Loaded<Mapping>>,
    pub alerts: BTreeMap<(String, String), Loaded<SyncAlert>>,
    pub secrets: BTreeMap<(String, String), Secret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

/// The namespace objects without one land in, as with kubectl's default context.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Manifests {
    /// Reads every manifest under `dir` (recursively, in name order).
    pub fn load(dir: &Path) -> Result<Manifests, LocalError> {
        if !dir.is_dir() {
            return Err(LocalError::Manifest {
                file: dir.display().to_string(),
                message: "is not a directory; pass the directory holding your manifests with -f".into(),
            });
        }
        let mut files = Vec::new();
        collect(dir, &mut files)?;
        let mut out = Manifests::default();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| LocalError::Manifest { file: file.display().to_string(), message: e.to_string() })?;
            let base = file.parent().unwrap_or(dir).to_path_buf();
            out.add_text(&text, &file, &base)?;
        }
        Ok(out)
    }

    /// Adds the manifests of one file's text (multi-document YAML); `file`
    /// names it in errors and `base` anchors its relative paths.
    pub fn add_text(&mut self, text: &str, file: &Path, base: &Path) -> Result<(), LocalError> {
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let value = serde_yaml_ng::Value::deserialize(doc)
                .map_err(|e| LocalError::Manifest { file: file.display().to_string(), message: format!("document {}: {e}", i + 1) })?;
            if value.is_null() {
                continue;
            }
            self.add(value, file, base, i + 1)?;
        }
        Ok(())
    }

    fn add(&mut self, value: serde_yaml_ng::Value, file: &Path, base: &Path, doc: usize) -> Result<(), LocalError> {
        let bad = |message: String| LocalError::Manifest { file: format!("{} (document {doc})", file.display()), message };
        let meta: TypeMeta = serde_yaml_ng::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
        let (api_version, kind) = (meta.api_version.unwrap_or_default(), meta.kind.unwrap_or_default());
        let retl = api_version == format!("{}/{}", crate::api::GROUP, crate::api::VERSION);
        if retl {
            let json = serde_json::to_value(&value).map_err(|e| bad(e.to_string()))?;
            let problems = super::strict::schema_problems(&kind, &json);
            if !problems.is_empty() {
                let name = json["metadata"]["name"].as_str().unwrap_or_default();
                return Err(bad(format!("{kind} {name:?}: {}", problems.join("; "))));
            }
        }
        match (retl, kind.as_str()) {
            (true, "Source") => insert(&mut self.sources, value, base).map(drop).map_err(bad),
            (true, "Destination") => insert(&mut self.destinations, value, base).map(drop).map_err(bad),
            (true, "Model") => insert(&mut self.models, value, base).map(drop).map_err(bad),
            (true, "Mapping") => {
                let key = insert(&mut self.mappings, value, base).map_err(bad)?;
                let problems = self.mappings.get(&key).map(|m| super::strict::mapping_problems(&m.object)).unwrap_or_default();
                if problems.is_empty() { Ok(()) } else { Err(bad(format!("Mapping {:?}: {}", key.1, problems.join("; ")))) }
            }
            (true, "SyncAlert") => insert(&mut self.alerts, value, base).map(drop).map_err(bad),
            (true, "Sync") => Ok(()), // history objects: a local run makes its own
            (true, other) => Err(bad(format!("unknown kind {other:?} in {api_version}"))),
            (false, "Secret") if api_version == "v1" => {
                check_secret_data(&value).map_err(bad)?;
                let secret: Secret = serde_yaml_ng::from_value(value).map_err(|e| bad(e.to_string()))?;
                let key = (namespace_of(&secret), secret.metadata.name.clone().unwrap_or_default());
                self.secrets.insert(key, secret);
                Ok(())
            }
            (false, _) if api_version.starts_with("retl.dev/") => {
                Err(bad(format!("apiVersion {api_version} is not served by this retl; use {}/{}", crate::api::GROUP, crate::api::VERSION)))
            }
            _ => Ok(()), // other kinds (Namespace, Kustomization, ...) are not ours
        }
    }
}

fn insert<T>(map: &mut BTreeMap<(String, String), Loaded<T>>, value: serde_yaml_ng::Value, base: &Path) -> Result<(String, String), String>
where
    T: DeserializeOwned + Resource<DynamicType = ()>,
{
    let object: T = serde_yaml_ng::from_value(value).map_err(|e| e.to_string())?;
    let name = object.meta().name.clone().ok_or("metadata.name is missing")?;
    let key = (namespace_of(&object), name.clone());
    if map.contains_key(&key) {
        return Err(format!("{} {name:?} is defined twice in namespace {:?}", T::kind(&()), key.0));
    }
    map.insert(key.clone(), Loaded { object, dir: base.to_path_buf() });
    Ok(key)
}

/// A Secret's `data` holds base64; a plain value there would otherwise fail
/// with a decoder's message that names neither the Secret nor the key.
fn check_secret_data(value: &serde_yaml_ng::Value) -> Result<(), String> {
    use base64::Engine as _;
    let name = value.get("metadata").and_then(|m| m.get("name")).and_then(|n| n.as_str()).unwrap_or_default();
    let Some(data) = value.get("data").and_then(|d| d.as_mapping()) else { return Ok(()) };
    for (k, v) in data {
        let key = k.as_str().unwrap_or_default();
        let text = v.as_str().unwrap_or_default();
        if base64::engine::general_purpose::STANDARD.decode(text.trim()).is_err() {
            return Err(format!(
                "Secret {name:?} key {key:?}: the values under data are base64; encode it (echo -n VALUE | base64) or put the plain text under stringData"
            ));
        }
    }
    Ok(())
}

pub fn namespace_of<T: Resource>(o: &T) -> String {
    o.meta().namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), LocalError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LocalError::Manifest { file: dir.display().to_string(), message: e.to_string() })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, files)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            files.push(p);
        }
    }
    Ok(())
}
