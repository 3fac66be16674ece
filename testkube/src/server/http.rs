//! HTTP routing: discovery endpoints and the resource REST paths
//! `/api/v1/...` and `/apis/GROUP/VERSION/...`.

use super::errors::{ApiError, ApiResult};
use super::objects::{self, DeleteOpts, FieldValidation, WriteOpts, Written};
use super::registry::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::table::{self, IncludeObject};
use super::{Shared, discovery, openapi, protobuf, watch};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub fn router(shared: Arc<Shared>) -> Router {
    // Bodies up to 16 MiB reach the handler, which answers the too-large ones with a Status.
    Router::new().fallback(handle).layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024)).with_state(shared)
}

fn json_response(code: u16, v: &Value, warnings: &[String]) -> Response {
    let mut b = Response::builder().status(code).header("content-type", "application/json");
    for w in warnings {
        b = b.header("warning", format!("299 - {w:?}"));
    }
    b.body(Body::from(serde_json::to_vec(v).unwrap_or_default())).expect("response")
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status(), &[])
}

struct Request {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }
    fn header(&self, k: &str) -> &str {
        self.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true") | Some("1"))
    }
}

/// kube-apiserver's limit on request bodies.
const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_REQUEST_BYTES {
        return error_response(&ApiError::too_large(format!("Request entity too large: limit is {MAX_REQUEST_BYTES}")));
    }
    let query: HashMap<String, String> =
        uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let req = Request { method, path: uri.path().trim_end_matches('/').to_string(), query, headers, body };
    if let Some(e) = super::audit::entry(&req.method, &req.path, &req.query, req.header("user-agent")) {
        shared.audit.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }
    let resp = match route(&shared, &req) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if std::env::var_os("TESTKUBE_TRACE").is_some() {
        eprintln!(
            "testkube: {} {} -> {} (content-type: {:?}, accept: {:?}, ua: {:?})",
            req.method,
            uri,
            resp.status(),
            req.header("content-type"),
            req.header("accept"),
            req.header("user-agent")
        );
    }
    resp
}

fn route(shared: &Arc<Shared>, req: &Request) -> ApiResult<Response> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let st = || shared.lock();
    match segs.as_slice() {
        ["version"] => Ok(json_response(200, &discovery::version(), &[])),
        ["healthz"] | ["readyz"] | ["livez"] => {
            Ok(Response::builder().status(200).header("content-type", "text/plain").body(Body::from("ok")).expect("response"))
        }
        ["api"] => Ok(json_response(200, &discovery::core_versions(&shared.addr.to_string()), &[])),
        ["apis"] => return Ok(json_response(200, &discovery::group_list(&st().registry), &[])),
        ["api", "v1"] => {
            return discovery::resource_list(&st().registry, "", "v1")
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(|| ApiError::no_route(&req.path));
        }
        ["apis", g] => {
            return discovery::group(&st().registry, g).map(|d| json_response(200, &d, &[])).ok_or_else(|| ApiError::no_route(&req.path));
        }
        ["apis", g, v] => {
            return discovery::resource_list(&st().registry, g, v)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(|| ApiError::no_route(&req.path));
        }
        ["openapi", "v3"] => return Ok(json_response(200, &openapi::index(&st().registry), &[])),
        ["openapi", "v3", "api", v] => {
            return openapi::document(&st().registry, "", v)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(|| ApiError::no_route(&req.path));
        }
        ["openapi", "v3", "apis", g, v] => {
            return openapi::document(&st().registry, g, v)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(|| ApiError::no_route(&req.path));
        }
        ["api", "v1", rest @ ..] => resource(shared, req, "", "v1", rest),
        ["apis", g, v, rest @ ..] => resource(shared, req, g, v, rest),
        _ => Err(ApiError::no_route(&req.path)),
    }
}

struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    sub: String,
    watch_path: bool,
}

fn parse_target(shared: &Shared, group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
    let reg = shared.lock().registry.clone();
    let (watch_path, rest) = match rest.first() {
        Some(&"watch") => (true, &rest[1..]),
        _ => (false, rest),
    };
    let not_found = || ApiError::no_route("");
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(rt) = reg.get(group, version, rest[2]).filter(|t| t.namespaced)
    {
        if rest.len() > 5 {
            return Err(not_found());
        }
        return Ok(Target {
            rt,
            namespace: Some(rest[1].to_string()),
            name: rest.get(3).map(|s| s.to_string()),
            sub: rest.get(4).unwrap_or(&"").to_string(),
            watch_path,
        });
    }
    let rt = rest.first().and_then(|p| reg.get(group, version, p)).ok_or_else(not_found)?;
    if rest.len() > 3 || (rest.len() > 1 && rt.namespaced) {
        return Err(not_found());
    }
    Ok(Target { rt, namespace: None, name: rest.get(1).map(|s| s.to_string()), sub: rest.get(2).unwrap_or(&"").to_string(), watch_path })
}

fn decode_body(req: &Request) -> ApiResult<Value> {
    let ct = req.header("content-type");
    let v: Value = if ct.starts_with("application/vnd.kubernetes.protobuf") {
        protobuf::decode(&req.body)?
    } else if ct.contains("yaml") {
        serde_yaml_ng::from_slice(&req.body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("Object 'Kind' is missing in '{}': {e}", String::from_utf8_lossy(&req.body))))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    Ok(v)
}

fn write_opts(req: &Request) -> ApiResult<WriteOpts> {
    let ua = req.header("user-agent");
    let default_manager = ua.split('/').next().unwrap_or("").to_string();
    let manager = req.q("fieldManager").map(String::from).unwrap_or(default_manager);
    let field_validation = match req.q("fieldValidation") {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => return Err(ApiError::bad_request(format!("fieldValidation parameter unsupported: {other:?}"))),
    };
    Ok(WriteOpts { manager, dry_run: req.q("dryRun") == Some("All"), field_validation, force: req.flag("force") })
}

/// What the client accepts: a Table, PartialObjectMetadata, or plain objects.
enum Wanted {
    Plain,
    Table(IncludeObject),
    Metadata,
}

fn wanted(req: &Request) -> Wanted {
    let accept = req.header("accept");
    let first = accept.split(',').next().unwrap_or("");
    if first.contains("as=Table") {
        Wanted::Table(IncludeObject::parse(req.q("includeObject")))
    } else if first.contains("as=PartialObjectMetadata") {
        Wanted::Metadata
    } else {
        Wanted::Plain
    }
}

fn written(w: Written) -> Response {
    json_response(w.code, &w.object, &w.warnings)
}

fn resource(shared: &Arc<Shared>, req: &Request, group: &str, version: &str, rest: &[&str]) -> ApiResult<Response> {
    let t = parse_target(shared, group, version, rest)?;
    let rt = t.rt.clone();
    let ns = t.namespace.as_deref();
    let sub = t.sub.as_str();
    let served = sub.is_empty() || (sub == "status" && rt.status_subresource) || (sub == "finalize" && rt.plural == "namespaces");
    if !served {
        return Err(ApiError::no_route(&req.path));
    }
    let sub = if sub == "finalize" { "" } else { sub };
    let is_watch = t.watch_path || req.flag("watch");
    match (&req.method, &t.name) {
        (&Method::GET, _) if is_watch => watch_request(shared, req, &t),
        (&Method::GET, Some(name)) => {
            let o = objects::get(&shared.lock(), &rt, ns, name)?;
            Ok(match wanted(req) {
                Wanted::Table(inc) => json_response(
                    200,
                    &table::table(
                        &rt,
                        std::slice::from_ref(&o),
                        json!({"resourceVersion": o["metadata"]["resourceVersion"]}),
                        inc,
                        !req.q("includeHeaders").map(|v| v == "false").unwrap_or(false),
                    ),
                    &[],
                ),
                Wanted::Metadata => json_response(200, &table::partial_metadata(&o), &[]),
                Wanted::Plain => json_response(200, &o, &[]),
            })
        }
        (&Method::GET, None) => list(shared, req, &rt, ns),
        (&Method::POST, None) => {
            if rt.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource".to_string()));
            }
            let body = decode_body(req)?;
            let opts = write_opts(req)?;
            let w = objects::create(&mut shared.lock(), &rt, ns, body, &opts)?;
            Ok(written(w))
        }
        (&Method::PUT, Some(name)) => {
            let body = decode_body(req)?;
            let opts = write_opts(req)?;
            let w = objects::update(&mut shared.lock(), &rt, ns, name, sub, body, &opts)?;
            shared.gc_wake.notify_one();
            Ok(written(w))
        }
        (&Method::PATCH, Some(name)) => {
            let opts = write_opts(req)?;
            let ct = req.header("content-type").to_string();
            let w =
                objects::patch(&mut shared.lock(), &rt, ns, name, sub, objects::PatchBody { content_type: &ct, body: &req.body }, &opts)?;
            shared.gc_wake.notify_one();
            Ok(written(w))
        }
        (&Method::DELETE, Some(name)) if sub.is_empty() => {
            let opts = delete_opts(req)?;
            let w = objects::delete(&mut shared.lock(), &rt, ns, name, &opts)?;
            shared.gc_wake.notify_one();
            Ok(written(w))
        }
        (&Method::DELETE, None) => delete_collection(shared, req, &rt, ns),
        _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
    }
}

fn delete_opts(req: &Request) -> ApiResult<DeleteOpts> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let mut propagation = body["propagationPolicy"].as_str().map(String::from).or_else(|| req.q("propagationPolicy").map(String::from));
    if propagation.is_none() {
        match body["orphanDependents"].as_bool().or_else(|| req.q("orphanDependents").map(|v| v == "true")) {
            Some(true) => propagation = Some("Orphan".into()),
            Some(false) => propagation = Some("Background".into()),
            None => {}
        }
    }
    let dry_run = req.q("dryRun") == Some("All") || body["dryRun"].as_array().map(|a| a.iter().any(|v| v == "All")).unwrap_or(false);
    Ok(DeleteOpts {
        propagation,
        precondition_uid: body["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv: body["preconditions"]["resourceVersion"].as_str().map(String::from),
        dry_run,
    })
}

fn selectors(req: &Request, rt: &ResourceType) -> ApiResult<(LabelSelector, FieldSelector)> {
    Ok((LabelSelector::parse(req.q("labelSelector").unwrap_or(""))?, FieldSelector::parse(req.q("fieldSelector").unwrap_or(""), rt)?))
}

fn list(shared: &Arc<Shared>, req: &Request, rt: &Arc<ResourceType>, ns: Option<&str>) -> ApiResult<Response> {
    let (labels, fields) = selectors(req, rt)?;
    let limit = req.q("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let st = shared.lock();
    let start_after: Option<(String, String)> = match req.q("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let v: Value = serde_json::from_str(c).map_err(|_| {
                ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            })?;
            let rv = v["rv"].as_u64().unwrap_or(0);
            if rv < st.compacted_rv {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            Some((v["ns"].as_str().unwrap_or("").into(), v["name"].as_str().unwrap_or("").into()))
        }
        None => None,
    };
    let all: Vec<Value> = st
        .objects
        .get(&rt.storage_key())
        .map(|m| {
            m.iter()
                .filter(|(k, _)| ns.map(|n| k.0 == n).unwrap_or(true))
                .filter(|(k, _)| start_after.as_ref().map(|s| *k > s).unwrap_or(true))
                .map(|(_, o)| objects::to_served(rt, o.clone()))
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect()
        })
        .unwrap_or_default();
    let rv = st.rv;
    drop(st);
    let (items, cont, remaining) = match limit {
        Some(l) if all.len() > l => {
            let last = &all[l - 1];
            let token =
                json!({"rv": rv, "ns": last["metadata"]["namespace"].as_str().unwrap_or(""), "name": last["metadata"]["name"]}).to_string();
            (all[..l].to_vec(), Some(token), Some(all.len() - l))
        }
        _ => (all, None, None),
    };
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    Ok(match wanted(req) {
        Wanted::Table(inc) => {
            json_response(200, &table::table(rt, &items, meta, inc, !req.q("includeHeaders").map(|v| v == "false").unwrap_or(false)), &[])
        }
        Wanted::Metadata => {
            let items: Vec<Value> = items.iter().map(table::partial_metadata).collect();
            json_response(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
                &[],
            )
        }
        Wanted::Plain => {
            let items: Vec<Value> = items
                .into_iter()
                .map(|mut o| {
                    if rt.is_builtin()
                        && let Some(m) = o.as_object_mut()
                    {
                        m.remove("apiVersion");
                        m.remove("kind");
                    }
                    o
                })
                .collect();
            json_response(
                200,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": meta, "items": items}),
                &[],
            )
        }
    })
}

fn delete_collection(shared: &Arc<Shared>, req: &Request, rt: &Arc<ResourceType>, ns: Option<&str>) -> ApiResult<Response> {
    let (labels, fields) = selectors(req, rt)?;
    let opts = delete_opts(req)?;
    let mut st = shared.lock();
    let names: Vec<(String, String)> = st
        .objects
        .get(&rt.storage_key())
        .map(|m| {
            m.iter()
                .filter(|(k, _)| ns.map(|n| k.0 == n).unwrap_or(true))
                .filter(|(_, o)| {
                    let s = objects::to_served(rt, (*o).clone());
                    labels.matches(&s) && fields.matches(&s)
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut items = vec![];
    for (n, name) in names {
        let n = if n.is_empty() { None } else { Some(n.as_str()) };
        if let Ok(w) = objects::delete(&mut st, rt, n, &name, &opts) {
            items.push(w.object);
        }
    }
    let rv = st.rv;
    drop(st);
    shared.gc_wake.notify_one();
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
        &[],
    ))
}

fn watch_request(shared: &Arc<Shared>, req: &Request, t: &Target) -> ApiResult<Response> {
    let (labels, mut fields) = selectors(req, &t.rt)?;
    if let Some(name) = &t.name {
        fields = FieldSelector::parse(&format!("metadata.name={name}"), &t.rt)?;
    }
    let p = watch::WatchParams {
        resource_version: req.q("resourceVersion").map(String::from),
        bookmarks: req.flag("allowWatchBookmarks"),
        send_initial_events: req.flag("sendInitialEvents"),
        timeout: req.q("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs),
        labels,
        fields,
        namespace: t.namespace.clone(),
        table: match wanted(req) {
            Wanted::Table(i) => Some(i),
            _ => None,
        },
    };
    watch::start(shared.clone(), t.rt.clone(), p)
}
