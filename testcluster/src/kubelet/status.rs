//! Pod status as a kubelet writes it: phase, conditions, IPs and one
//! status per container, sent as a strategic merge patch (conditions merge
//! by type, so the scheduler's PodScheduled stays).

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

pub fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// What one container is doing.
#[derive(Clone, Debug)]
pub enum State {
    Waiting { reason: String, message: String },
    Running { started_at: String },
    Terminated { exit_code: i32, reason: String, started_at: String, finished_at: String },
}

#[derive(Clone, Debug)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub restarts: i32,
    pub state: State,
    /// The state before the last restart.
    pub last: Option<State>,
}

fn state_json(state: &State) -> Value {
    match state {
        State::Waiting { reason, message } => json!({"waiting": {"reason": reason, "message": message}}),
        State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
        State::Terminated { exit_code, reason, started_at, finished_at } => json!({"terminated": {
            "exitCode": exit_code, "reason": reason, "startedAt": started_at, "finishedAt": finished_at,
        }}),
    }
}

/// The pod phase for these container states under `restart_policy`.
pub fn pod_phase(containers: &[ContainerStatus], restart_policy: &str) -> &'static str {
    let all_terminated = containers.iter().all(|c| matches!(c.state, State::Terminated { .. }));
    let any_running = containers.iter().any(|c| matches!(c.state, State::Running { .. }));
    let all_ok = containers.iter().all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
    if all_terminated && restart_policy == "Never" {
        if all_ok { "Succeeded" } else { "Failed" }
    } else if all_terminated && restart_policy == "OnFailure" && all_ok {
        "Succeeded"
    } else if any_running || containers.iter().any(|c| c.restarts > 0) {
        "Running"
    } else {
        "Pending"
    }
}

pub async fn write(pods: &Api<Pod>, name: &str, start_time: &str, containers: &[ContainerStatus], phase: &str) {
    let now = jiff::Timestamp::now().to_string();
    let ready = phase == "Running" && containers.iter().all(|c| matches!(c.state, State::Running { .. }));
    let started = containers.iter().any(|c| !matches!(c.state, State::Waiting { .. })) || phase != "Pending";
    let cond = |type_: &str, ok: bool| json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now});
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": format!("local://{}", c.image),
                "containerID": format!("local://{}", c.name),
                "ready": matches!(c.state, State::Running { .. }), "started": matches!(c.state, State::Running { .. }),
                "restartCount": c.restarts, "state": state_json(&c.state),
                "lastState": c.last.as_ref().map(state_json).unwrap_or_else(|| json!({})),
            })
        })
        .collect();
    let patch = json!({"status": {
        "phase": phase, "startTime": start_time,
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": [
            cond("PodReadyToStartContainers", started), cond("Initialized", true),
            cond("ContainersReady", ready), cond("Ready", ready),
        ],
        "containerStatuses": statuses,
    }});
    if let Err(e) = pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
        eprintln!("test kubelet: status of pod {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(state: State, restarts: i32) -> ContainerStatus {
        ContainerStatus { name: "c".into(), image: "i".into(), restarts, state, last: None }
    }

    fn done(code: i32) -> State {
        State::Terminated { exit_code: code, reason: "x".into(), started_at: String::new(), finished_at: String::new() }
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        assert_eq!(pod_phase(&[c(done(0), 0)], "Never"), "Succeeded");
        assert_eq!(pod_phase(&[c(done(1), 0)], "Never"), "Failed");
        assert_eq!(pod_phase(&[c(done(1), 1)], "Always"), "Running");
        assert_eq!(pod_phase(&[c(State::Running { started_at: String::new() }, 0)], "Never"), "Running");
        assert_eq!(pod_phase(&[c(State::Waiting { reason: "ErrImagePull".into(), message: String::new() }, 0)], "Never"), "Pending");
    }
}
