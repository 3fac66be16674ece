//! The image of the sync Jobs' workers: the operator's own, read from its
//! own Pod. kustomize's `images:` (or Helm's `image.tag`) changes the
//! Deployment's container image but not an environment variable, so a
//! worker image set beside it would stay behind on an upgrade.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;

use super::error::ControllerError;

/// The image when the operator runs outside a Pod (on a laptop, against
/// KUBECONFIG) and none is given.
pub const DEFAULT_WORKER_IMAGE: &str = "ghcr.io/retl/retl:latest";

/// The container of the operator in its Pod.
const CONTAINER: &str = "operator";

/// `configured`, else the image of the operator's own container (`pod` is
/// its namespace and name, from the downward API), else the default.
pub async fn worker_image(client: &Client, configured: Option<&str>, pod: Option<(&str, &str)>) -> Result<String, ControllerError> {
    if let Some(image) = configured.filter(|i| !i.is_empty()) {
        return Ok(image.to_string());
    }
    let Some((ns, name)) = pod else {
        tracing::info!(image = DEFAULT_WORKER_IMAGE, "not in a Pod: workers use the default image (set RETL_WORKER_IMAGE to change it)");
        return Ok(DEFAULT_WORKER_IMAGE.to_string());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let own =
        pods.get(name).await.map_err(|e| ControllerError::OwnPod { pod: format!("{ns}/{name}"), detail: super::secrets::short(&e) })?;
    image_of(&own).ok_or_else(|| ControllerError::OwnPod { pod: format!("{ns}/{name}"), detail: "it has no container image".into() })
}

/// The image of the container named `operator`, or of the only container.
fn image_of(pod: &Pod) -> Option<String> {
    let containers = &pod.spec.as_ref()?.containers;
    let c = containers.iter().find(|c| c.name == CONTAINER).or(if containers.len() == 1 { containers.first() } else { None })?;
    c.image.clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_operator_containers_image() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_yaml_ng::from_str(
            "metadata: {name: p}\nspec:\n  containers:\n  - {name: sidecar, image: proxy:1}\n  - {name: operator, image: ghcr.io/retl/retl:v0.3.1}\n",
        )
        .unwrap();
        assert_eq!(super::image_of(&pod).as_deref(), Some("ghcr.io/retl/retl:v0.3.1"));
        let renamed: k8s_openapi::api::core::v1::Pod =
            serde_yaml_ng::from_str("metadata: {name: p}\nspec:\n  containers:\n  - {name: main, image: retl:2}\n").unwrap();
        assert_eq!(super::image_of(&renamed).as_deref(), Some("retl:2"));
    }
}
