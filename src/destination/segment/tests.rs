//! The segment encoder: built-in actions, what a Destination may declare,
//! messages and the limits of a request.

use serde_json::json;

use super::*;
use crate::destination::record_id;

fn declared(yaml: &str) -> Vec<Action> {
    serde_yaml_ng::from_str(yaml).expect("actions")
}

fn rec(key: &str, payload: Value) -> OutRecord {
    OutRecord { key: key.into(), kind: ChangeKind::Added, payload: payload.into(), id: record_id("uid", key, ChangeKind::Added, "h") }
}

#[test]
fn every_action_is_built_in_and_a_declared_one_may_only_narrow() {
    let all = actions("d", &[]).unwrap();
    let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["identify", "track", "group", "page", "screen", "alias"]);
    let track = &all[1];
    assert!(track.fields.iter().any(|f| f.name == "event" && f.required && f.type_ == FieldType::String));
    assert!(track.fields.iter().any(|f| f.name == "timestamp" && f.type_ == FieldType::Datetime));

    let narrowed =
        actions("d", &declared("- name: identify\n  fields: [{name: traits, properties: [email, plan]}, {name: userId, required: true}]"))
            .unwrap();
    assert_eq!(narrowed.len(), 1, "only the declared actions");
    let field = |n: &str| narrowed[0].fields.iter().find(|f| f.name == n).unwrap().clone();
    assert_eq!(field("traits").properties, Some(vec!["email".to_string(), "plan".to_string()]));
    assert!(field("userId").required);
    assert!(narrowed[0].fields.iter().any(|f| f.name == "anonymousId"), "undeclared built-in fields stay");
}

#[test]
fn what_segment_lacks_is_an_error_naming_what_to_fix() {
    let err = |yaml: &str| actions("events", &declared(yaml)).unwrap_err().to_string();
    let unknown = err("- name: identfy");
    assert!(unknown.contains("Destination events") && unknown.contains("spec.actions[0]"), "{unknown}");
    assert!(unknown.contains("no action \"identfy\"") && unknown.contains("identify, track, group, page, screen, alias"), "{unknown}");
    let field = err("- name: track\n  fields: [{name: event}, {name: email}]");
    assert!(field.contains("spec.actions[0].fields[1]") && field.contains("no field \"email\""), "{field}");
    assert!(field.contains("traits or properties"), "says where such data goes: {field}");
    let typed = err("- name: track\n  fields: [{name: event, type: integer}]");
    assert!(typed.contains("has type string"), "{typed}");
    assert!(err("- name: alias\n  fields: [{name: userId, properties: [a]}]").contains("takes no properties"));
    assert!(err("- name: page\n- name: page").contains("listed twice"));
}

#[test]
fn a_message_carries_its_type_id_and_fields() {
    let r = rec("7", json!({"userId": "7", "traits": {"plan": "pro"}, "timestamp": null}));
    let m: Value = serde_json::from_slice(&encode("identify", &r).unwrap()).unwrap();
    assert_eq!(m["type"], "identify");
    assert_eq!(m["messageId"], r.id.as_str());
    assert_eq!(m["traits"], json!({"plan": "pro"}));
    assert!(m.get("timestamp").is_none(), "a null field is left out");
    assert_eq!(m["context"]["library"]["name"], "retl");

    let own = rec("8", json!({"anonymousId": "a-8", "event": "Signed Up", "context": {"library": {"name": "mine"}, "ip": "1.2.3.4"}}));
    let m: Value = serde_json::from_slice(&encode("track", &own).unwrap()).unwrap();
    assert_eq!(m["context"], json!({"library": {"name": "mine"}, "ip": "1.2.3.4"}), "a mapped context is kept");
}

#[test]
fn a_record_without_identity_or_too_large_fails_alone() {
    let code = |action: &str, payload: Value| match encode(action, &rec("1", payload)) {
        Err(Delivery::Rejected { code, message }) => (code, message),
        other => panic!("{other:?}"),
    };
    let (c, m) = code("track", json!({"event": "x", "userId": ""}));
    assert_eq!(c, codes::MISSING_IDENTITY);
    assert!(m.contains("userId or an anonymousId"), "{m}");
    assert!(encode("alias", &rec("1", json!({"userId": "1", "previousId": "a"}))).is_ok(), "alias names its own identities");
    let (c, m) = code("identify", json!({"userId": "1", "traits": {"bio": "x".repeat(MAX_MESSAGE_BYTES)}}));
    assert_eq!(c, codes::MESSAGE_TOO_LARGE);
    assert!(m.contains("32000"), "{m}");
}

#[test]
fn requests_keep_to_the_byte_and_message_limits() {
    let msg = |n: usize| vec![b'x'; n];
    let big: Vec<(usize, Vec<u8>)> = (0..40).map(|i| (i, msg(30_000))).collect();
    let parts = pack(&big);
    assert!(parts.iter().all(|p| body(p).len() <= MAX_REQUEST_BYTES), "{:?}", parts.iter().map(|p| body(p).len()).collect::<Vec<_>>());
    assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 40, "every message goes once");
    assert_eq!(parts.len(), 3);
    let many: Vec<(usize, Vec<u8>)> = (0..6000).map(|i| (i, msg(10))).collect();
    let parts = pack(&many);
    assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [MAX_MESSAGES, MAX_MESSAGES, 1000]);
    let b: Value = serde_json::from_slice(&body(&[(0, br#"{"a":1}"#.to_vec()), (1, br#"{"b":2}"#.to_vec())])).unwrap();
    assert_eq!(b["batch"], json!([{"a": 1}, {"b": 2}]));
    assert!(b["sentAt"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok());
}

#[test]
fn record_ids_are_stable_and_change_with_the_row() {
    let id = |uid: &str, key: &str, kind: ChangeKind, hash: &str| record_id(uid, key, kind, hash);
    assert_eq!(id("m", "1", ChangeKind::Added, "h1"), id("m", "1", ChangeKind::Updated, "h1"), "an upsert is an upsert");
    assert_ne!(id("m", "1", ChangeKind::Added, "h1"), id("m", "1", ChangeKind::Added, "h2"));
    assert_ne!(id("m", "1", ChangeKind::Added, "h1"), id("n", "1", ChangeKind::Added, "h1"));
    assert_ne!(id("m", "1|2", ChangeKind::Added, "h"), id("m", "1", ChangeKind::Added, "2|h"), "no two inputs share a name");
    assert_ne!(id("m", "1", ChangeKind::Added, "h"), id("m", "1", ChangeKind::Deleted, "h"));
    assert!(uuid::Uuid::parse_str(&id("m", "1", ChangeKind::Added, "h")).is_ok());
}
