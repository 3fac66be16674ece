//! The batch/v1 Job that runs one Sync: `retl worker --sync NAMESPACE/NAME`
//! with the operator's own image. Pure: built from the Sync, its Mapping and
//! the operator's settings, unit-tested from YAML.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use std::collections::BTreeMap;

use super::naming;
use crate::api::{Mapping, Sync};

/// Label on a sync's Job and Pod naming the Sync.
pub const SYNC_LABEL: &str = "retl.dev/sync";

/// Operator settings that shape worker Jobs.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Image of the workers: the operator's own.
    pub image: String,
    /// Service account of the workers, unless the Mapping names one.
    pub service_account: String,
    /// Seconds a finished Job is kept (ttlSecondsAfterFinished).
    pub ttl_seconds_after_finished: i32,
}

/// Builds the Job of a Sync.
pub fn build(sync: &Sync, mapping: &Mapping, settings: &WorkerSettings) -> Job {
    let name = sync.metadata.name.clone().unwrap_or_default();
    let namespace = sync.metadata.namespace.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = [
        (SYNC_LABEL.to_string(), naming::job_name(&name)),
        (crate::api::conditions::label::MAPPING.to_string(), naming::label_value(mapping.metadata.name.as_deref().unwrap_or_default())),
        // Counted by the Destination's admission (maxConcurrentSyncs).
        (crate::api::conditions::label::DESTINATION.to_string(), naming::label_value(&mapping.spec.destination_ref.name)),
    ]
    .into();
    let owner = sync.controller_owner_ref(&());
    Job {
        metadata: ObjectMeta {
            name: Some(naming::job_name(&name)),
            namespace: Some(namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // Retries are the engine's business (within the run, and on later syncs).
            backoff_limit: Some(0),
            active_deadline_seconds: Some(mapping.spec.active_deadline_seconds.unwrap_or(crate::api::DEFAULT_ACTIVE_DEADLINE_SECONDS)),
            ttl_seconds_after_finished: Some(settings.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(
                        mapping.spec.service_account_name.clone().unwrap_or_else(|| settings.service_account.clone()),
                    ),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    containers: vec![Container {
                        name: "worker".into(),
                        image: Some(settings.image.clone()),
                        args: Some(vec!["worker".into(), "--sync".into(), format!("{namespace}/{name}")]),
                        env: Some(vec![EnvVar { name: "RETL_LOG_FORMAT".into(), value: Some("json".into()), ..Default::default() }]),
                        security_context: Some(SecurityContext {
                            allow_privilege_escalation: Some(false),
                            read_only_root_filesystem: Some(true),
                            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
                            ..Default::default()
                        }),
                        resources: Some(ResourceRequirements {
                            requests: Some(
                                [("cpu".to_string(), Quantity("100m".into())), ("memory".to_string(), Quantity("128Mi".into()))].into(),
                            ),
                            limits: Some([("memory".to_string(), Quantity("512Mi".into()))].into()),
                            ..Default::default()
                        }),
                        volume_mounts: Some(vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// A Job as the Sync controller keeps it in its cache: its identity,
/// owners and outcome, without its pod template and managed fields (most
/// of its size).
pub fn slim(job: &mut Job) {
    job.metadata.managed_fields = None;
    job.metadata.annotations = None;
    job.spec = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_job_runs_the_worker_safely_and_is_owned_by_its_sync() {
        let sync: Sync = serde_yaml_ng::from_str(
            "apiVersion: retl.dev/v1alpha1\nkind: Sync\nmetadata: {name: users-123, namespace: team-a, uid: u-1}\nspec: {mappingRef: {name: users}}\n",
        )
        .unwrap();
        let mapping: Mapping = serde_yaml_ng::from_str(
            "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {name: users, namespace: team-a}\n\
             spec: {modelRef: {name: m}, destinationRef: {name: d}, action: a, activeDeadlineSeconds: 600}\n",
        )
        .unwrap();
        let settings = WorkerSettings { image: "retl:1".into(), service_account: "retl-worker".into(), ttl_seconds_after_finished: 3600 };
        let job = build(&sync, &mapping, &settings);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.args.as_ref().unwrap(), &vec!["worker".to_string(), "--sync".into(), "team-a/users-123".into()]);
        assert_eq!(c.image.as_deref(), Some("retl:1"));
        assert_eq!(c.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some("retl-worker"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Sync", "users-123", Some(true)));
    }

    #[test]
    fn the_job_of_a_mapping_with_a_253_character_name_has_a_valid_name_and_labels() {
        let long = format!("{}.{}", "m".repeat(60), "n".repeat(192));
        assert_eq!(long.len(), 253);
        let sync_name = naming::requested_sync(&long, "t1");
        let sync: Sync = serde_yaml_ng::from_str(&format!(
            "apiVersion: retl.dev/v1alpha1\nkind: Sync\nmetadata: {{name: {sync_name}, namespace: team-a, uid: u-1}}\nspec: {{mappingRef: {{name: {long}}}}}\n"
        ))
        .unwrap();
        let mapping: Mapping = serde_yaml_ng::from_str(&format!(
            "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {{name: {long}, namespace: team-a}}\n\
             spec: {{modelRef: {{name: m}}, destinationRef: {{name: d}}, action: a}}\n"
        ))
        .unwrap();
        let settings = WorkerSettings { image: "retl:1".into(), service_account: "retl-worker".into(), ttl_seconds_after_finished: 3600 };
        let job = build(&sync, &mapping, &settings);
        let name = job.metadata.name.clone().unwrap();
        assert!(name.len() <= 63, "{name}");
        assert!(naming::is_label_value(&name), "{name}");
        let pod_labels = job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(job.metadata.labels.as_ref(), Some(&pod_labels));
        for (k, v) in &pod_labels {
            assert!(naming::is_label_value(v), "{k}={v}");
        }
        assert_eq!(pod_labels[crate::api::conditions::label::MAPPING], naming::label_value(&long));
        assert_eq!(pod_labels[SYNC_LABEL], name);
    }
}
