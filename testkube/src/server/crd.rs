//! CustomResourceDefinitions: validation of the CRD itself (names, versions,
//! structural schemas), its status, and (un)registering the served types.

use super::errors::Cause;
use super::registry::{BuiltinTable, CustomInfo, ResourceType};
use super::schema;
use super::store::State;
use serde_json::{Value, json};

/// Validation errors of a CRD object (apiextensions validation, the parts retl's CRDs exercise).
pub fn validate(st: &State, crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = vec![];
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    if group.is_empty() {
        errs.push(Cause::required("spec.group", ""));
    }
    if plural.is_empty() {
        errs.push(Cause::required("spec.names.plural", ""));
    }
    if spec["names"]["kind"].as_str().unwrap_or("").is_empty() {
        errs.push(Cause::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(Cause::invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    let scope = &spec["scope"];
    if scope != "Namespaced" && scope != "Cluster" {
        errs.push(Cause::not_supported("spec.scope", scope, &[json!("Cluster"), json!("Namespaced")]));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(Cause::invalid("spec.versions", &json!([]), "must have exactly one version marked as storage version"));
    }
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if !versions.is_empty() && storage != 1 {
        errs.push(Cause::invalid(
            "spec.versions",
            &Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        if v["name"].as_str().unwrap_or("").is_empty() {
            errs.push(Cause::required(&format!("{base}.name"), ""));
        }
        match v["schema"].get("openAPIV3Schema") {
            None => errs.push(Cause::required(&format!("{base}.schema.openAPIV3Schema"), "schemas are required")),
            Some(s) => errs.extend(schema::structural_errors(s, &format!("{base}.schema.openAPIV3Schema"))),
        }
        for (j, c) in v["additionalPrinterColumns"].as_array().into_iter().flatten().enumerate() {
            let cp = format!("{base}.additionalPrinterColumns[{j}]");
            let t = &c["type"];
            if !["integer", "number", "string", "boolean", "date"].contains(&t.as_str().unwrap_or("")) {
                errs.push(Cause::not_supported(
                    &format!("{cp}.type"),
                    t,
                    &["boolean", "date", "integer", "number", "string"].map(|x| json!(x)),
                ));
            }
            if c["jsonPath"].as_str().unwrap_or("").is_empty() {
                errs.push(Cause::required(&format!("{cp}.jsonPath"), ""));
            }
        }
        for (j, f) in v["selectableFields"].as_array().into_iter().flatten().enumerate() {
            let jp = f["jsonPath"].as_str().unwrap_or("");
            let p = format!("{base}.selectableFields[{j}].jsonPath");
            if jp.is_empty() {
                errs.push(Cause::required(&p, ""));
                continue;
            }
            let fields: Vec<&str> = jp.trim_start_matches('.').split('.').collect();
            let mut s = &v["schema"]["openAPIV3Schema"];
            for f in &fields {
                s = &s["properties"][*f];
            }
            match s["type"].as_str() {
                Some("string") | Some("integer") | Some("boolean") => {}
                Some(_) => errs.push(Cause::invalid(
                    &p,
                    &json!(jp),
                    "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
                )),
                None => errs.push(Cause::invalid(&p, &json!(jp), "is an invalid path: does not refer to a field in the schema")),
            }
        }
    }
    // names must not collide with another CRD (or a built-in) serving the same group/plural
    if old.is_none() {
        for t in st.registry.types.values() {
            if t.group == group && t.plural == plural && t.custom.as_ref().map(|c| c.crd_name != name).unwrap_or(true) {
                errs.push(Cause::invalid("spec.names.plural", &json!(plural), "is already in use"));
                break;
            }
        }
    }
    errs
}

/// Sets `status` as the apiextensions controllers do once names are accepted.
pub fn set_status(crd: &mut Value) {
    let now = super::objects::now();
    let names = crd["spec"]["names"].clone();
    let mut accepted = names.clone();
    if accepted["singular"].is_null() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or("").to_lowercase());
    }
    if accepted["listKind"].is_null() {
        accepted["listKind"] = json!(format!("{}List", names["kind"].as_str().unwrap_or("")));
    }
    let storage: Vec<Value> =
        crd["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect();
    let keep_time = |t: &str| {
        crd["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| now.clone())
    };
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": keep_time("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": keep_time("Established")},
        ],
        "storedVersions": storage,
    });
}

/// Serves every `served` version of the CRD.
pub fn register(st: &mut State, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
    st.registry.remove_crd(&name);
    let spec = &crd["spec"];
    let kind = spec["names"]["kind"].as_str().unwrap_or("").to_string();
    let strings = |v: &Value| -> Vec<String> { v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect() };
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"] == false {
            continue;
        }
        st.registry.insert(ResourceType {
            group: spec["group"].as_str().unwrap_or("").into(),
            version: v["name"].as_str().unwrap_or("").into(),
            kind: kind.clone(),
            plural: spec["names"]["plural"].as_str().unwrap_or("").into(),
            singular: spec["names"]["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase()),
            namespaced: spec["scope"] == "Namespaced",
            short_names: strings(&spec["names"]["shortNames"]),
            categories: strings(&spec["names"]["categories"]),
            status_subresource: v["subresources"].get("status").is_some(),
            has_generation: true,
            table: BuiltinTable::Generic,
            custom: Some(CustomInfo {
                schema: v["schema"].get("openAPIV3Schema").cloned(),
                printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
                selectable_fields: v["selectableFields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["jsonPath"].as_str().map(String::from))
                    .collect(),
                crd_name: name.clone(),
            }),
        });
    }
}

/// Stops serving the CRD's types and drops their objects.
pub fn unregister(st: &mut State, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or("");
    st.registry.remove_crd(name);
    let storage = format!("{group}/{plural}");
    let keys: Vec<_> = st.objects.get(&storage).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for k in keys {
        st.remove(&storage, &k);
    }
}
