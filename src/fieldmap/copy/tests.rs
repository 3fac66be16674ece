//! The copy path against the full mapping: for every row it copies, the
//! payload is the one the full mapping builds (as JSON); every other row
//! is left to the full mapping.

use serde_json::{Value, json};

use crate::api::{Action, ActionField, FieldMapping, FieldType};
use crate::fieldmap::FieldMapper;
use crate::warehouse::{RowDecoder, decode_row};

fn field(name: &str, type_: FieldType, required: bool) -> ActionField {
    ActionField { name: name.into(), type_, required, properties: None, description: None }
}

fn action() -> Action {
    Action {
        name: "identify".into(),
        description: None,
        fields: vec![
            field("userId", FieldType::String, true),
            field("email", FieldType::String, false),
            field("mrr", FieldType::Number, false),
            field("seats", FieldType::Integer, false),
            field("active", FieldType::Boolean, false),
            field("createdAt", FieldType::Datetime, false),
            field("attrs", FieldType::Object, false),
            field("extra", FieldType::Any, false),
            field("source", FieldType::String, false),
        ],
    }
}

fn mapping() -> Vec<FieldMapping> {
    let from = |to: &str, from: &str| FieldMapping { to: to.into(), from: Some(from.into()), ..Default::default() };
    vec![
        from("userId", "id"),
        from("email", "email"),
        from("mrr", "mrr"),
        from("seats", "seats"),
        from("active", "active"),
        from("createdAt", "created_at"),
        from("attrs", "attrs"),
        from("extra", "extra"),
        FieldMapping { to: "source".into(), value: Some(json!("warehouse")), ..Default::default() },
    ]
}

const COLUMNS: [&str; 8] = ["id", "email", "mrr", "seats", "active", "created_at", "attrs", "extra"];

/// Values each column takes in turn: every type a warehouse writes, and
/// the ones a field does not take as they are.
fn values(column: usize) -> Vec<Value> {
    let common = vec![Value::Null, json!("text"), json!(12), json!(-3), json!(1.5), json!(true), json!({"a": [1, 2]}), json!([1])];
    let special = match column {
        0 => vec![json!(42), json!("42"), json!(9_007_199_254_740_993u64)],
        5 => vec![json!("2024-01-02T03:04:05Z"), json!("2024-01-02T03:04:05.123+02:00"), json!("2024-01-02 03:04:05"), json!("yesterday")],
        6 => vec![json!({"$retl_blob": "00ff"}), json!({"$retl_unsupported": "GEOMETRY"}), json!("{\"a\":1}")],
        _ => vec![json!("a \"quoted\" \\ value\n"), json!("0"), json!(0)],
    };
    common.into_iter().chain(special).collect()
}

fn check(skip_nulls: bool) -> (usize, usize) {
    let columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mapper = FieldMapper::new(&mapping(), &action(), skip_nulls, &columns).expect("mapping compiles");
    let (mut copied, mut rows) = (0, 0);
    // Each column walks through its values while the others stay at a
    // typical row's, then every column at once at each position.
    let typical = [
        json!(7),
        json!("a@example.com"),
        json!(12.5),
        json!(3),
        json!(false),
        json!("2020-01-01T00:00:00Z"),
        json!({"x": 1}),
        json!(null),
    ];
    let mut cases: Vec<Vec<Value>> = Vec::new();
    for c in 0..COLUMNS.len() {
        for v in values(c) {
            let mut row = typical.to_vec();
            row[c] = v;
            cases.push(row);
        }
    }
    for i in 0..12 {
        cases.push((0..COLUMNS.len()).map(|c| values(c)[i % values(c).len()].clone()).collect());
    }
    for row in cases {
        let text = Value::Object(COLUMNS.iter().map(|c| c.to_string()).zip(row).collect()).to_string();
        rows += 1;
        let Some(fast) = mapper.map_text(&text) else { continue };
        copied += 1;
        let full = mapper.map(&decode_row(&RowDecoder, &text).expect("a row")).expect("a copied row maps");
        let fast: Value = serde_json::from_str(fast.as_str()).expect("valid JSON");
        assert_eq!(fast, full, "row {text}");
    }
    (copied, rows)
}

#[test]
fn copied_payloads_are_the_full_mappings_payloads() {
    for skip_nulls in [false, true] {
        let (copied, rows) = check(skip_nulls);
        assert!(copied > rows / 3 && copied < rows, "{copied} of {rows} rows copied: most typical rows, none that need more");
    }
}

#[test]
fn rows_that_need_more_than_a_copy_are_left_to_the_full_mapping() {
    let columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mapper = FieldMapper::new(&mapping(), &action(), false, &columns).unwrap();
    let row = |id: &str, created: &str, attrs: &str| {
        format!(r#"{{"id":{id},"email":"e","mrr":1,"seats":1,"active":true,"created_at":{created},"attrs":{attrs},"extra":null}}"#)
    };
    assert!(mapper.map_text(&row("1", "\"2020-01-01T00:00:00Z\"", "{}")).is_some());
    assert!(mapper.map_text(&row("null", "\"2020-01-01T00:00:00Z\"", "{}")).is_none(), "a required field without a value");
    assert!(mapper.map_text(&row("1", "\"2020-01-01 00:00:00\"", "{}")).is_none(), "a date-time to normalise");
    assert!(mapper.map_text(&row("1.5", "\"2020-01-01T00:00:00Z\"", "{}")).is_none(), "a number to write as a string");
    assert!(mapper.map_text(&row("1", "\"2020-01-01T00:00:00Z\"", r#"{"$retl_blob":"00"}"#)).is_none(), "a dialect's marker");
    assert!(mapper.map_text(r#"{"id":1}"#).is_none(), "a row without the model's columns");
    let integer_key = mapper.map_text(&row("42", "\"2020-01-01T00:00:00Z\"", "{}")).unwrap();
    assert!(integer_key.as_str().starts_with(r#"{"userId":"42","email":"e""#), "{integer_key}");
}

#[test]
fn mappings_that_build_values_have_no_copy_path() {
    let columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut fields = mapping();
    fields.push(FieldMapping { to: "email".into(), template: Some("{{ email }}".into()), ..Default::default() });
    fields.remove(1);
    let mapper = FieldMapper::new(&fields, &action(), false, &columns).unwrap();
    let text = r#"{"id":1,"email":"e","mrr":1,"seats":1,"active":true,"created_at":"2020-01-01T00:00:00Z","attrs":{},"extra":null}"#;
    assert!(mapper.map_text(text).is_none());
}
