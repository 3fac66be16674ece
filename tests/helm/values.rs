//! charts/retl's values: values.schema.json is the one description of each
//! value; docs/helm-values.md is rendered from it, and values.yaml holds
//! exactly its defaults. The PrometheusRule's alerts query series that the
//! operator really exports.

use serde_json::Value;

use super::{chart, documents, template};

/// Labels the chart puts on its objects that deploy/ does not have: Helm's
/// own bookkeeping, which the drift test ignores.
pub const HELM_LABELS: [&str; 4] =
    ["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"];

fn schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap()).expect("values.schema.json is JSON")
}

/// (dotted path, schema) of each documented value, depth first in the
/// schema's order: objects with properties are walked, others are values.
fn values_of(schema: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (name, s) in schema["properties"].as_object().into_iter().flatten() {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if s["properties"].is_object() {
            if s.get("description").is_some() {
                out.push((path.clone(), s.clone()));
            }
            values_of(s, &path, out);
        } else {
            out.push((path, s.clone()));
        }
    }
}

fn type_of(s: &Value) -> String {
    let t = match &s["type"] {
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
        t => t.as_str().unwrap_or("any").to_string(),
    };
    match s["enum"].as_array() {
        Some(e) => format!("{t}: {}", e.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")),
        None => t,
    }
}

/// docs/helm-values.md, from values.schema.json.
pub fn markdown() -> String {
    let mut rows = Vec::new();
    values_of(&schema(), "", &mut rows);
    let mut out = String::from(
        "# Values of the Helm chart\n\n\
         Every value of `charts/retl` (`helm install retl charts/retl -f my-values.yaml`).\n\
         Generated from `charts/retl/values.schema.json`, which `helm` checks each\n\
         install against: an unknown key is refused. Regenerate with\n\
         `RETL_UPDATE_DOCS=1 cargo test --test helm values_doc`.\n\n\
         | value | type | default | description |\n| --- | --- | --- | --- |\n",
    );
    for (path, s) in rows {
        let default = s.get("default").map(|d| format!("`{d}`")).unwrap_or_default();
        let description = s["description"].as_str().unwrap_or_default().replace('|', "\\|");
        out += &format!("| `{path}` | {} | {default} | {description} |\n", type_of(&s));
    }
    out
}

#[test]
fn values_doc_is_the_schema_rendered() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/helm-values.md");
    let generated = markdown();
    if std::env::var_os("RETL_UPDATE_DOCS").is_some() {
        std::fs::write(&file, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(on_disk, generated, "docs/helm-values.md is out of date: `RETL_UPDATE_DOCS=1 cargo test --test helm values_doc`");
    for value in ["`image.tag`", "`workerNamespaces`", "`metrics.prometheusRule.enabled`", "`networkPolicy.enabled`"] {
        assert!(generated.contains(value), "{value} documented");
    }
}

#[test]
fn values_yaml_holds_the_schema_defaults() {
    let values: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap()).unwrap();
    let mut rows = Vec::new();
    values_of(&schema(), "", &mut rows);
    let mut documented = 0;
    for (path, s) in rows.iter().filter(|(_, s)| !s["properties"].is_object()) {
        let pointer = format!("/{}", path.replace('.', "/"));
        let actual = values.pointer(&pointer).unwrap_or_else(|| panic!("{path} is documented but not in values.yaml"));
        assert_eq!(Some(actual), s.get("default"), "values.yaml's {path} is not the schema's default");
        documented += 1;
    }
    fn leaves(v: &Value, prefix: &str) -> usize {
        match v.as_object() {
            // Free-form values (resources, securityContext, ...) count once.
            Some(o) if !o.is_empty() && !["resources", "podSecurityContext", "securityContext"].contains(&prefix) => {
                o.iter().map(|(k, v)| leaves(v, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") })).sum()
            }
            _ => 1,
        }
    }
    assert_eq!(leaves(&values, ""), documented, "every value in values.yaml is in values.schema.json");
}

/// The series names (`retl_...`) and the `outcome="..."` values that an
/// alert expression uses.
fn queried(expr: &str) -> (Vec<String>, Vec<String>) {
    let word = |rest: &str| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let names = expr.match_indices("retl_").map(|(i, _)| word(&expr[i..])).collect();
    let outcomes = expr.match_indices("outcome=\"").map(|(i, m)| word(&expr[i + m.len()..])).collect();
    (names, outcomes)
}

#[test]
fn the_alerts_query_what_the_operator_exports() {
    use retl::api::SyncPhase;
    use retl::controller::metrics::{Metrics, SyncLabels};
    let yaml =
        template("retl-system", &[], &["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true"]);
    let docs = documents(&yaml);
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").expect("a PrometheusRule");
    let monitor = docs.iter().find(|d| d["kind"] == "ServiceMonitor").expect("a ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true, "the Mapping's namespace label survives the scrape");

    // What a scrape of the operator returns once a sync has finished.
    let metrics = Metrics::default();
    metrics.syncs.get_or_create(&SyncLabels { namespace: "a".into(), mapping: "m".into(), outcome: SyncPhase::Failed.to_string() }).inc();
    let exported = metrics.encode();
    let phases: Vec<String> =
        [SyncPhase::Successful, SyncPhase::PartiallySuccessful, SyncPhase::Failed].iter().map(ToString::to_string).collect();
    let alerts: Vec<&Value> = rule["spec"]["groups"][0]["rules"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = alerts.iter().filter_map(|a| a["alert"].as_str()).collect();
    assert_eq!(names, ["RetlSyncFailed", "RetlSyncPartiallySuccessful", "RetlSyncStuckInProgress", "RetlNoSuccessfulSync"]);
    for alert in alerts {
        let expr = alert["expr"].as_str().unwrap();
        let (series, outcomes) = queried(expr);
        assert!(!series.is_empty(), "{expr}");
        for s in series {
            assert!(
                exported.lines().any(|l| l.starts_with(&format!("{s}{{")) || l.starts_with(&format!("{s} "))),
                "{s} is not exported:\n{exported}"
            );
        }
        for o in outcomes {
            assert!(phases.contains(&o), "outcome {o:?} is not a phase the operator counts ({phases:?})");
        }
        assert!(alert["annotations"]["summary"].as_str().is_some_and(|s| !s.contains("{{`")), "{alert}");
    }
}
