//! Verb handlers for resource URLs: translate a request into a store call and the result
//! into the response form the client negotiated.

use super::AppState;
use super::negotiate::{self, Output};
use super::route::Target;
use crate::cluster::audit::Annotations;
use crate::cluster::error::{Error, Result};
use crate::cluster::events;
use crate::cluster::meta;
use crate::cluster::resources::ResourceInfo;
use crate::cluster::semantics::FieldError;
use crate::cluster::semantics::table::{self, IncludeObject};
use crate::cluster::store::{
    DeleteOptions, FieldValidation, ListParams, Patch, Propagation, Subresource, WatchParams, WriteOptions,
};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use forklane_core::clock::{Clock, format_time};
use futures::StreamExt;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::Duration;

type Query = HashMap<String, String>;

pub(crate) async fn handle(
    state: &AppState,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
    target: Target,
) -> Response {
    match dispatch(state, method, query, headers, body, target).await {
        Ok(resp) => resp,
        Err(e) => negotiate::error(&e),
    }
}

fn subresource(target: &Target, info: &ResourceInfo) -> Result<Subresource> {
    let not_found =
        || Error::NotFound { message: "the server could not find the requested resource".into(), details: Value::Null };
    let version = info.version(&target.gvr.version).ok_or_else(not_found)?;
    match target.subresource.as_deref() {
        None => Ok(Subresource::Main),
        Some("status") if version.status => Ok(Subresource::Status),
        Some("scale") if version.scale.is_some() => Ok(Subresource::Scale),
        Some("finalize") if info.group.is_empty() && info.resource == "namespaces" => Ok(Subresource::Main),
        Some(_) => Err(not_found()),
    }
}

fn flag(query: &Query, key: &str) -> bool {
    matches!(query.get(key).map(String::as_str), Some("true" | "1"))
}

fn write_options(query: &Query, headers: &HeaderMap, sub: Subresource) -> Result<WriteOptions> {
    let field_validation = match query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, got {other}"
            )));
        }
    };
    let dry_run = match query.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!("Invalid dryRun value: {other}: supported values: \"All\"")));
        }
    };
    // Like the apiserver, name the user agent's product as the manager when none is given.
    let field_manager = query.get("fieldManager").cloned().or_else(|| {
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.split('/').next().unwrap_or_default().to_string())
            .filter(|m| !m.is_empty())
    });
    Ok(WriteOptions {
        field_manager,
        dry_run,
        force: flag(query, "force"),
        subresource: sub,
        field_validation,
        ..Default::default()
    })
}

fn list_params(query: &Query) -> Result<ListParams> {
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => {
            Some(l.parse::<i64>().map_err(|_| Error::BadRequest(format!("invalid limit: {l}")))?.max(0) as usize)
        }
        None => None,
    };
    Ok(ListParams {
        label_selector: query.get("labelSelector").cloned(),
        field_selector: query.get("fieldSelector").cloned(),
        limit,
        continue_token: query.get("continue").cloned(),
        resource_version: query.get("resourceVersion").cloned(),
        resource_version_match: query.get("resourceVersionMatch").cloned(),
    })
}

async fn dispatch(
    state: &AppState,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
    target: Target,
) -> Result<Response> {
    let store = &state.store;
    let info = store.resource(&target.gvr)?;
    if target.namespace.is_some() && !info.namespaced {
        return Err(Error::NotFound {
            message: "the server could not find the requested resource".into(),
            details: Value::Null,
        });
    }
    let sub = subresource(&target, &info)?;
    let gvr = &target.gvr;
    let ns = target.namespace.as_deref();
    let is_write = !matches!(*method, Method::GET | Method::HEAD);
    if is_write && let Some(err) = state.faults.write_failure() {
        return Err(err);
    }
    let output = negotiate::output(headers, info.crd.is_none())?;
    let shown = Rendering { info: &info, target: &target, query, clock: store.clock() };
    match (method.clone(), target.name.as_deref()) {
        (Method::GET, None) if target.watch_path || flag(query, "watch") => {
            watch(state, &info, &target, query, output).await
        }
        (Method::GET, None) => {
            let listed = store.select(gvr, ns, &list_params(query)?)?;
            Ok(match output {
                // Encoded straight from the stored objects, without copying them.
                Output::Json => negotiate::json_text(200, listed.to_json(), "application/json", &[]),
                _ => render_list(&shown, listed.into_value(), output),
            })
        }
        (Method::GET, Some(name)) if target.watch_path => {
            let mut query = query.clone();
            query.insert("fieldSelector".into(), format!("metadata.name={name}"));
            watch(state, &info, &target, &query, output).await
        }
        (Method::GET, Some(name)) => {
            let obj =
                if sub == Subresource::Scale { store.get_scale(gvr, ns, name)? } else { store.get(gvr, ns, name)? };
            Ok(render_one(&shown, obj, output, 200, &[]))
        }
        (Method::POST, None) => {
            let obj = negotiate::decode(&body, &negotiate::content_type(headers))?;
            let opts = write_options(query, headers, Subresource::Main)?;
            let created = store.create(gvr, ns, obj, &opts)?;
            Ok(annotated(render_one(&shown, created, output, 201, &opts.warnings.borrow()), &opts.audit_annotations))
        }
        (Method::PUT, Some(name)) => {
            let obj = negotiate::decode(&body, &negotiate::content_type(headers))?;
            if target.subresource.as_deref() == Some("finalize") {
                let finalizers = obj["spec"]["finalizers"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                let ns_obj = store.finalize_namespace(name, finalizers)?;
                return Ok(negotiate::json(200, &ns_obj, &[]));
            }
            let opts = write_options(query, headers, sub)?;
            let updated = store.update(gvr, ns, name, obj, &opts)?;
            Ok(annotated(render_one(&shown, updated, output, 200, &opts.warnings.borrow()), &opts.audit_annotations))
        }
        (Method::PATCH, Some(name)) => {
            let media = negotiate::content_type(headers);
            let body = negotiate::decode(&body, &media)?;
            let patch = match media.as_str() {
                "application/json-patch+json" => Patch::Json(body),
                "application/merge-patch+json" => Patch::Merge(body),
                "application/strategic-merge-patch+json" => Patch::Strategic(body),
                "application/apply-patch+yaml" => Patch::Apply(body),
                other => {
                    return Err(Error::UnsupportedMediaType(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                    )));
                }
            };
            let mut opts = write_options(query, headers, sub)?;
            if let Patch::Apply(_) = patch {
                opts.field_manager = query.get("fieldManager").cloned();
            } else if flag(query, "force") {
                return Err(Error::BadRequest("force flag is not allowed unless the patch type is apply".into()));
            }
            let existed = store.get(gvr, ns, name).is_ok();
            let patched = store.patch(gvr, ns, name, patch, &opts)?;
            let code = if existed { 200 } else { 201 };
            Ok(annotated(render_one(&shown, patched, output, code, &opts.warnings.borrow()), &opts.audit_annotations))
        }
        (Method::DELETE, Some(name)) => {
            let opts = delete_options(query, &body)?;
            let obj = store.delete(gvr, ns, name, &opts)?;
            // The apiserver answers 200 with the object (gone or held by finalizers); only the
            // legacy `orphanDependents: false` on a held object gets 202 Accepted.
            let held = meta::is_deleting(&obj) && !meta::finalizers(&obj).is_empty();
            let code = if held && orphan_dependents(query, &body) == Some(false) { 202 } else { 200 };
            Ok(annotated(render_one(&shown, obj, output, code, &opts.warnings.borrow()), &opts.audit_annotations))
        }
        (Method::DELETE, None) => {
            let opts = delete_options(query, &body)?;
            let list = store.delete_collection(gvr, ns, &list_params(query)?, &opts)?;
            Ok(annotated(negotiate::json(200, &list, &opts.warnings.borrow()), &opts.audit_annotations))
        }
        _ => Err(Error::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

/// Hands the write's audit annotations to the audit log (see `http::route`).
fn annotated(mut response: Response, annotations: &RefCell<BTreeMap<String, String>>) -> Response {
    let annotations = annotations.take();
    if !annotations.is_empty() {
        response.extensions_mut().insert(Annotations(annotations));
    }
    response
}

fn delete_body(bytes: &[u8]) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(json!({}))
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::BadRequest(format!("couldn't get version/kind; json parse error: {e}")))
    }
}

/// The legacy `orphanDependents` of a delete request, from the body or the query.
fn orphan_dependents(query: &Query, bytes: &[u8]) -> Option<bool> {
    let body = delete_body(bytes).ok()?;
    body["orphanDependents"].as_bool().or_else(|| query.get("orphanDependents").map(|v| v == "true"))
}

fn delete_options(query: &Query, bytes: &[u8]) -> Result<DeleteOptions> {
    let body = delete_body(bytes)?;
    let policy =
        body["propagationPolicy"].as_str().map(String::from).or_else(|| query.get("propagationPolicy").cloned());
    let mut propagation = match policy.as_deref() {
        None | Some("") => None,
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    if propagation.is_none() {
        propagation =
            orphan_dependents(query, bytes).map(|o| if o { Propagation::Orphan } else { Propagation::Background });
    }
    let dry_run = body["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All"))
        || query.get("dryRun").is_some_and(|v| v == "All");
    let grace_period_seconds =
        match (body.get("gracePeriodSeconds").filter(|v| !v.is_null()), query.get("gracePeriodSeconds")) {
            (Some(v), _) => {
                Some(v.as_i64().ok_or_else(|| Error::BadRequest(format!("gracePeriodSeconds: invalid value {v}")))?)
            }
            (None, Some(q)) => {
                Some(q.parse().map_err(|_| Error::BadRequest(format!("invalid gracePeriodSeconds: {q}")))?)
            }
            (None, None) => None,
        };
    Ok(DeleteOptions {
        propagation,
        precondition_uid: body["preconditions"]["uid"].as_str().map(String::from),
        precondition_resource_version: body["preconditions"]["resourceVersion"].as_str().map(String::from),
        dry_run,
        grace_period_seconds,
        ..Default::default()
    })
}

/// What shapes a response body: the resource, the URL, the query and the API server's clock
/// (tables show ages relative to it).
struct Rendering<'a> {
    info: &'a ResourceInfo,
    target: &'a Target,
    query: &'a Query,
    clock: Clock,
}

fn table_of(r: &Rendering, objects: &[Value]) -> Value {
    let (info, target, query) = (r.info, r.target, r.query);
    let now = format_time(r.clock.now());
    let include = match query.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    };
    let version = info.version(&target.gvr.version);
    let custom = info.crd.as_ref().map(|_| version.map(|v| v.printer_columns.as_slice()).unwrap_or_default());
    if !info.is_view() {
        return table::table(&info.kind, objects, custom, &now, include);
    }
    // The apiserver prints events.k8s.io Events from their internal (core) form; rows
    // carry the objects as requested.
    let core: Vec<Value> = objects.iter().map(events::to_core).collect();
    let mut t = table::table(&info.kind, &core, custom, &now, include);
    if include == IncludeObject::Object {
        for (row, obj) in t["rows"].as_array_mut().into_iter().flatten().zip(objects) {
            row["object"] = obj.clone();
        }
    }
    t
}

fn render_one(r: &Rendering, obj: Value, output: Output, code: u16, warnings: &[String]) -> Response {
    let body = match output {
        Output::Table if obj["kind"] != "Scale" => table_of(r, &[obj]),
        Output::Metadata => negotiate::partial_metadata(&obj),
        _ => obj,
    };
    respond(code, &body, output, warnings)
}

fn render_list(r: &Rendering, list: Value, output: Output) -> Response {
    let body = match output {
        Output::Json | Output::Protobuf => list,
        Output::Table => {
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let mut t = table_of(r, &items);
            t["metadata"] = list["metadata"].clone();
            t
        }
        Output::Metadata => {
            let items: Vec<Value> =
                list["items"].as_array().into_iter().flatten().map(negotiate::partial_metadata).collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list["metadata"], "items": items})
        }
    };
    respond(200, &body, output, &[])
}

/// The body in protobuf where it was asked for and has an encoding, else in JSON.
fn respond(code: u16, body: &Value, output: Output, warnings: &[String]) -> Response {
    let encoded = if output == Output::Protobuf { crate::cluster::protobuf::encode(body) } else { None };
    match encoded {
        Some(bytes) => negotiate::protobuf(code, bytes, warnings),
        None => negotiate::json(code, body, warnings),
    }
}

async fn watch(
    state: &AppState,
    info: &ResourceInfo,
    target: &Target,
    query: &Query,
    output: Output,
) -> Result<Response> {
    // The apiserver picks a random timeout in [minRequestTimeout, 2*minRequestTimeout).
    let timeout = match query.get("timeoutSeconds").filter(|s| !s.is_empty()) {
        Some(s) => {
            Duration::from_secs(s.parse().map_err(|_| Error::BadRequest(format!("invalid timeoutSeconds: {s}")))?)
        }
        None => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let send_initial_events = flag(query, "sendInitialEvents");
    if send_initial_events && query.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
        let err = FieldError::forbidden(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        );
        return Err(Error::invalid("ListOptions", "meta.k8s.io", "", &[err]));
    }
    let params = WatchParams {
        label_selector: query.get("labelSelector").cloned(),
        field_selector: query.get("fieldSelector").cloned(),
        resource_version: query.get("resourceVersion").cloned(),
        allow_bookmarks: flag(query, "allowWatchBookmarks"),
        send_initial_events,
        timeout: Some(timeout),
        bookmark_interval: Some(state.bookmark_interval),
    };
    let events = state.store.watch(&target.gvr, target.namespace.as_deref(), params)?;
    let mut cut = state.faults.cut_signal();
    let lifetime = state.faults.watch_lifetime();
    let stop = async move {
        let expire = async {
            match lifetime {
                Some(l) => tokio::time::sleep(l).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! { _ = cut.changed() => {}, _ = expire => {} }
    };
    let (info, target, query, clock) = (info.clone(), target.clone(), query.clone(), state.store.clock());
    let lines = events.take_until(Box::pin(stop)).map(move |mut ev| {
        if matches!(ev.kind, "ADDED" | "MODIFIED" | "DELETED") {
            ev.object = match output {
                Output::Table => {
                    table_of(&Rendering { info: &info, target: &target, query: &query, clock }, &[ev.object])
                }
                Output::Metadata => negotiate::partial_metadata(&ev.object),
                Output::Json | Output::Protobuf => ev.object,
            };
        }
        Ok::<_, Infallible>(Bytes::from(ev.to_line()))
    });
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("static"));
    resp.headers_mut().insert(header::CACHE_CONTROL, "no-cache, private".parse().expect("static"));
    Ok(resp)
}
