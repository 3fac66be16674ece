//! When to alert: one finished Sync at a time, per Mapping, against the
//! state kept for it (in a SyncAlert's status, or a local run's ledger
//! file). No I/O here: the operator and `retl run` both call it.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AlertEpisode, AlertOutcome, MappingAlertState, SyncAlertSpec, SyncPhase};

/// What a SyncAlert asks for, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub outcomes: Vec<AlertOutcome>,
    pub repeat_interval: Duration,
    /// The Mappings it selects (empty selects all).
    pub selector: kube::core::Selector,
}

impl Policy {
    /// The policy of a spec, or what is wrong with it.
    pub fn of(spec: &SyncAlertSpec) -> Result<Policy, String> {
        if spec.outcomes.is_empty() {
            return Err(
                "spec.outcomes is empty: list at least one of Failed, PartiallySuccessful, Recovered, or leave it out for all three".into(),
            );
        }
        let repeat_interval = humantime::parse_duration(spec.repeat_interval.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("spec.repeatInterval {:?} is not a positive duration such as 30m, 1h or 1d", spec.repeat_interval))?;
        let selector = match &spec.mapping_selector {
            None => kube::core::Selector::default(),
            Some(s) => kube::core::Selector::try_from(s.clone()).map_err(|e| format!("spec.mappingSelector: {e}"))?,
        };
        Ok(Policy { outcomes: spec.outcomes.clone(), repeat_interval, selector })
    }
}

/// A finished Sync, as alerting sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub sync: String,
    pub phase: SyncPhase,
    pub completed: Timestamp,
}

/// An alert to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub outcome: AlertOutcome,
    pub sync: String,
    /// Syncs in a row that failed or partly failed, this one included
    /// (for Recovered: the ones it ends).
    pub failures: u32,
    /// Failures held back by `repeatInterval` since the previous alert.
    pub held_back: u32,
    /// When the failures began.
    pub since: Option<Timestamp>,
}

/// Whether `sync` is still to consider: it completed after the last Sync
/// considered, or in the same (whole) second and was not considered yet.
/// The cursor starts at the SyncAlert's creation (also a whole second): a
/// Sync that ends within that second counts.
pub fn is_new(state: &MappingAlertState, sync: &Finished) -> bool {
    let Some(t) = &state.last_completion_time else { return true };
    match sync.completed.cmp(&t.0) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal if !state.last_second_syncs.is_empty() => !state.last_second_syncs.contains(&sync.sync),
        // A status written before the list existed: by name, as it then was.
        std::cmp::Ordering::Equal => state.last_sync.as_ref().is_none_or(|name| sync.sync.as_str() > name.as_str()),
    }
}

/// Considers one finished Sync: moves the cursor past it, keeps the
/// failure episode, and says whether an alert goes out.
pub fn consider(state: &mut MappingAlertState, policy: &Policy, sync: &Finished) -> Option<Notice> {
    if state.last_completion_time.as_ref().is_some_and(|t| t.0 == sync.completed) && state.last_sync.is_some() {
        state.last_second_syncs.push(sync.sync.clone());
    } else {
        state.last_second_syncs = vec![sync.sync.clone()];
    }
    state.last_sync = Some(sync.sync.clone());
    state.last_completion_time = Some(Time(sync.completed));
    let outcome = match sync.phase {
        SyncPhase::Successful => {
            let ended = state.episode.take()?;
            return policy.outcomes.contains(&AlertOutcome::Recovered).then(|| Notice {
                outcome: AlertOutcome::Recovered,
                sync: sync.sync.clone(),
                failures: ended.failures,
                held_back: ended.held_back,
                since: ended.since.map(|t| t.0),
            });
        }
        SyncPhase::Failed => AlertOutcome::Failed,
        SyncPhase::PartiallySuccessful => AlertOutcome::PartiallySuccessful,
        // A canceled sync says nothing about the Mapping's health.
        SyncPhase::Canceled | SyncPhase::Pending | SyncPhase::InProgress => return None,
    };
    let episode = state.episode.get_or_insert_with(|| AlertEpisode { since: Some(Time(sync.completed)), ..Default::default() });
    episode.failures += 1;
    if !policy.outcomes.contains(&outcome) {
        return None;
    }
    let due = match (&episode.last_alert_time, episode.last_alert_outcome) {
        (Some(last), Some(was)) if was == outcome => {
            let since_last = sync.completed.duration_since(last.0).unsigned_abs();
            since_last >= policy.repeat_interval
        }
        _ => true,
    };
    if !due {
        episode.held_back += 1;
        return None;
    }
    let notice = Notice {
        outcome,
        sync: sync.sync.clone(),
        failures: episode.failures,
        held_back: episode.held_back,
        since: episode.since.as_ref().map(|t| t.0),
    };
    episode.last_alert_time = Some(Time(sync.completed));
    episode.last_alert_outcome = Some(outcome);
    episode.held_back = 0;
    Some(notice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(outcomes: &[AlertOutcome]) -> Policy {
        Policy { outcomes: outcomes.to_vec(), repeat_interval: Duration::from_secs(3600), selector: Default::default() }
    }

    fn all() -> Policy {
        policy(&[AlertOutcome::Failed, AlertOutcome::PartiallySuccessful, AlertOutcome::Recovered])
    }

    /// Syncs one minute apart, from a fixed start.
    fn run(state: &mut MappingAlertState, p: &Policy, phases: &[(u32, SyncPhase)]) -> Vec<Notice> {
        let start: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        phases
            .iter()
            .filter_map(|(minute, phase)| {
                let completed = start + jiff::SignedDuration::from_mins(i64::from(*minute));
                let f = Finished { sync: format!("m-{minute:04}"), phase: *phase, completed };
                assert!(is_new(state, &f));
                consider(state, p, &f)
            })
            .collect()
    }

    #[test]
    fn a_failure_alerts_at_once_and_the_success_after_it_recovers() {
        let mut s = MappingAlertState::default();
        let n = run(&mut s, &all(), &[(0, SyncPhase::Successful), (1, SyncPhase::Failed), (2, SyncPhase::Successful)]);
        let got: Vec<_> = n.iter().map(|n| (n.outcome, n.sync.as_str(), n.failures)).collect();
        assert_eq!(got, [(AlertOutcome::Failed, "m-0001", 1), (AlertOutcome::Recovered, "m-0002", 1)]);
        assert_eq!(s.episode, None, "the recovery closes the episode");
    }

    #[test]
    fn a_burst_of_failures_is_held_back_until_the_repeat_interval() {
        let mut s = MappingAlertState::default();
        let mut phases: Vec<(u32, SyncPhase)> = (0..10).map(|m| (m, SyncPhase::Failed)).collect();
        phases.push((61, SyncPhase::Failed));
        phases.push((62, SyncPhase::Successful));
        let n = run(&mut s, &all(), &phases);
        let got: Vec<_> = n.iter().map(|n| (n.outcome, n.sync.as_str(), n.failures, n.held_back)).collect();
        assert_eq!(
            got,
            [(AlertOutcome::Failed, "m-0000", 1, 0), (AlertOutcome::Failed, "m-0061", 11, 9), (AlertOutcome::Recovered, "m-0062", 11, 0),]
        );
    }

    #[test]
    fn a_change_of_outcome_alerts_at_once() {
        let mut s = MappingAlertState::default();
        let n = run(&mut s, &all(), &[(0, SyncPhase::Failed), (1, SyncPhase::PartiallySuccessful), (2, SyncPhase::PartiallySuccessful)]);
        let got: Vec<_> = n.iter().map(|n| n.outcome).collect();
        assert_eq!(got, [AlertOutcome::Failed, AlertOutcome::PartiallySuccessful]);
        assert_eq!(s.episode.as_ref().map(|e| (e.failures, e.held_back)), Some((3, 1)));
    }

    #[test]
    fn outcomes_not_chosen_are_not_sent_and_canceled_syncs_change_nothing() {
        let mut s = MappingAlertState::default();
        let only_failed = policy(&[AlertOutcome::Failed]);
        let n = run(&mut s, &only_failed, &[(0, SyncPhase::PartiallySuccessful), (1, SyncPhase::Canceled), (2, SyncPhase::Successful)]);
        assert_eq!(n, []);
        assert_eq!(s.last_sync.as_deref(), Some("m-0002"), "every sync moves the cursor");
        let n = run(&mut s, &policy(&[AlertOutcome::Recovered]), &[(3, SyncPhase::Failed), (4, SyncPhase::Successful)]);
        assert_eq!(n.iter().map(|n| n.outcome).collect::<Vec<_>>(), [AlertOutcome::Recovered]);
    }

    #[test]
    fn a_sync_already_considered_is_not_new() {
        let mut s = MappingAlertState::default();
        run(&mut s, &all(), &[(5, SyncPhase::Failed)]);
        let at = |m: i64| "2026-12-01T10:00:00Z".parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_mins(m);
        assert!(!is_new(&s, &Finished { sync: "m-0005".into(), phase: SyncPhase::Failed, completed: at(5) }));
        assert!(!is_new(&s, &Finished { sync: "m-0004".into(), phase: SyncPhase::Failed, completed: at(4) }));
        assert!(is_new(&s, &Finished { sync: "m-0006".into(), phase: SyncPhase::Failed, completed: at(5) }), "same time, later name");
        assert!(is_new(&s, &Finished { sync: "m-0001".into(), phase: SyncPhase::Failed, completed: at(5) }), "same time, earlier name");
        let earlier = Finished { sync: "a-0001".into(), phase: SyncPhase::Failed, completed: at(5) };
        assert!(is_new(&s, &earlier));
        consider(&mut s, &all(), &earlier);
        assert!(!is_new(&s, &earlier), "considered once");
        assert!(!is_new(&s, &Finished { sync: "m-0005".into(), phase: SyncPhase::Failed, completed: at(5) }), "and the first still");
    }

    #[test]
    fn a_sync_that_ends_in_the_second_the_alert_was_created_counts() {
        let created: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let s = MappingAlertState { last_completion_time: Some(Time(created)), ..Default::default() };
        assert!(is_new(&s, &Finished { sync: "m-0001".into(), phase: SyncPhase::Failed, completed: created }));
    }

    #[test]
    fn a_policy_needs_outcomes_and_a_positive_interval() {
        let spec: SyncAlertSpec = serde_json::from_value(serde_json::json!({"repeatInterval": "0m"})).unwrap();
        assert!(Policy::of(&spec).unwrap_err().contains("repeatInterval"));
        let spec: SyncAlertSpec = serde_json::from_value(serde_json::json!({"outcomes": []})).unwrap();
        assert!(Policy::of(&spec).unwrap_err().contains("outcomes"));
        let spec: SyncAlertSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(Policy::of(&spec).unwrap().repeat_interval, Duration::from_secs(3600));
    }
}
