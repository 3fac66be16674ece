//! API errors rendered as `metav1.Status`, with the codes, reasons and message
//! wording of kube-apiserver (k8s.io/apimachinery/pkg/api/errors).

use serde_json::{Value, json};

/// One `details.causes` entry of an Invalid (422) error.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// e.g. `FieldValueRequired`, `FieldValueInvalid`.
    pub reason: String,
    /// e.g. `Required value`, `Invalid value: "x": ...`.
    pub message: String,
    /// e.g. `spec.replicas`.
    pub field: String,
}

impl Cause {
    /// `field.Required`: `spec.x: Required value`.
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Cause { reason: "FieldValueRequired".into(), message, field: field.into() }
    }
    /// `field.Invalid`: `spec.x: Invalid value: VALUE: detail`.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        Cause { reason: "FieldValueInvalid".into(), message: format!("Invalid value: {}: {detail}", go_value(value)), field: field.into() }
    }
    /// `field.TypeInvalid` (same wording as Invalid, different reason).
    pub fn type_invalid(field: &str, value: &Value, detail: &str) -> Self {
        Cause {
            reason: "FieldValueTypeInvalid".into(),
            message: format!("Invalid value: {}: {detail}", go_value(value)),
            field: field.into(),
        }
    }
    /// `field.NotSupported`: `Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &Value, supported: &[Value]) -> Self {
        let list: Vec<String> = supported.iter().map(go_value).collect();
        Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {}: supported values: {}", go_value(value), list.join(", ")),
            field: field.into(),
        }
    }
    /// `field.Forbidden`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause { reason: "FieldValueForbidden".into(), message: format!("Forbidden: {detail}"), field: field.into() }
    }
    /// `field.TooLong`.
    pub fn too_long(field: &str, max: u64) -> Self {
        Cause { reason: "FieldValueTooLong".into(), message: format!("Too long: may not be more than {max} bytes"), field: field.into() }
    }
    /// `field.TooMany`.
    pub fn too_many(field: &str, actual: usize, max: u64) -> Self {
        Cause {
            reason: "FieldValueTooMany".into(),
            message: format!("Too many: {actual}: must have at most {max} items"),
            field: field.into(),
        }
    }
    /// `field.Duplicate`.
    pub fn duplicate(field: &str, value: &Value) -> Self {
        Cause { reason: "FieldValueDuplicate".into(), message: format!("Duplicate value: {}", go_value(value)), field: field.into() }
    }
    /// The `field: message` form used in the Status message.
    pub fn render(&self) -> String {
        if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) }
    }
}

/// Formats a value as Go's `%#v`-ish rendering used by field errors: strings quoted,
/// numbers and booleans bare, objects/arrays as compact JSON.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// An error answered as a `metav1.Status`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `syncs.retl.dev` or `secrets` (core group has no suffix).
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String, details: Option<Value>) -> Self {
        ApiError { code, reason, message, details }
    }
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", qualified(plural, group)),
            Some(json!({"name": name, "group": group, "kind": plural})),
        )
    }
    /// 404 for a URL that names no known resource.
    pub fn no_route(path: &str) -> Self {
        let _ = path;
        Self::new(404, "NotFound", "the server could not find the requested resource".into(), Some(json!({})))
    }
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", qualified(plural, group)),
            Some(json!({"name": name, "group": group, "kind": plural})),
        )
    }
    /// Stale resourceVersion or failed precondition.
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(plural, group)),
            Some(json!({"name": name, "group": group, "kind": plural})),
        )
    }
    pub fn stale(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(group, plural, name, "the object has been modified; please apply your changes to the latest version and try again")
    }
    /// 422 with causes. `kind` is the Kind (e.g. `Sync`), as in `Sync.retl.dev "x" is invalid`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let list = if rendered.len() == 1 { rendered[0].clone() } else { format!("[{}]", rendered.join(", ")) };
        let message = format!("{} {name:?} is invalid: {list}", qualified(kind, group));
        let causes: Vec<Value> = causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
        Self::new(422, "Invalid", message, Some(json!({"name": name, "group": group, "kind": kind, "causes": causes})))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), None)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message.into(), Some(json!({})))
    }
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        let _ = content_type;
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {}", accepted.join(", ")),
            Some(json!({})),
        )
    }
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message.into(), Some(json!({})))
    }
    /// 410 with reason Expired (too old resourceVersion / expired continue token).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message.into(), None)
    }
    pub fn forbidden(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} {name:?} is forbidden: {why}", qualified(plural, group)),
            Some(json!({"name": name, "group": group, "kind": plural})),
        )
    }
    /// 413: the object or request body is too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message.into(), None)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message.into(), None)
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
