//! Field mapping, from YAML fixtures written the way users write Mappings.

use serde_json::{Value, json};

use super::{FieldMapper, MappingError};
use crate::api::{Action, FieldMapping};
use crate::record::Row;

const ACTION: &str = r#"
name: trackOrder
fields:
  - { name: userId, type: string, required: true }
  - { name: total, type: number }
  - { name: count, type: integer }
  - { name: vip, type: boolean }
  - { name: note, type: string }
  - { name: at, type: datetime }
  - { name: context, type: any }
  - { name: product, type: object, properties: [id, name, price] }
  - { name: address, type: object }
  - { name: items, type: array, properties: [sku, qty, price, label] }
  - { name: raw, type: array }
"#;

fn mapper(fields_yaml: &str, skip_nulls: bool) -> Result<FieldMapper, MappingError> {
    let action: Action = serde_yaml_ng::from_str(ACTION).unwrap();
    let fields: Vec<FieldMapping> = serde_yaml_ng::from_str(fields_yaml).unwrap();
    let columns: Vec<String> = ["id", "first", "total", "vip", "product", "attrs", "orders", "created"].map(String::from).to_vec();
    FieldMapper::new(&fields, &action, skip_nulls, &columns)
}

fn row() -> Row {
    json!({
        "id": 7,
        "first": "ada",
        "total": "12.50",
        "vip": 1,
        "product": "{\"id\": 3, \"name\": \"Lamp\", \"price\": 20}",
        "attrs": {"address": {"city": "Oslo", "zip": null}, "tier": "gold"},
        "orders": "[{\"sku\": \"A\", \"qty\": 2, \"price\": 5}, {\"sku\": \"B\", \"qty\": 1}]",
        "created": "2024-05-01 10:00:00",
    })
    .as_object()
    .unwrap()
    .clone()
}

/// Maps with both entry points, which must agree.
fn both(m: &FieldMapper, r: &Row) -> Result<Value, (super::RecordError, Value)> {
    let borrowed = m.map(r);
    // Liquid lists a row's columns in no fixed order in its messages, so the
    // code and the payload are compared.
    let shape = |r: &Result<Value, (super::RecordError, Value)>| match r {
        Ok(v) => (None, v.clone()),
        Err((e, v)) => (Some(e.code.clone()), v.clone()),
    };
    assert_eq!(shape(&borrowed), shape(&m.map_owned(r.clone())), "map and map_owned disagree");
    borrowed
}

fn ok(fields: &str) -> Value {
    both(&mapper(fields, false).unwrap(), &row()).unwrap()
}

fn err(fields: &str, r: &Row) -> (String, String, Value) {
    let (e, partial) = both(&mapper(fields, false).unwrap(), r).unwrap_err();
    (e.code, e.message, partial)
}

#[test]
fn whole_columns_move_into_the_payload_unchanged() {
    let fields = r#"
- { to: userId, from: id }
- { to: total, from: total }
- { to: vip, from: vip }
- { to: note, value: "fixed" }
- { to: address, from: attrs }
"#;
    let m = mapper(fields, false).unwrap();
    assert!(m.columns_moved);
    let p = ok(fields);
    assert_eq!(p, json!({"userId": "7", "total": 12.5, "vip": true, "note": "fixed", "address": row()["attrs"]}));
    // A column read twice is copied, not moved.
    let twice = "[{ to: userId, from: id }, { to: note, from: id }]";
    assert!(!mapper(twice, false).unwrap().columns_moved);
    assert_eq!(ok(twice), json!({"userId": "7", "note": "7"}));
}

#[test]
fn plain_columns_values_and_templates() {
    let p = ok(r#"
- { to: userId, from: id }
- { to: total, from: total }
- { to: vip, from: vip }
- { to: at, from: created }
- { to: context, value: { source: warehouse, version: 2 } }
- { to: note, template: "Hi {{ row.first | capitalize }} from {{ row.attrs.address.city }}" }
"#);
    assert_eq!(
        p,
        json!({"userId": "7", "total": 12.50, "vip": true, "at": "2024-05-01T10:00:00Z",
               "context": {"source": "warehouse", "version": 2}, "note": "Hi Ada from Oslo"})
    );
}

#[test]
fn select_and_customize_objects() {
    let p = ok(r#"
- { to: userId, from: id }
- { to: product, from: product }
- to: address
  object:
    - { to: city, from: attrs.address.city }
    - { to: zip, from: attrs.address.zip }
    - { to: street, from: attrs.address.street }
    - { to: tier, template: "{{ row.attrs.tier | upcase }}" }
"#);
    assert_eq!(p["product"], json!({"id": 3, "name": "Lamp", "price": 20}), "select object parses JSON text");
    assert_eq!(p["address"], json!({"city": "Oslo", "zip": null, "tier": "GOLD"}), "a missing property is left out");
}

#[test]
fn select_and_customize_arrays() {
    let p = ok(r#"
- { to: userId, from: id }
- { to: raw, from: orders }
- to: items
  array:
    from: orders
    properties:
      - { to: sku, from: sku }
      - { to: price, from: price }
      - { to: label, template: "{{ item.sku }}x{{ item.qty }}" }
"#);
    assert_eq!(p["raw"].as_array().unwrap().len(), 2);
    assert_eq!(
        p["items"],
        json!([{"sku": "A", "price": 5, "label": "Ax2"}, {"sku": "B", "label": "Bx1"}]),
        "objects in an array need not have the same properties"
    );
}

#[test]
fn skip_nulls_leaves_out_null_fields_and_properties() {
    let fields = r#"
- { to: userId, from: id }
- { to: note, from: attrs.address.zip }
- to: address
  object: [{ to: zip, from: attrs.address.zip }, { to: city, from: attrs.address.city }]
"#;
    let kept = mapper(fields, false).unwrap().map(&row()).unwrap();
    assert_eq!(kept["note"], Value::Null);
    let skipped = mapper(fields, true).unwrap().map(&row()).unwrap();
    assert!(skipped.get("note").is_none());
    assert_eq!(skipped["address"], json!({"city": "Oslo"}));
}

#[test]
fn fixed_property_lists_are_enforced_before_sending() {
    let mut r = row();
    r.insert("product".into(), json!({"id": 1, "name": "Lamp", "secret_cost": 3}));
    let (code, message, partial) = err("- { to: userId, from: id }\n- { to: product, from: product }", &r);
    assert_eq!(code, "PROPERTY_NOT_ACCEPTED");
    assert!(message.contains("\"secret_cost\"") && message.contains("id, name, price"), "{message}");
    assert_eq!(partial["product"]["secret_cost"], 3, "the refused value shows in the payload");

    r.insert("orders".into(), json!([{"sku": "A", "colour": "red"}]));
    let (code, message, _) = err("- { to: userId, from: id }\n- { to: items, from: orders }", &r);
    assert_eq!(code, "PROPERTY_NOT_ACCEPTED");
    assert!(message.contains("\"colour\""), "{message}");

    let e = mapper("- { to: userId, from: id }\n- to: product\n  object: [{ to: colour, from: first }]", false).unwrap_err();
    assert!(matches!(e, MappingError::PropertyNotAccepted { ref property, .. } if property == "colour"), "{e}");
}

#[test]
fn values_are_checked_against_field_types() {
    let mut r = row();
    r.insert("total".into(), json!("twelve"));
    let (code, message, _) = err("- { to: userId, from: id }\n- { to: total, from: total }", &r);
    assert_eq!(code, "TYPE_MISMATCH");
    assert!(message.contains("expected a number"), "{message}");
    r.insert("first".into(), json!({"nested": true}));
    let (code, _, _) = err("- { to: userId, from: id }\n- { to: note, from: first }", &r);
    assert_eq!(code, "TYPE_MISMATCH");
    r.insert("id".into(), Value::Null);
    let (code, message, _) = err("- { to: userId, from: id }", &r);
    assert_eq!(code, "MISSING_REQUIRED_FIELD");
    assert!(message.contains("userId"));
    let (code, _, _) = err("- { to: userId, from: id }\n- { to: note, template: \"{{ row.nope }}\" }", &r);
    assert_eq!(code, "MISSING_REQUIRED_FIELD", "the first error is reported");
    let (code, _, _) = err("- { to: userId, value: x }\n- { to: note, template: \"{{ row.nope }}\" }", &row());
    assert_eq!(code, "TEMPLATE_ERROR");
}

#[test]
fn mistakes_in_the_mapping_are_caught_before_any_row() {
    let cases = [
        ("- { to: userId, from: nope }", "reads column \"nope\""),
        ("- { to: userId, from: id }\n- { to: nofield, from: id }", "is not a field of action"),
        ("- { to: note, from: first }", "required field \"userId\""),
        ("- { to: userId, from: id, value: 1 }", "exactly one of"),
        ("- { to: userId, from: id }\n- { to: note, template: \"{{ row.first \" }", "invalid Liquid template"),
        ("- { to: userId, from: id }\n- { to: userId, from: first }", "mapped twice"),
        ("- { to: userId, from: id }\n- to: items\n  array: { from: nope, properties: [] }", "reads column \"nope\""),
    ];
    for (fields, expected) in cases {
        let e = mapper(fields, false).unwrap_err().to_string();
        assert!(e.contains(expected), "{fields}: {e}");
    }
}
