//! Test helpers: a registry on its own fresh Postgres database, served over
//! real HTTP on a loopback port, and a small JSON client for it.
//!
//! The Postgres server comes from `PUSHFLOW_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`); each test gets a database named
//! `registry_test_<random>`, dropped by [`TestRegistry::finish`].

#![allow(dead_code)] // each test binary uses a different subset

use pushflow_registry::{connect, Registry, CONTENT_TYPE_V1};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;

/// The Postgres server tests use, without a database name.
pub fn postgres_server() -> String {
    std::env::var("PUSHFLOW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A fresh database URL with a random name: (name, url).
pub fn fresh_database() -> (String, String) {
    let name = format!("registry_test_{:016x}", rand::rng().random::<u64>());
    let url = format!("{}/{name}", postgres_server().trim_end_matches('/'));
    (name, url)
}

/// Serves the registry's router on 127.0.0.1:0; returns its base URL.
pub async fn serve(registry: &Registry) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A running registry over its own database.
pub struct TestRegistry {
    /// Base URL of the HTTP server.
    pub url: String,
    /// The registry state.
    pub registry: Registry,
    /// The database URL.
    pub database_url: String,
    /// The database name.
    pub database: String,
    http: reqwest::Client,
}

/// Starts a registry on a fresh database.
pub async fn start() -> TestRegistry {
    let (database, database_url) = fresh_database();
    let registry = connect(&database_url)
        .await
        .expect("connect to test database");
    registry.check().await.expect("health check");
    let url = serve(&registry).await;
    TestRegistry {
        url,
        registry,
        database_url,
        database,
        http: reqwest::Client::new(),
    }
}

/// A response: status, content type, parsed JSON body (Null if not JSON) and raw text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts a Confluent error body with this HTTP status and error code.
    pub fn assert_error(&self, status: u16, code: u64) -> &str {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.content_type, CONTENT_TYPE_V1, "{self:?}");
        assert_eq!(self.body["error_code"].as_u64(), Some(code), "{self:?}");
        self.body["message"].as_str().expect("message")
    }

    /// Asserts 200 and returns the body.
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.content_type, CONTENT_TYPE_V1, "{self:?}");
        &self.body
    }
}

impl TestRegistry {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("HTTP request");
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            body,
            text,
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// GET path.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.at(path))).await
    }

    /// DELETE path.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(self.at(path))).await
    }

    /// POST a JSON body with Confluent's content type.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_as(path, body, Some(CONTENT_TYPE_V1)).await
    }

    /// POST a JSON body with the given content type (or none).
    pub async fn post_as(&self, path: &str, body: &Value, content_type: Option<&str>) -> Reply {
        let mut request = self.http.post(self.at(path)).body(body.to_string());
        if let Some(ct) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        self.send(request).await
    }

    /// PUT a JSON body with Confluent's content type.
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        let request = self
            .http
            .put(self.at(path))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE_V1)
            .body(body.to_string());
        self.send(request).await
    }

    /// Registers schema text under a subject: the reply.
    pub async fn register(&self, subject: &str, schema: &str) -> Reply {
        let body = serde_json::json!({ "schema": schema });
        self.post(&format!("/subjects/{subject}/versions"), &body)
            .await
    }

    /// Registers schema text under a subject and returns its id (asserting 200).
    pub async fn register_ok(&self, subject: &str, schema: &str) -> i64 {
        let reply = self.register(subject, schema).await;
        reply.ok()["id"].as_i64().expect("id")
    }

    /// Drops the test database.
    pub async fn finish(self) {
        drop(self.registry);
        drop_database(&self.database).await;
    }
}

/// Drops a test database, closing whatever connections are still open.
pub async fn drop_database(name: &str) {
    let url = format!("{}/postgres", postgres_server().trim_end_matches('/'));
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop test database");
}

/// A pushflow schema with one more field appended.
pub fn with_field(schema: &str, field: Value) -> String {
    let mut value: Value = serde_json::from_str(schema).unwrap();
    value["fields"].as_array_mut().unwrap().push(field);
    value.to_string()
}

/// A pushflow schema without the named field.
pub fn without_field(schema: &str, name: &str) -> String {
    let mut value: Value = serde_json::from_str(schema).unwrap();
    value["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != name);
    value.to_string()
}

/// The `notification.delivered` schema text.
pub fn delivered() -> &'static str {
    pushflow_schemas::Topic::by_name("notification.delivered")
        .unwrap()
        .schema_text
}

/// The same JSON with every object's keys written in reverse order and no
/// whitespace, whatever serde_json's `preserve_order` feature says.
pub fn reversed_keys(text: &str) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                keys.reverse();
                let parts: Vec<String> = keys
                    .into_iter()
                    .map(|k| {
                        let mut s = serde_json::to_string(k).unwrap();
                        s.push(':');
                        write(&map[k], &mut s);
                        s
                    })
                    .collect();
                out.push('{');
                out.push_str(&parts.join(","));
                out.push('}');
            }
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|v| {
                        let mut s = String::new();
                        write(v, &mut s);
                        s
                    })
                    .collect();
                out.push('[');
                out.push_str(&parts.join(","));
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(&serde_json::from_str(text).unwrap(), &mut out);
    out
}
