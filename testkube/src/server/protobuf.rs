//! Decoding of the protobuf request bodies that kubectl's typed clients send
//! (`kubectl create secret|configmap|namespace`): the `k8s\0` envelope around
//! `runtime.Unknown`, and the messages of Secret, ConfigMap and Namespace with
//! the parts of ObjectMeta a client sets (field numbers from
//! k8s.io/api/core/v1/generated.proto and apimachinery's meta/v1 generated.proto).
//! Other protobuf bodies are refused with 415. Responses are always JSON.

use super::errors::{ApiError, ApiResult};
use base64::Engine;
use serde_json::{Map, Value, json};

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    Bool,
    Int,
    RepStr,
    MapStr,
    MapBytes,
    Msg(&'static [(u64, &'static str, Kind)]),
    RepMsg(&'static [(u64, &'static str, Kind)]),
    Skip,
}

const OWNER_REF: &[(u64, &str, Kind)] = &[
    (1, "kind", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];
const OBJECT_META: &[(u64, &str, Kind)] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (7, "generation", Kind::Int),
    (8, "creationTimestamp", Kind::Skip),
    (9, "deletionTimestamp", Kind::Skip),
    (10, "deletionGracePeriodSeconds", Kind::Int),
    (11, "labels", Kind::MapStr),
    (12, "annotations", Kind::MapStr),
    (13, "ownerReferences", Kind::RepMsg(OWNER_REF)),
    (14, "finalizers", Kind::RepStr),
    (17, "managedFields", Kind::Skip),
];
const SECRET: &[(u64, &str, Kind)] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::MapBytes),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::MapStr),
    (5, "immutable", Kind::Bool),
];
const CONFIG_MAP: &[(u64, &str, Kind)] =
    &[(1, "metadata", Kind::Msg(OBJECT_META)), (2, "data", Kind::MapStr), (3, "binaryData", Kind::MapBytes), (4, "immutable", Kind::Bool)];
const NAMESPACE_SPEC: &[(u64, &str, Kind)] = &[(1, "finalizers", Kind::RepStr)];
const NAMESPACE: &[(u64, &str, Kind)] =
    &[(1, "metadata", Kind::Msg(OBJECT_META)), (2, "spec", Kind::Msg(NAMESPACE_SPEC)), (3, "status", Kind::Skip)];
const TYPE_META: &[(u64, &str, Kind)] = &[(1, "apiVersion", Kind::Str), (2, "kind", Kind::Str)];
const UNKNOWN: &[(u64, &str, Kind)] =
    &[(1, "typeMeta", Kind::Msg(TYPE_META)), (2, "raw", Kind::Bytes), (3, "contentEncoding", Kind::Str), (4, "contentType", Kind::Str)];

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad() -> ApiError {
    ApiError::bad_request("unable to decode protobuf request body")
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> ApiResult<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(bad)?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad())
    }
    fn bytes(&mut self) -> ApiResult<&'a [u8]> {
        let len = self.varint()? as usize;
        let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()).ok_or_else(bad)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn skip(&mut self, wire: u64) -> ApiResult<()> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => self.pos += 8,
            2 => {
                self.bytes()?;
            }
            5 => self.pos += 4,
            _ => return Err(bad()),
        }
        if self.pos > self.buf.len() {
            return Err(bad());
        }
        Ok(())
    }
}

fn text(b: &[u8]) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad())
}

fn map_entry(b: &[u8], bytes_value: bool) -> ApiResult<(String, Value)> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = text(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = if bytes_value { json!(base64::engine::general_purpose::STANDARD.encode(raw)) } else { json!(text(raw)?) };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn message(b: &[u8], fields: &[(u64, &str, Kind)]) -> ApiResult<Value> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut out = Map::new();
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some((_, name, kind)) = fields.iter().find(|f| f.0 == num) else {
            r.skip(wire)?;
            continue;
        };
        let name = name.to_string();
        match (*kind, wire) {
            (Kind::Str, 2) => {
                // Go's omitempty: an empty string is an unset field in JSON
                let t = text(r.bytes()?)?;
                if !t.is_empty() {
                    out.insert(name, json!(t));
                }
            }
            (Kind::Bytes, 2) => {
                out.insert(name, json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)));
            }
            (Kind::Bool, 0) => {
                out.insert(name, json!(r.varint()? != 0));
            }
            (Kind::Int, 0) => {
                let n = r.varint()? as i64;
                if n != 0 {
                    out.insert(name, json!(n));
                }
            }
            (Kind::RepStr, 2) => {
                let s = text(r.bytes()?)?;
                out.entry(name).or_insert_with(|| json!([])).as_array_mut().ok_or_else(bad)?.push(json!(s));
            }
            (Kind::MapStr, 2) | (Kind::MapBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(kind, Kind::MapBytes))?;
                out.entry(name).or_insert_with(|| json!({})).as_object_mut().ok_or_else(bad)?.insert(k, v);
            }
            (Kind::Msg(sub), 2) => {
                out.insert(name, message(r.bytes()?, sub)?);
            }
            (Kind::RepMsg(sub), 2) => {
                let m = message(r.bytes()?, sub)?;
                out.entry(name).or_insert_with(|| json!([])).as_array_mut().ok_or_else(bad)?.push(m);
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `application/vnd.kubernetes.protobuf` body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let unsupported = || ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf", &["application/json", "application/yaml"]);
    let inner = body.strip_prefix(b"k8s\x00").ok_or_else(bad)?;
    let unknown = message(inner, UNKNOWN)?;
    let api_version = unknown["typeMeta"]["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = unknown["typeMeta"]["kind"].as_str().unwrap_or("").to_string();
    let raw = base64::engine::general_purpose::STANDARD.decode(unknown["raw"].as_str().unwrap_or("")).map_err(|_| bad())?;
    let fields = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        _ => return Err(unsupported()),
    };
    let mut obj = message(&raw, fields)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}
