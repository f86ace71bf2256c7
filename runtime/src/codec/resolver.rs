//! Where schemas come from: the registry (through schema_registry_converter)
//! in production, a fixed in-memory map in unit tests.

use apache_avro::Schema;
use async_trait::async_trait;
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::CodecError;

/// Looks up writer schemas by id and registers schemas under subjects.
/// Implementations need not cache: [`super::Codec`] does.
#[async_trait]
pub trait SchemaResolver: Send + Sync {
    /// The schema text with this global id.
    async fn schema_text(&self, id: u32) -> Result<String, CodecError>;
    /// Registers (or finds) `schema` under `subject`, returning its id.
    async fn register(&self, subject: &str, schema: &str) -> Result<u32, CodecError>;
}

/// A Confluent-compatible registry over HTTP.
pub struct RegistryResolver {
    settings: SrSettings,
}

impl RegistryResolver {
    /// A resolver for the registry at `url` (requests time out after 10 s).
    pub fn new(url: &str) -> Result<RegistryResolver, CodecError> {
        let settings = SrSettings::new_builder(url.trim_end_matches('/').to_string())
            .set_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CodecError::Registry {
                message: e.to_string(),
                retryable: false,
            })?;
        Ok(RegistryResolver { settings })
    }
}

fn registry_error(e: SRCError, id: Option<u32>) -> CodecError {
    let text = e.to_string();
    // The registry answered 404 / error code 40403: the id does not exist.
    if let Some(id) = id {
        if text.contains("40403")
            || text.contains("404")
            || text.to_lowercase().contains("not found")
        {
            return CodecError::UnknownSchemaId(id);
        }
    }
    CodecError::Registry {
        message: text,
        retryable: e.retriable,
    }
}

#[async_trait]
impl SchemaResolver for RegistryResolver {
    async fn schema_text(&self, id: u32) -> Result<String, CodecError> {
        let reg = get_schema_by_id(id, &self.settings)
            .await
            .map_err(|e| registry_error(e, Some(id)))?;
        Ok(reg.schema)
    }

    async fn register(&self, subject: &str, schema: &str) -> Result<u32, CodecError> {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_string());
        let reg = post_schema(&self.settings, subject.to_string(), supplied)
            .await
            .map_err(|e| registry_error(e, None))?;
        Ok(reg.id)
    }
}

/// A fixed, in-memory registry for unit tests: ids start at 1, identical
/// schema text under any subject gets the same id.
#[derive(Default)]
pub struct InMemoryResolver {
    inner: Mutex<(HashMap<String, u32>, HashMap<u32, String>)>,
}

impl InMemoryResolver {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a schema under a chosen id (to simulate another writer).
    pub fn insert(&self, id: u32, schema: &str) {
        let mut g = self.inner.lock().unwrap();
        g.0.insert(schema.to_string(), id);
        g.1.insert(id, schema.to_string());
    }
}

#[async_trait]
impl SchemaResolver for InMemoryResolver {
    async fn schema_text(&self, id: u32) -> Result<String, CodecError> {
        let g = self.inner.lock().unwrap();
        g.1.get(&id).cloned().ok_or(CodecError::UnknownSchemaId(id))
    }

    async fn register(&self, _subject: &str, schema: &str) -> Result<u32, CodecError> {
        // Validate like a registry would.
        Schema::parse_str(schema).map_err(|e| CodecError::Registry {
            message: format!("invalid schema: {e}"),
            retryable: false,
        })?;
        let mut g = self.inner.lock().unwrap();
        if let Some(id) = g.0.get(schema) {
            return Ok(*id);
        }
        let id = g.1.keys().max().copied().unwrap_or(0) + 1;
        g.0.insert(schema.to_string(), id);
        g.1.insert(id, schema.to_string());
        Ok(id)
    }
}
