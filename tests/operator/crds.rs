//! retl's CRDs as the real API server serves them (what the retired test
//! API server's retl_crds test checked against its imitation): defaults, printer
//! columns of `kubectl get syncs`, selection by label and by the declared
//! selectable fields, the status subresource, and the server's own words
//! for an invalid Sync.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

use super::cluster::cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_print_select_and_validate_as_documented() {
    let ns = cluster().namespace("crds");
    for (name, status) in [("customers-1", "failed"), ("customers-2", "successful")] {
        ns.apply_yaml(&format!(
            "apiVersion: retl.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {name}\n  labels: {{retl.dev/mapping: customers, retl.dev/status: {status}}}\nspec:\n  mappingRef: {{name: customers}}\n"
        ))
        .unwrap();
    }
    let sync = ns.kubectl_json(&["get", "sync", "customers-1"]).unwrap();
    assert_eq!(sync["spec"]["trigger"], "Manual", "schema default applied");

    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("retl.dev", "v1alpha1", "Sync"), "syncs");
    let api: Api<DynamicObject> = Api::namespaced_with(cluster().client(), ns.name(), &ar);
    let status = json!({"status": {
        "phase": "Failed", "startTime": "2026-01-01T00:00:00Z", "duration": "12s",
        "extracted": {"total": 10, "added": 3, "updated": 2, "deleted": 1, "unchanged": 4, "retried": 0},
        "loaded": {"succeeded": 5, "failed": 1, "skipped": 0, "expired": 0, "new": 3, "updated": 1, "deleted": 1},
    }});
    api.patch_status("customers-1", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    api.patch_status("customers-2", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Successful"}}))).await.unwrap();
    let spec_via_status = api.get("customers-1").await.unwrap();
    assert_eq!(spec_via_status.data["spec"]["mappingRef"]["name"], "customers", "the status subresource leaves spec alone");

    let out = ns.kubectl(&["get", "syncs"]).unwrap();
    let rows = out.table();
    assert_eq!(
        rows[0],
        ["NAME", "MAPPING", "STATUS", "STARTED", "DURATION", "EXTRACTED", "ADDED", "UPDATED", "DELETED", "LOADED", "FAILED", "AGE"],
        "{}",
        out.stdout
    );
    let row = rows.iter().find(|r| r[0] == "customers-1").unwrap();
    assert_eq!(row[1..3], ["customers", "Failed"]);
    assert!(row[3].ends_with('d') || row[3].contains('y'), "STARTED is an age: {row:?}");
    assert_eq!(row[4..11], ["12s", "10", "3", "2", "1", "5", "1"], "{}", out.stdout);

    let failed = ns.kubectl_ok(&["get", "syncs", "--field-selector", "status.phase=Failed", "-o", "name"]).unwrap();
    assert_eq!(failed.trim(), "sync.retl.dev/customers-1");
    let ok = ns.kubectl_ok(&["get", "syncs", "-l", "retl.dev/status=successful,retl.dev/mapping=customers", "-o", "name"]).unwrap();
    assert_eq!(ok.trim(), "sync.retl.dev/customers-2");
    let by_mapping = ns.kubectl_ok(&["get", "syncs", "--field-selector", "spec.mappingRef.name=customers", "-o", "name"]).unwrap();
    assert_eq!(by_mapping.lines().count(), 2);

    let bad = ns
        .kubectl_stdin(
            &["apply", "-f", "-"],
            "apiVersion: retl.dev/v1alpha1\nkind: Sync\nmetadata: {name: bad}\nspec: {trigger: Sometimes}\n",
        )
        .unwrap();
    assert!(!bad.success());
    assert!(
        bad.stderr.contains(r#"The Sync "bad" is invalid"#) && bad.stderr.contains("spec.mappingRef: Required value"),
        "{}",
        bad.stderr
    );
    let unknown = ns
        .kubectl_stdin(
            &["apply", "-f", "-"],
            "apiVersion: retl.dev/v1alpha1\nkind: Sync\nmetadata: {name: extra}\nspec: {mappingRef: {name: m}, colour: red}\n",
        )
        .unwrap();
    assert!(!unknown.success() && unknown.stderr.contains("unknown field \"spec.colour\""), "strict field validation: {}", unknown.stderr);
}

/// The sync overview's filters on Mappings: mapping status (enabled),
/// latest sync status, model and destination, as field selectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_filter_as_the_sync_overview_does() {
    let ns = cluster().namespace("mapping-filters");
    for (name, enabled, model) in [("a", true, "users"), ("b", false, "users"), ("c", true, "orders")] {
        ns.apply_yaml(&format!(
            "apiVersion: retl.dev/v1alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec:\n  modelRef: {{name: {model}}}\n  destinationRef: {{name: crm}}\n  action: upsert\n  enabled: {enabled}\n"
        ))
        .unwrap();
    }
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("retl.dev", "v1alpha1", "Mapping"), "mappings");
    let api: Api<DynamicObject> = Api::namespaced_with(cluster().client(), ns.name(), &ar);
    for (name, phase) in [("a", "Failed"), ("c", "Successful")] {
        let status = json!({"status": {"lastSync": {"name": format!("{name}-1"), "phase": phase}}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    }
    let names = |selector: &str| {
        let out = ns.kubectl_ok(&["get", "mappings", "--field-selector", selector, "-o", "name"]).unwrap();
        out.lines().map(|l| l.trim_start_matches("mapping.retl.dev/").to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names("spec.enabled=false"), ["b"]);
    assert_eq!(names("status.lastSync.phase=Failed"), ["a"]);
    assert_eq!(names("spec.modelRef.name=users,spec.enabled=true"), ["a"]);
    assert_eq!(names("spec.destinationRef.name=crm").len(), 3);
}
