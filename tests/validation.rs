//! The CEL rules (`x-kubernetes-validations`) of retl's CRDs, enforced by a
//! real kube-apiserver 1.34 (see testcluster/) through the real kubectl:
//! each rule refuses what it should with its own message, and good manifests
//! (the examples, every kind of field mapping, SyncAlerts in YAML and JSON) pass.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use testcluster::{Namespace, TestCluster};

/// The control plane of this binary, with `crds/` applied once.
fn cluster() -> &'static TestCluster {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let cluster = TestCluster::shared(Arc::new(|_image: &str| None));
    INSTALLED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        let dir = dir.display().to_string();
        let out = cluster.kubectl().run(&["apply", "--server-side", "--force-conflicts", "-f", &dir], None).expect("kubectl runs");
        assert!(out.success(), "applying crds/: {}", out.stderr);
        let out =
            cluster.kubectl().run(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None).expect("kubectl runs");
        assert!(out.success(), "{}", out.stderr);
    });
    cluster
}

/// A Mapping named `name` whose spec is the required fields plus `extra`
/// (YAML lines indented by two spaces).
fn mapping(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata:\n  name: {name}\nspec:\n  modelRef: {{name: users}}\n  \
         destinationRef: {{name: crm}}\n  action: identify\n{extra}"
    )
}

/// Applies `manifest` and returns kubectl's stderr, asserting that the API server refused it.
fn refused(ns: &Namespace, manifest: &str) -> String {
    let out = ns.kubectl_stdin(&["apply", "-f", "-"], manifest).expect("kubectl runs");
    assert_ne!(out.code, 0, "accepted although invalid:\n{manifest}\n{}", out.stdout);
    out.stderr.trim().to_string()
}

/// Applies `manifest`, asserting that the API server accepted it.
fn accepted(ns: &Namespace, manifest: &str) {
    let out = ns.kubectl_stdin(&["apply", "-f", "-"], manifest).expect("kubectl runs");
    assert!(out.success(), "refused although valid:\n{manifest}\n{}", out.stderr);
}

const FIELD_RULE: &str = "each field mapping sets exactly one of from, value, template, object or array";
const PROPERTY_RULE: &str = "each property sets exactly one of from, value or template";

/// What the engine says of the field mappings of `manifest` (a Mapping), the
/// way a sync compiles them: `Err` with its message when it refuses them.
fn engine_verdict(manifest: &str) -> Result<(), String> {
    let mapping: retl::api::Mapping = serde_yaml_ng::from_str(manifest).map_err(|e| e.to_string())?;
    // Every column a field or an object property reads is one the model returns.
    let fields = serde_json::to_value(&mapping.spec.fields).map_err(|e| e.to_string())?;
    let mut columns: Vec<String> = Vec::new();
    for f in fields.as_array().into_iter().flatten() {
        let froms = f.get("object").and_then(|o| o.as_array()).into_iter().flatten().chain(std::iter::once(f));
        let froms = froms.chain(f.get("array"));
        columns.extend(froms.filter_map(|x| x["from"].as_str()).map(|c| c.split('.').next().unwrap_or(c).to_string()));
    }
    // An action that declares no fields takes any.
    let action: retl::api::Action = serde_json::from_value(serde_json::json!({"name": "identify"})).map_err(|e| e.to_string())?;
    retl::fieldmap::FieldMapper::new(&mapping.spec.fields, &action, false, &columns).map(|_| ()).map_err(|e| e.to_string())
}

/// The API server refuses `fields` (YAML list entries) of a Mapping with
/// `rule`'s message at `path`, and the engine refuses them too.
fn refused_at(ns: &Namespace, name: &str, fields: &str, path: &str, rule: &str) {
    let m = mapping(name, &format!("  fields:\n{fields}"));
    assert_eq!(refused(ns, &m), format!(r#"The Mapping "{name}" is invalid: {path}: Invalid value: "object": {rule}"#), "{fields}");
    let engine = engine_verdict(&m).expect_err("the engine refuses it too");
    assert!(engine.contains("needs exactly one of"), "{engine}");
}

/// The API server and the engine accept `fields`.
fn fields_accepted(ns: &Namespace, name: &str, fields: &str) {
    let m = mapping(name, &format!("  fields:\n{fields}"));
    accepted(ns, &m);
    engine_verdict(&m).unwrap_or_else(|e| panic!("the engine refuses\n{fields}: {e}"));
}

#[test]
fn a_field_mapping_sets_exactly_one_source() {
    let ns = cluster().namespace("cel-fields");
    refused_at(&ns, "two", "  - {to: userId, from: id, value: 1}\n", "spec.fields[0]", FIELD_RULE);
    refused_at(&ns, "none", "  - {to: userId, from: id}\n  - {to: email}\n", "spec.fields[1]", FIELD_RULE);
    refused_at(&ns, "value-null", "  - {to: userId, value: null}\n", "spec.fields[0]", FIELD_RULE);
    refused_at(&ns, "false-and-from", "  - {to: optedIn, value: false, from: opted_in}\n", "spec.fields[0]", FIELD_RULE);
    refused_at(&ns, "object-template", "  - {to: traits, template: x, object: [{to: a, from: a}]}\n", "spec.fields[0]", FIELD_RULE);
    // The column of a customized array is the array's own `from`, not a second source.
    let both = "  - to: items\n    from: orders\n    array: {from: orders, properties: [{to: sku, from: sku}]}\n";
    refused_at(&ns, "from-and-array", both, "spec.fields[0]", FIELD_RULE);
    fields_accepted(&ns, "array", "  - to: items\n    array: {from: orders, properties: [{to: sku, from: sku}]}\n");
    // `value: null` is no value, for the API server as for the engine.
    fields_accepted(&ns, "from-and-null", "  - {to: userId, from: id, value: null}\n  - {to: email, template: x, from: null}\n");
}

#[test]
fn a_property_of_a_customized_object_or_array_sets_exactly_one_source() {
    let ns = cluster().namespace("cel-properties");
    let object = "  - to: traits\n    object:\n    - {to: name, from: name}\n    - {to: plan, from: plan, template: x}\n";
    refused_at(&ns, "object", object, "spec.fields[0].object[1]", PROPERTY_RULE);
    let array = "  - {to: userId, from: id}\n  - to: items\n    array: {from: orders, properties: [{to: sku}]}\n";
    refused_at(&ns, "array", array, "spec.fields[1].array.properties[0]", PROPERTY_RULE);
    let value_too = "  - to: items\n    array: {from: orders, properties: [{to: sku, value: {a: 1}, from: sku}]}\n";
    refused_at(&ns, "value-too", value_too, "spec.fields[0].array.properties[0]", PROPERTY_RULE);
    let good = "  - to: traits\n    object:\n    - {to: plan, value: [pro]}\n    - {to: name, template: x, value: null}\n";
    fields_accepted(&ns, "good", good);
}

#[test]
fn send_is_not_empty_when_given() {
    let ns = cluster().namespace("cel-send");
    let empty = mapping("empty", "  send: []\n");
    assert_eq!(
        refused(&ns, &empty),
        r#"The Mapping "empty" is invalid: spec.send: Invalid value: "array": send lists at least one of added, updated or deleted; leave send out for the default (added and updated)"#
    );
    accepted(&ns, &mapping("deletes-only", "  send: [deleted]\n"));
    accepted(&ns, &mapping("default", ""));
    let send = ns.kubectl_json(&["get", "mapping", "default", "-o", "json"]).expect("the Mapping");
    assert_eq!(send["spec"]["send"], serde_json::json!(["added", "updated"]), "the default applies");
}

#[test]
fn max_delete_percent_is_within_0_and_100() {
    let ns = cluster().namespace("cel-percent");
    for (name, value) in [("above", "101"), ("below", "-1"), ("just-above", "100.5")] {
        let m = mapping(name, &format!("  guards: {{maxDeletePercent: {value}}}\n"));
        assert_eq!(
            refused(&ns, &m),
            format!(
                r#"The Mapping "{name}" is invalid: spec.guards.maxDeletePercent: Invalid value: "number": maxDeletePercent is a percentage from 0 to 100"#
            ),
            "{value}"
        );
    }
    for (name, value) in [("zero", "0"), ("hundred", "100"), ("fraction", "12.5"), ("half", "50")] {
        accepted(&ns, &mapping(name, &format!("  guards: {{maxDeletePercent: {value}}}\n")));
    }
}

/// The API server and the engine's parser (`humantime::parse_duration`, as
/// in src/engine/run.rs) agree: every window the server accepts, the engine
/// reads as a positive number of whole seconds.
#[test]
fn retry_window_is_a_positive_duration_that_the_engine_reads() {
    let ns = cluster().namespace("cel-retry");
    let message = "retryWindow is a positive duration: whole numbers of at most 6 digits, each with a unit s, m, h, d or w, such as 336h, 14d or 1d12h";
    let good = [("336h", 336 * 3600), ("14d", 14 * 86400), ("2w", 14 * 86400), ("1d12h", 36 * 3600), ("90m", 5400), ("1s", 1)];
    let good_too = [("0h30m", 1800), ("999999w", 999_999 * 7 * 86400), ("1w2d3h4m5s", 788_645)];
    for (i, (window, seconds)) in good.into_iter().chain(good_too).enumerate() {
        let parsed = humantime::parse_duration(window).unwrap_or_else(|e| panic!("the engine refuses {window:?}: {e}"));
        assert_eq!(parsed.as_secs(), seconds, "{window}");
        assert_eq!(parsed.subsec_nanos(), 0, "{window}");
        accepted(&ns, &mapping(&format!("good-{i}"), &format!("  retryWindow: \"{window}\"\n")));
    }
    let bad = [
        "0s",       // not positive
        "0d0h",     // not positive
        "",         // empty
        "14",       // no unit
        "-1h",      // negative
        "1.5h",     // fractions: humantime reads them; the server keeps to whole numbers
        "14days",   // long unit names: humantime only
        "1M",       // months: humantime only, and ambiguous with minutes
        "500ms",    // units below a second (a window of less than one makes no sense)
        "1h 30m",   // spaces
        "1000000s", // 7 digits
        "forever",  // not a duration
    ];
    for (i, window) in bad.into_iter().enumerate() {
        let name = format!("bad-{i}");
        let err = refused(&ns, &mapping(&name, &format!("  retryWindow: \"{window}\"\n")));
        assert_eq!(err, format!(r#"The Mapping "{name}" is invalid: spec.retryWindow: Invalid value: "string": {message}"#), "{window:?}");
    }
    let long = "1s".repeat(17);
    let err = refused(&ns, &mapping("long", &format!("  retryWindow: \"{long}\"\n")));
    assert!(err.contains("spec.retryWindow: Too long: may not be more than 32 bytes"), "{err}");
    accepted(&ns, &mapping("default", ""));
    let m = ns.kubectl_json(&["get", "mapping", "default", "-o", "json"]).expect("the Mapping");
    assert_eq!(m["spec"]["retryWindow"], "336h");
}

#[test]
fn good_mappings_are_accepted() {
    let ns = cluster().namespace("cel-good");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in ["examples/quickstart/mapping.yaml", "examples/postgres/mapping.yaml"] {
        let text = std::fs::read_to_string(root.join(example)).expect("the example");
        accepted(&ns, &text);
        engine_verdict(&text).unwrap_or_else(|e| panic!("the engine refuses {example}: {e}"));
    }
    let every_source = mapping(
        "every-source",
        r#"  send: [added, updated, deleted]
  fields:
  - {to: userId, from: id}
  - {to: account, from: attrs}
  - {to: source, value: {kind: warehouse, tags: [a, b]}}
  - {to: optedIn, value: false}
  - {to: greeting, template: "Hi {{ row.name }}!"}
  - to: traits
    object:
    - {to: name, from: name}
    - {to: plan, value: pro}
    - {to: label, template: "{{ row.plan | upcase }}"}
  - to: items
    array:
      from: orders
      properties:
      - {to: sku, from: sku}
      - {to: currency, value: EUR}
      - {to: line, template: "{{ item.sku }}"}
  - to: nothing
    object: []
  guards: {maxDeletes: 10, maxDeletePercent: 20, allowEmptyModel: true}
  retryWindow: 14d
"#,
    );
    accepted(&ns, &every_source);
    engine_verdict(&every_source).unwrap_or_else(|e| panic!("the engine refuses it: {e}"));
    let m = ns.kubectl_json(&["get", "mapping", "every-source", "-o", "json"]).expect("the Mapping");
    assert_eq!(m["spec"]["fields"].as_array().map(Vec::len), Some(8), "{m:#}");
    assert_eq!(m["spec"]["fields"][6]["array"]["from"], "orders");
    // A change to a valid Mapping is checked too.
    let err = refused(&ns, &every_source.replace("retryWindow: 14d", "retryWindow: 0d"));
    assert!(err.contains("spec.retryWindow: Invalid value"), "{err}");
}

/// SyncAlerts written in YAML and in JSON, as users write them, reach the
/// API server with their outcomes: no field is named like a YAML 1.1
/// boolean (`on:` reached it as `true:`).
#[test]
fn sync_alerts_apply_in_yaml_and_json() {
    let ns = cluster().namespace("alerts");
    let yaml = r##"apiVersion: retl.dev/v1alpha1
kind: SyncAlert
metadata:
  name: yaml
spec:
  mappingSelector:
    matchLabels: {team: growth}
  outcomes: [Failed]
  slack:
    webhookUrlSecretRef: {name: slack, key: url}
    channel: "#data-alerts"
  email:
    to: [data@example.com]
    from: retl@example.com
    smtpHost: smtp.example.com
"##;
    accepted(&ns, yaml);
    let json = r#"{
  "apiVersion": "retl.dev/v1alpha1",
  "kind": "SyncAlert",
  "metadata": {"name": "json"},
  "spec": {"outcomes": ["PartiallySuccessful", "Failed"], "slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}}
}"#;
    accepted(&ns, json);
    accepted(&ns, "apiVersion: retl.dev/v1alpha1\nkind: SyncAlert\nmetadata: {name: defaults}\nspec: {}\n");

    let outcomes = |name: &str| ns.kubectl_json(&["get", "syncalert", name]).expect("the SyncAlert")["spec"]["outcomes"].clone();
    assert_eq!(outcomes("yaml"), serde_json::json!(["Failed"]));
    assert_eq!(outcomes("json"), serde_json::json!(["PartiallySuccessful", "Failed"]));
    assert_eq!(outcomes("defaults"), serde_json::json!(["Failed", "PartiallySuccessful", "Recovered"]), "the default applies");
    let yaml_back = ns.kubectl_json(&["get", "syncalert", "yaml"]).expect("the SyncAlert");
    assert_eq!(yaml_back["spec"]["email"]["to"], serde_json::json!(["data@example.com"]));
    assert_eq!(yaml_back["spec"]["mappingSelector"]["matchLabels"]["team"], "growth");

    // What the server sends back reads as the operator's own type.
    let typed: retl::api::SyncAlert = serde_json::from_value(yaml_back).expect("a SyncAlert");
    assert_eq!(typed.spec.outcomes, [retl::api::AlertOutcome::Failed]);

    // `kubectl get syncalerts` shows them.
    let out = ns.kubectl(&["get", "syncalerts"]).expect("kubectl runs");
    let rows = out.table();
    assert_eq!(rows[0][..2], ["NAME", "OUTCOMES"], "{}", out.stdout);
    let row = rows.iter().find(|r| r[0] == "yaml").unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(row[1].contains("Failed"), "{}", out.stdout);

    // kubectl explains the field.
    let explain = ns.kubectl(&["explain", "syncalert.spec.outcomes"]).expect("kubectl runs");
    assert!(explain.success(), "{}", explain.stderr);
    assert!(explain.stdout.contains("FIELD: outcomes"), "{}", explain.stdout);
    assert!(explain.stdout.contains("Outcomes that raise an alert"), "{}", explain.stdout);

    // The examples of each channel (examples/alerts/) apply as written.
    for file in ["slack.yaml", "gmail.yaml", "ses.yaml", "events-only.yaml"] {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/alerts").join(file)).unwrap();
        accepted(&ns, &text);
    }
    let out = ns.kubectl(&["get", "syncalert", "oncall-by-gmail", "-o", "jsonpath={.spec.email.smtpTls}"]).expect("kubectl runs");
    assert_eq!(out.stdout, "starttls");

    // The old spelling is what kubectl's YAML reader turned into `true`.
    let old = "apiVersion: retl.dev/v1alpha1\nkind: SyncAlert\nmetadata: {name: old}\nspec:\n  on: [Failed]\n";
    let err = refused(&ns, old);
    assert!(err.contains(r#"unknown field "spec.true""#), "{err}");
}
