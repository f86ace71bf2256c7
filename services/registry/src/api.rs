//! The Confluent Schema Registry REST API: routes, request bodies, response
//! bodies. Handlers only translate HTTP to the calls of [`crate::store`].
//!
//! Guarantee: bodies, status codes and `error_code`s are Confluent's, and
//! every response (errors and unknown routes included) is JSON with content
//! type `application/vnd.schemaregistry.v1+json`. Request bodies are read
//! whatever their content type among the schema-registry and JSON types, or
//! none at all (curl, kcat). Only AVRO schemas are accepted; schema
//! references are not supported (42201).

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use deadpool_postgres::Pool;
use metrics::{counter, histogram};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::canonical::{self, ParsedSchema};
use crate::compat::CompatibilityLevel;
use crate::store::{self, VersionRow, VersionSpec};
use crate::RegistryError;

/// The content type of every response.
pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

/// Request content types the registry reads (parameters such as `charset`
/// are ignored). curl's default form type is accepted because `curl -d`
/// sends it unless told otherwise.
const ACCEPTED_CONTENT_TYPES: &[&str] = &[
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
];

type Query_ = Query<HashMap<String, String>>;
type ApiResult = Result<Response, RegistryError>;

/// Builds the router over a pool.
pub(crate) fn router(pool: Pool) -> Router {
    Router::new()
        .route("/", get(|| async { ok(&json!({})) }))
        .route("/schemas/types", get(|| async { ok(&json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_version),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(|| async { ok(&json!({"mode": "READWRITE"})) }))
        .fallback(|| async { RegistryError::RouteNotFound })
        .method_not_allowed_fallback(|| async { RegistryError::MethodNotAllowed })
        .layer(middleware::from_fn(track))
        .with_state(pool)
}

/// Counts requests and their latency per route, method and status.
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    histogram!("pushflow_registry_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    counter!("pushflow_registry_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// A JSON response with the registry's content type.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    raw_response(status, body.to_string())
}

fn raw_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1));
    response
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Reads a JSON body, checking the content type if there is one.
fn read_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, RegistryError> {
    if let Some(value) = headers.get(CONTENT_TYPE) {
        let media = value.to_str().unwrap_or_default();
        let media = media
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !media.is_empty() && !ACCEPTED_CONTENT_TYPES.contains(&media.as_str()) {
            return Err(RegistryError::UnsupportedMediaType(media));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| RegistryError::MalformedRequest(format!("Unrecognized request body: {e}")))
}

/// The body of registration, lookup and compatibility requests. Unknown
/// fields (`metadata`, `ruleSet`, ...) are ignored.
#[derive(Debug, Deserialize)]
struct SchemaRequest {
    /// The schema as a JSON string (Confluent); a JSON object or array is
    /// also taken, for hand-written curl calls.
    #[serde(default)]
    schema: Value,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
}

fn parse_schema_request(headers: &HeaderMap, body: &Bytes) -> Result<ParsedSchema, RegistryError> {
    let request: SchemaRequest = read_body(headers, body)?;
    if let Some(kind) = request.schema_type.as_deref() {
        if !kind.eq_ignore_ascii_case("AVRO") {
            return Err(RegistryError::InvalidSchema(format!(
                "Invalid schema type {kind}: this registry supports only AVRO"
            )));
        }
    }
    if request.references.is_some_and(|r| !r.is_empty()) {
        return Err(RegistryError::InvalidSchema(
            "Schema references are not supported by this registry: inline the referenced types"
                .to_owned(),
        ));
    }
    let text = match request.schema {
        Value::String(text) => text,
        Value::Null => String::new(),
        other => other.to_string(),
    };
    canonical::parse(&text)
}

fn parse_id(id: &str) -> Result<i32, RegistryError> {
    id.parse::<i32>()
        .map_err(|_| RegistryError::SchemaNotFound(id.parse::<i64>().ok()))
}

fn version_body(row: &VersionRow) -> Value {
    let mut body = json!({
        "subject": row.subject,
        "version": row.version,
        "id": row.id,
        "schema": row.schema,
    });
    if row.schema_type != "AVRO" {
        body["schemaType"] = json!(row.schema_type);
    }
    body
}

async fn schema_by_id(State(pool): State<Pool>, Path(id): Path<String>) -> ApiResult {
    let (schema, schema_type) = store::schema_by_id(&pool, parse_id(&id)?).await?;
    let mut body = json!({ "schema": schema });
    if schema_type != "AVRO" {
        body["schemaType"] = json!(schema_type);
    }
    Ok(ok(&body))
}

async fn raw_schema_by_id(State(pool): State<Pool>, Path(id): Path<String>) -> ApiResult {
    let (schema, _) = store::schema_by_id(&pool, parse_id(&id)?).await?;
    Ok(raw_response(StatusCode::OK, schema))
}

async fn versions_of_id(State(pool): State<Pool>, Path(id): Path<String>) -> ApiResult {
    let pairs = store::versions_of_id(&pool, parse_id(&id)?).await?;
    let body: Vec<Value> = pairs
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(ok(&json!(body)))
}

async fn list_subjects(State(pool): State<Pool>, Query(query): Query_) -> ApiResult {
    Ok(ok(&json!(
        store::subjects(&pool, flag(&query, "deleted")).await?
    )))
}

async fn register(
    State(pool): State<Pool>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let parsed = parse_schema_request(&headers, &body)?;
    match store::register(&pool, &subject, &parsed).await {
        Ok(done) => {
            if done.created {
                counter!("pushflow_registry_schemas_registered_total").increment(1);
            }
            tracing::info!(
                subject = %subject,
                id = done.id,
                version = done.version,
                created = done.created,
                "schema registered"
            );
            Ok(ok(&json!({ "id": done.id })))
        }
        Err(e @ RegistryError::Incompatible { .. }) => {
            counter!("pushflow_registry_incompatible_total").increment(1);
            tracing::info!(subject = %subject, error = %e, "incompatible schema rejected");
            Err(e)
        }
        Err(e) => Err(e),
    }
}

async fn lookup(
    State(pool): State<Pool>,
    Path(subject): Path<String>,
    Query(query): Query_,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let parsed = parse_schema_request(&headers, &body)?;
    let row = store::lookup(&pool, &subject, &parsed, flag(&query, "deleted")).await?;
    Ok(ok(&version_body(&row)))
}

async fn delete_subject(
    State(pool): State<Pool>,
    Path(subject): Path<String>,
    Query(query): Query_,
) -> ApiResult {
    let permanent = flag(&query, "permanent");
    let versions = store::delete_subject(&pool, &subject, permanent).await?;
    tracing::info!(subject = %subject, permanent, ?versions, "subject deleted");
    Ok(ok(&json!(versions)))
}

async fn list_versions(
    State(pool): State<Pool>,
    Path(subject): Path<String>,
    Query(query): Query_,
) -> ApiResult {
    let versions = store::versions(&pool, &subject, flag(&query, "deleted")).await?;
    Ok(ok(&json!(versions)))
}

async fn get_version(
    State(pool): State<Pool>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query_,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let row = store::version(&pool, &subject, spec, flag(&query, "deleted")).await?;
    Ok(ok(&version_body(&row)))
}

async fn get_version_schema(
    State(pool): State<Pool>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query_,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let row = store::version(&pool, &subject, spec, flag(&query, "deleted")).await?;
    Ok(raw_response(StatusCode::OK, row.schema))
}

/// Schema references are not supported, so nothing ever references a version.
async fn referenced_by(
    State(pool): State<Pool>,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    store::version(&pool, &subject, spec, false).await?;
    Ok(ok(&json!([])))
}

async fn delete_version(
    State(pool): State<Pool>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query_,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let permanent = flag(&query, "permanent");
    let deleted = store::delete_version(&pool, &subject, spec, permanent).await?;
    tracing::info!(subject = %subject, version = deleted, permanent, "version deleted");
    Ok(ok(&json!(deleted)))
}

fn compatibility_body(problems: Vec<String>, verbose: bool) -> Response {
    let mut body = json!({ "is_compatible": problems.is_empty() });
    if verbose {
        body["messages"] = json!(problems);
    }
    ok(&body)
}

async fn compatibility_version(
    State(pool): State<Pool>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query_,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let parsed = parse_schema_request(&headers, &body)?;
    let problems = store::compatibility(&pool, &subject, &parsed, Some(spec)).await?;
    Ok(compatibility_body(problems, flag(&query, "verbose")))
}

async fn compatibility_all(
    State(pool): State<Pool>,
    Path(subject): Path<String>,
    Query(query): Query_,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let parsed = parse_schema_request(&headers, &body)?;
    let problems = store::compatibility(&pool, &subject, &parsed, None).await?;
    Ok(compatibility_body(problems, flag(&query, "verbose")))
}

/// `PUT /config` bodies: Confluent's `compatibility`, or `compatibilityLevel`
/// as `GET` returns it.
#[derive(Debug, Deserialize)]
struct ConfigRequest {
    #[serde(default)]
    compatibility: Option<String>,
    #[serde(default, rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

fn parse_config(headers: &HeaderMap, body: &Bytes) -> Result<CompatibilityLevel, RegistryError> {
    let request: ConfigRequest = read_body(headers, body)?;
    request
        .compatibility
        .or(request.compatibility_level)
        .unwrap_or_default()
        .parse()
}

fn level_body(level: CompatibilityLevel) -> Response {
    ok(&json!({ "compatibilityLevel": level.as_str() }))
}

async fn get_global_config(State(pool): State<Pool>) -> ApiResult {
    let client = pool.get().await?;
    Ok(level_body(store::global_level(&client).await?))
}

async fn put_global_config(State(pool): State<Pool>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let level = parse_config(&headers, &body)?;
    store::set_global_level(&pool, level).await?;
    tracing::info!(%level, "global compatibility level set");
    Ok(ok(&json!({ "compatibility": level.as_str() })))
}

async fn delete_global_config(State(pool): State<Pool>) -> ApiResult {
    Ok(level_body(store::delete_global_level(&pool).await?))
}

async fn get_subject_config(
    State(pool): State<Pool>,
    Path(subject): Path<String>,
    Query(query): Query_,
) -> ApiResult {
    let client = pool.get().await?;
    match store::subject_level(&client, &subject).await? {
        Some(level) => Ok(level_body(level)),
        None if flag(&query, "defaultToGlobal") => {
            Ok(level_body(store::global_level(&client).await?))
        }
        None => Err(RegistryError::SubjectConfigNotFound(subject)),
    }
}

async fn put_subject_config(
    State(pool): State<Pool>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let level = parse_config(&headers, &body)?;
    store::set_subject_level(&pool, &subject, level).await?;
    tracing::info!(subject = %subject, %level, "subject compatibility level set");
    Ok(ok(&json!({ "compatibility": level.as_str() })))
}

async fn delete_subject_config(State(pool): State<Pool>, Path(subject): Path<String>) -> ApiResult {
    Ok(level_body(
        store::delete_subject_level(&pool, &subject).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        h
    }

    #[test]
    fn bodies_are_read_with_any_schema_registry_or_json_type_or_none() {
        let body = Bytes::from_static(br#"{"schema": "\"string\""}"#);
        for ct in [
            None,
            Some("application/vnd.schemaregistry.v1+json"),
            Some("application/vnd.schemaregistry+json"),
            Some("application/json; charset=utf-8"),
        ] {
            let parsed = parse_schema_request(&headers(ct), &body).unwrap();
            assert_eq!(parsed.text, "\"string\"");
        }
        let err = parse_schema_request(&headers(Some("text/xml")), &body).unwrap_err();
        assert_eq!(err.error_code(), 415);
    }

    #[test]
    fn only_avro_without_references_is_accepted() {
        let h = headers(None);
        let proto =
            Bytes::from_static(br#"{"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}"#);
        let err = parse_schema_request(&h, &proto).unwrap_err();
        assert_eq!(err.error_code(), 42201);
        assert!(err.to_string().contains("only AVRO"), "{err}");
        let refs = Bytes::from_static(
            br#"{"schema": "\"string\"", "references": [{"name": "a", "subject": "b", "version": 1}]}"#,
        );
        assert_eq!(
            parse_schema_request(&h, &refs).unwrap_err().error_code(),
            42201
        );
        let empty_refs =
            Bytes::from_static(br#"{"schema": "\"string\"", "references": [], "metadata": null}"#);
        assert!(parse_schema_request(&h, &empty_refs).is_ok());
        let missing = Bytes::from_static(br#"{}"#);
        assert_eq!(
            parse_schema_request(&h, &missing).unwrap_err().to_string(),
            "Empty schema"
        );
        let garbage = Bytes::from_static(b"nope");
        assert_eq!(
            parse_schema_request(&h, &garbage).unwrap_err().error_code(),
            400
        );
    }

    #[test]
    fn config_bodies_accept_both_spellings() {
        let h = headers(None);
        let a = Bytes::from_static(br#"{"compatibility": "full"}"#);
        let b = Bytes::from_static(br#"{"compatibilityLevel": "FORWARD"}"#);
        assert_eq!(parse_config(&h, &a).unwrap(), CompatibilityLevel::Full);
        assert_eq!(parse_config(&h, &b).unwrap(), CompatibilityLevel::Forward);
        let bad = Bytes::from_static(br#"{"compatibility": "SOMETIMES"}"#);
        assert_eq!(parse_config(&h, &bad).unwrap_err().error_code(), 42203);
    }
}
