//! Reading the Secret keys a Source or Destination refers to.

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::api::SecretKeyRef;
use crate::api::conditions::reason;
use crate::warehouse::SecretValues;

/// Reads every referenced key; the error (a reason and a message) names the
/// Secret and key, never a value.
pub async fn read(client: &Client, ns: &str, refs: &[SecretKeyRef]) -> Result<SecretValues, (&'static str, String)> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = SecretValues::new();
    for r in refs {
        let not_found = |detail: String| {
            (reason::SECRET_NOT_FOUND, format!("Secret {:?} key {:?}: {detail}; create it in namespace {ns:?}", r.name, r.key))
        };
        let secret = api.get(&r.name).await.map_err(|e| not_found(short(&e)))?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .map(|b| b.0.clone())
            .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(&r.key)).map(|s| s.clone().into_bytes()))
            .ok_or_else(|| not_found("the key is missing".into()))?;
        let value = String::from_utf8(bytes).map_err(|_| not_found("the value is not UTF-8 text".into()))?;
        out.insert((r.name.clone(), r.key.clone()), value);
    }
    Ok(out)
}

/// Why an API call failed, without anything the server echoed back.
pub fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.reason, s.code),
        other => other.to_string(),
    }
}
