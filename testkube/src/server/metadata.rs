//! Validation of object metadata as kube-apiserver does it: names (RFC 1123
//! subdomains), label keys and values, annotation keys and size
//! (k8s.io/apimachinery/pkg/api/validation and pkg/util/validation).

use super::errors::Cause;
use serde_json::{Value, json};

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

pub(super) fn valid_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn label_token_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_' || *c == b'.')
}

/// apimachinery `IsQualifiedName`: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters.
fn qualified_name_errors(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = vec![];
    if prefix.is_some_and(|p| !valid_subdomain(p)) {
        errs.push(format!("prefix part {DNS1123_SUBDOMAIN_MSG}"));
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".into());
        }
        if !label_token_ok(name) {
            errs.push(QUALIFIED_NAME_MSG.into());
        }
    }
    errs
}

/// Labels and annotations as kube-apiserver validates them (apimachinery `ValidateLabels`, `ValidateAnnotations`).
fn label_causes(m: &Value, causes: &mut Vec<Cause>) {
    if let Some(labels) = m["labels"].as_object() {
        for (k, v) in labels {
            for e in qualified_name_errors(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), &e));
            }
            if let Some(s) = v.as_str() {
                if s.len() > 63 {
                    causes.push(Cause::invalid("metadata.labels", v, "must be no more than 63 characters"));
                }
                if !s.is_empty() && !label_token_ok(s) {
                    causes.push(Cause::invalid("metadata.labels", v, LABEL_VALUE_MSG));
                }
            }
        }
    }
    if let Some(annotations) = m["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in annotations {
            for e in qualified_name_errors(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), &e));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            causes.push(Cause {
                reason: "FieldValueTooLong".into(),
                message: "Too long: must have at most 262144 bytes".into(),
                field: "metadata.annotations".into(),
            });
        }
    }
}

pub(super) fn metadata_causes(o: &Value, creating: bool) -> Vec<Cause> {
    let mut causes = vec![];
    let m = &o["metadata"];
    let name = m["name"].as_str().unwrap_or("");
    if creating && name.is_empty() {
        causes.push(Cause::required("metadata.name", "name or generateName is required"));
    } else if creating && !valid_subdomain(name) {
        causes.push(Cause::invalid("metadata.name", &json!(name), DNS1123_SUBDOMAIN_MSG));
    }
    label_causes(m, &mut causes);
    for field in ["labels", "annotations"] {
        if let Some(map) = m[field].as_object() {
            for (k, v) in map {
                if !v.is_string() {
                    causes.push(Cause::invalid(&format!("metadata.{field}[{k}]"), v, "must be a string"));
                }
            }
        } else if !m[field].is_null() {
            causes.push(Cause::invalid(&format!("metadata.{field}"), &m[field], "must be a map of strings"));
        }
    }
    causes
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Namespace names are RFC 1123 labels (no dots, at most 63 characters).
pub(super) fn namespace_name_causes(name: &str) -> Vec<Cause> {
    if valid_subdomain(name) && !name.contains('.') && name.len() <= 63 {
        return vec![];
    }
    let mut causes = vec![];
    if name.len() > 63 {
        causes.push(Cause::invalid("metadata.name", &json!(name), "must be no more than 63 characters"));
    }
    causes.push(Cause::invalid("metadata.name", &json!(name), DNS1123_LABEL_MSG));
    causes
}
