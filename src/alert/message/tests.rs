use super::*;

fn summary() -> SyncSummary {
    SyncSummary {
        namespace: "team-a".into(),
        sync: "users-to-crm-29123456".into(),
        mapping: "users-to-crm".into(),
        model: "users".into(),
        source: "warehouse".into(),
        destination: "crm".into(),
        action: "upsert_contact".into(),
        phase: SyncPhase::PartiallySuccessful,
        reason: None,
        message: Some("7 of 50 records were rejected".into()),
        started: Some("2026-12-01T10:00:00Z".parse().unwrap()),
        duration: Some("4s".into()),
        extracted: ExtractedCounts { total: 60, added: 40, updated: 10, deleted: 0, unchanged: 10, retried: 0 },
        loaded: LoadedCounts { succeeded: 43, failed: 7, ..Default::default() },
        errors: vec![
            ErrorSummary {
                code: "HTTP_422".into(),
                count: 5,
                message: "email is invalid <x>".into(),
                recommended_action: "fix the email column".into(),
            },
            ErrorSummary {
                code: "MISSING_REQUIRED_FIELD".into(),
                count: 2,
                message: "email is required".into(),
                recommended_action: "map email".into(),
            },
        ],
        see_more: vec!["kubectl describe sync users-to-crm-29123456 -n team-a".into()],
    }
}

fn notice(outcome: AlertOutcome) -> Notice {
    Notice { outcome, sync: "users-to-crm-29123456".into(), failures: 1, held_back: 0, since: None }
}

#[test]
fn the_subject_names_the_outcome_mapping_and_namespace() {
    assert_eq!(subject(&notice(AlertOutcome::Failed), &summary()), "[retl] Failed: users-to-crm (team-a)");
    assert_eq!(subject(&notice(AlertOutcome::Recovered), &summary()), "[retl] Recovered: users-to-crm (team-a)");
}

#[test]
fn the_text_tells_everything_a_person_needs() {
    let t = text(&notice(AlertOutcome::PartiallySuccessful), &summary());
    for want in [
        "Sync users-to-crm-29123456 of Mapping users-to-crm was partially successful",
        "Model: users from Source warehouse",
        "Destination: crm, action upsert_contact",
        "Started: 2026-12-01 10:00:00 UTC",
        "Duration: 4s",
        "Extracted: 60 (added 40, updated 10, deleted 0, unchanged 10)",
        "Loaded: 43 succeeded, 7 failed",
        "5 × HTTP_422: email is invalid <x> — fix the email column",
        "kubectl describe sync users-to-crm-29123456 -n team-a",
    ] {
        assert!(t.contains(want), "{want:?} in\n{t}");
    }
}

#[test]
fn html_is_escaped_and_has_the_same_facts() {
    let h = html(&notice(AlertOutcome::Failed), &summary());
    assert!(h.contains("email is invalid &lt;x&gt;"), "{h}");
    assert!(!h.contains("<x>"), "{h}");
    assert!(h.contains("Loaded</th><td>43 succeeded, 7 failed"), "{h}");
}

#[test]
fn slack_gets_blocks_and_a_fallback() {
    let p = slack_payload(&notice(AlertOutcome::Failed), &summary(), Some("#data-alerts"));
    assert!(p["text"].as_str().unwrap().starts_with("[retl] Failed: users-to-crm (team-a)"));
    assert_eq!(p["channel"], "#data-alerts");
    let blocks = p["blocks"].as_array().unwrap();
    assert!(blocks.iter().all(|b| b["type"].is_string()));
    assert_eq!(blocks[0]["type"], "header");
    assert!(p.to_string().contains("HTTP_422"));
    assert!(p.to_string().contains("&lt;x&gt;"), "mrkdwn is escaped");
}

#[test]
fn a_held_back_count_and_a_recovery_are_told() {
    let n = Notice { held_back: 4, failures: 6, since: Some("2026-12-01T09:00:00Z".parse().unwrap()), ..notice(AlertOutcome::Failed) };
    let t = text(&n, &summary());
    assert!(t.contains("6 in a row since 2026-12-01 09:00:00 UTC"), "{t}");
    assert!(t.contains("4 more since the last alert were held back"), "{t}");
    let r = text(&Notice { failures: 6, ..notice(AlertOutcome::Recovered) }, &summary());
    assert!(r.contains("succeeded after 6 failed or partially successful sync(s)"), "{r}");
    assert!(!r.contains("Top errors"), "{r}");
}

#[test]
fn an_event_note_fits_in_a_kilobyte() {
    let mut s = summary();
    s.message = Some("x".repeat(5000));
    let note = event_note(&notice(AlertOutcome::Failed), &s);
    assert!(note.len() <= 1024, "{}", note.len());
    assert!(note.ends_with('…'));
    let note = event_note(&notice(AlertOutcome::PartiallySuccessful), &summary());
    assert!(note.contains("loaded 43, failed 7") && note.contains("5 HTTP_422"), "{note}");
}
