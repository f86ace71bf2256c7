//! Avro in the Confluent wire format, behind a [`SchemaResolver`].
//!
//! Guarantee: the registry is called once per schema id and once per topic
//! written, never per record (ids and parsed schemas are cached for the
//! life of the [`Codec`]). Decoding checks the magic byte explicitly and
//! resolves the writer's schema against the reader's (the catalogue's), so
//! records written with an older or newer compatible schema still decode;
//! a record written with another record's schema (another topic's event)
//! or cut short is refused, never read with nulls or as another event.

mod resolver;
pub mod wire;

pub use resolver::{InMemoryResolver, RegistryResolver, SchemaResolver};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use pushflow_schemas::{Event, Topic};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, RwLock};

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Fewer than 5 bytes: no room for the wire-format header.
    #[error("record of {0} bytes is too short for the Confluent wire format (magic byte + 4-byte schema id + Avro body)")]
    TooShort(usize),
    /// The first byte is not 0.
    #[error("wrong magic byte {0}: expected 0 (Confluent wire format); was this written by a JSON or string serializer?")]
    WrongMagicByte(u8),
    /// The registry does not know the id.
    #[error("unknown schema id {0}: the registry has no schema with this id")]
    UnknownSchemaId(u32),
    /// The registry failed or refused.
    #[error("schema registry: {message}")]
    Registry {
        /// What it said.
        message: String,
        /// Whether trying again could help (unreachable, 5xx).
        retryable: bool,
    },
    /// The registry returned a schema apache-avro cannot parse.
    #[error("schema {id} from the registry is not valid Avro: {message}")]
    BadSchema {
        /// The id.
        id: u32,
        /// Parser message.
        message: String,
    },
    /// The Avro body does not match its writer schema, or cannot be
    /// resolved to the reader's schema.
    #[error("Avro body does not match schema {id} of {topic}: {message}")]
    BadBody {
        /// Topic being decoded.
        topic: String,
        /// Writer schema id.
        id: u32,
        /// apache-avro's message.
        message: String,
    },
    /// The value does not match the topic's schema (encoding side).
    #[error("value does not match the schema of {topic}: {message}")]
    Invalid {
        /// Topic.
        topic: String,
        /// What is wrong.
        message: String,
    },
}

impl CodecError {
    /// Whether retrying could help; records failing otherwise go to the DLQ.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CodecError::Registry {
                retryable: true,
                ..
            }
        )
    }
}

struct WriterSchema {
    schema: Arc<Schema>,
    /// Per topic decoded with it: whether it is the topic's (reader's)
    /// schema, so that records decode without resolution (fast path). Per
    /// topic: a writer that is one topic's schema is not another's.
    same_as_reader: HashMap<&'static str, bool>,
}

/// Encodes and decodes catalogue events; cheap to share behind an `Arc`.
pub struct Codec {
    resolver: Arc<dyn SchemaResolver>,
    ids: RwLock<HashMap<&'static str, u32>>,
    /// Held while a schema is registered, so that many encodes starting at
    /// once register it once, not once each (each registration takes the
    /// registry's lock on its subject).
    registering: tokio::sync::Mutex<()>,
    schemas: RwLock<HashMap<u32, WriterSchema>>,
    /// Readers and writers over the catalogue's (static) schemas, built
    /// once per topic: building one walks the whole schema.
    readers: RwLock<HashMap<&'static str, Arc<GenericDatumReader<'static>>>>,
    writers: RwLock<HashMap<&'static str, Arc<GenericDatumWriter<'static>>>>,
}

impl Codec {
    /// A codec over `resolver`.
    pub fn new(resolver: Arc<dyn SchemaResolver>) -> Codec {
        Codec {
            resolver,
            ids: RwLock::new(HashMap::new()),
            registering: tokio::sync::Mutex::new(()),
            schemas: RwLock::new(HashMap::new()),
            readers: RwLock::new(HashMap::new()),
            writers: RwLock::new(HashMap::new()),
        }
    }

    fn cached<T>(
        map: &RwLock<HashMap<&'static str, Arc<T>>>,
        topic: &'static Topic,
        build: impl FnOnce() -> Result<T, apache_avro::Error>,
    ) -> Result<Arc<T>, apache_avro::Error> {
        if let Some(x) = map.read().unwrap().get(topic.name) {
            return Ok(x.clone());
        }
        let x = Arc::new(build()?);
        map.write().unwrap().insert(topic.name, x.clone());
        Ok(x)
    }

    /// A codec over the registry at `url`.
    pub fn for_registry(url: &str) -> Result<Codec, CodecError> {
        Ok(Codec::new(Arc::new(RegistryResolver::new(url)?)))
    }

    /// The id of the catalogue schema of `topic` (registered on first use,
    /// once however many encodes ask for it at the same time).
    pub async fn schema_id(&self, topic: &'static Topic) -> Result<u32, CodecError> {
        if let Some(id) = self.ids.read().unwrap().get(topic.name) {
            return Ok(*id);
        }
        let _one_at_a_time = self.registering.lock().await;
        if let Some(id) = self.ids.read().unwrap().get(topic.name) {
            return Ok(*id);
        }
        let id = self
            .resolver
            .register(&topic.subject(), topic.schema_text)
            .await?;
        self.ids.write().unwrap().insert(topic.name, id);
        Ok(id)
    }

    /// Encodes an Avro value (already valid for the topic's schema).
    pub async fn encode_value(
        &self,
        topic: &'static Topic,
        value: Value,
    ) -> Result<Vec<u8>, CodecError> {
        let id = self.schema_id(topic).await?;
        let invalid = |e: apache_avro::Error| CodecError::Invalid {
            topic: topic.name.to_string(),
            message: e.to_string(),
        };
        let writer = Self::cached(&self.writers, topic, || {
            GenericDatumWriter::builder(topic.schema()).build()
        })
        .map_err(invalid)?;
        let body = writer.write_value_to_vec(value).map_err(invalid)?;
        Ok(wire::frame(id, &body))
    }

    /// Encodes a typed event.
    pub async fn encode<E: Event>(&self, event: &E) -> Result<Vec<u8>, CodecError> {
        let value = event.to_avro().map_err(|e| CodecError::Invalid {
            topic: E::TOPIC.to_string(),
            message: e.to_string(),
        })?;
        self.encode_value(E::topic(), value).await
    }

    async fn writer_schema(&self, id: u32) -> Result<Arc<Schema>, CodecError> {
        if let Some(w) = self.schemas.read().unwrap().get(&id) {
            return Ok(w.schema.clone());
        }
        let text = self.resolver.schema_text(id).await?;
        let schema = Schema::parse_str(&text).map_err(|e| CodecError::BadSchema {
            id,
            message: e.to_string(),
        })?;
        let schema = Arc::new(schema);
        self.schemas.write().unwrap().insert(
            id,
            WriterSchema {
                schema: schema.clone(),
                same_as_reader: HashMap::new(),
            },
        );
        Ok(schema)
    }

    fn same_as_reader(&self, id: u32, topic: &'static Topic, writer: &Schema) -> bool {
        if let Some(same) = self
            .schemas
            .read()
            .unwrap()
            .get(&id)
            .and_then(|w| w.same_as_reader.get(topic.name).copied())
        {
            return same;
        }
        let same = writer.canonical_form() == topic.schema().canonical_form();
        if let Some(w) = self.schemas.write().unwrap().get_mut(&id) {
            w.same_as_reader.insert(topic.name, same);
        }
        same
    }

    /// Decodes a framed record of `topic` into a value of the topic's
    /// (reader) schema.
    pub async fn decode_value(
        &self,
        topic: &'static Topic,
        bytes: &[u8],
    ) -> Result<Value, CodecError> {
        let (id, mut body) = wire::split(bytes)?;
        let writer = self.writer_schema(id).await?;
        let reader = topic.schema();
        let bad = |e: apache_avro::Error| CodecError::BadBody {
            topic: topic.name.to_string(),
            id,
            message: e.to_string(),
        };
        let value = if self.same_as_reader(id, topic, &writer) {
            // The writer's schema is the catalogue's: decode with the
            // reader built once for the topic, no resolution needed.
            let datum = Self::cached(&self.readers, topic, || {
                GenericDatumReader::builder(reader).build()
            })
            .map_err(bad)?;
            read_datum(&datum, &mut body).map_err(bad)?
        } else {
            if let Some((w, r)) = other_record(&writer, reader) {
                return Err(CodecError::BadBody {
                    topic: topic.name.to_string(),
                    id,
                    message: format!(
                        "schema {id} is the record {w}, not {r}: a record of another type is not read as this topic's"
                    ),
                });
            }
            let datum = GenericDatumReader::builder(&writer)
                .reader_schema(reader)
                .build()
                .map_err(bad)?;
            read_datum(&datum, &mut body).map_err(bad)?
        };
        if !body.is_empty() {
            return Err(CodecError::BadBody {
                topic: topic.name.to_string(),
                id,
                message: format!("{} bytes left over after the record", body.len()),
            });
        }
        Ok(value)
    }

    /// Decodes a framed record into a typed event.
    pub async fn decode<E: Event>(&self, bytes: &[u8]) -> Result<E, CodecError> {
        let value = self.decode_value(E::topic(), bytes).await?;
        E::from_avro(value).map_err(|e| CodecError::BadBody {
            topic: E::TOPIC.to_string(),
            id: wire::split(bytes).map(|(id, _)| id).unwrap_or_default(),
            message: e.to_string(),
        })
    }
}

/// Reads one datum from the front of `body` (advanced past it), where the
/// end of `body` is the end of the record: apache-avro reads a string, a
/// boolean or a union index that meets the end of its input as null (the
/// end of a stream of records), so `read_value` on the slice itself decodes
/// a truncated record, with nulls in fields that cannot be null. Here a
/// read past the end is an error.
pub fn read_datum(
    reader: &GenericDatumReader<'_>,
    body: &mut &[u8],
) -> Result<Value, apache_avro::Error> {
    reader.read_value(&mut WholeRecord(body))
}

/// A record's bytes: a read past their end is invalid data, not the end
/// of a stream.
struct WholeRecord<'a, 'b>(&'a mut &'b [u8]);

impl Read for WholeRecord<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.len() > self.0.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the record ends early ({} bytes wanted, {} left)",
                    buf.len(),
                    self.0.len()
                ),
            ));
        }
        self.0.read_exact(buf)
    }
}

/// The full names (writer's, reader's) when both are records and the
/// writer's is neither the reader's name nor one of its aliases: Avro
/// resolves a record only into a record of the same name.
fn other_record(writer: &Schema, reader: &Schema) -> Option<(String, String)> {
    let (Schema::Record(w), Schema::Record(r)) = (writer, reader) else {
        return None;
    };
    let (w_name, r_name) = (w.name.fullname(None), r.name.fullname(None));
    let alias = r
        .aliases
        .iter()
        .flatten()
        .any(|a| a.fullname(r.name.namespace()) == w_name);
    (w_name != r_name && !alias).then_some((w_name, r_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushflow_schemas::{CampaignLaunched, NotificationClicked, NotificationDelivered};

    fn delivered() -> NotificationDelivered {
        NotificationDelivered {
            event_id: "3e0f8f5e-58f4-4d2f-9a4c-0d1b0b9a7c11".into(),
            occurred_at: 1_767_225_600_000,
            store_id: "store-7".into(),
            notification_id: "n-1".into(),
            campaign_id: "c-1".into(),
        }
    }

    /// A registry that is slow to answer and counts registrations.
    struct Slow {
        inner: InMemoryResolver,
        registrations: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SchemaResolver for Slow {
        async fn schema_text(&self, id: u32) -> Result<String, CodecError> {
            self.inner.schema_text(id).await
        }
        async fn register(&self, subject: &str, schema: &str) -> Result<u32, CodecError> {
            self.registrations
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.inner.register(subject, schema).await
        }
    }

    #[tokio::test]
    async fn many_encodes_at_once_register_the_schema_once() {
        let slow = Arc::new(Slow {
            inner: InMemoryResolver::new(),
            registrations: Default::default(),
        });
        let codec = Codec::new(slow.clone());
        let event = delivered();
        let encodes = (0..200).map(|_| codec.encode(&event));
        for r in futures::future::join_all(encodes).await {
            assert_eq!(u32::from_be_bytes(r.unwrap()[1..5].try_into().unwrap()), 1);
        }
        assert_eq!(
            slow.registrations.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
    }

    #[tokio::test]
    async fn round_trips_through_the_wire_format() {
        let codec = Codec::new(Arc::new(InMemoryResolver::new()));
        let bytes = codec.encode(&delivered()).await.unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), 1);
        let back: NotificationDelivered = codec.decode(&bytes).await.unwrap();
        assert_eq!(back, delivered());
    }

    #[tokio::test]
    async fn resolves_an_older_writer_schema() {
        // A writer schema that lacks the reader's optional field cannot be
        // built from the catalogue alone, so use the reverse: a NEWER writer
        // with an extra optional field the catalogue's reader ignores.
        let resolver = Arc::new(InMemoryResolver::new());
        let topic = NotificationDelivered::topic();
        let mut json: serde_json::Value = serde_json::from_str(topic.schema_text).unwrap();
        json["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(
                {"name": "device", "type": ["null", "string"], "default": null, "doc": "new"}
            ));
        let newer = Schema::parse_str(&json.to_string()).unwrap();
        resolver.insert(42, &json.to_string());
        let mut value = delivered().to_avro().unwrap();
        if let Value::Record(fields) = &mut value {
            fields.push((
                "device".into(),
                Value::Union(1, Box::new(Value::String("ios".into()))),
            ));
        }
        let body = GenericDatumWriter::builder(&newer)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap();
        let codec = Codec::new(resolver);
        let back: NotificationDelivered = codec.decode(&wire::frame(42, &body)).await.unwrap();
        assert_eq!(back, delivered());
    }

    #[tokio::test]
    async fn refuses_bad_records_with_clear_errors() {
        let codec = Codec::new(Arc::new(InMemoryResolver::new()));
        let good = codec.encode(&delivered()).await.unwrap();
        let e = codec
            .decode::<NotificationDelivered>(b"{\"a\":1}")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("wrong magic byte 123"), "{e}");
        let mut unknown = good.clone();
        unknown[4] = 99;
        let e = codec
            .decode::<NotificationDelivered>(&unknown)
            .await
            .unwrap_err();
        assert!(matches!(e, CodecError::UnknownSchemaId(99)), "{e}");
        let truncated = &good[..good.len() - 3];
        let e = codec
            .decode::<NotificationDelivered>(truncated)
            .await
            .unwrap_err();
        assert!(matches!(e, CodecError::BadBody { .. }), "{e}");
        assert!(!e.is_retryable());
    }

    #[tokio::test]
    async fn refuses_a_truncated_record_even_untyped() {
        // The last field, campaign_id "c-1", keeps only its length: read
        // from the slice itself, apache-avro would give a null campaign_id.
        let codec = Codec::new(Arc::new(InMemoryResolver::new()));
        let good = codec.encode(&delivered()).await.unwrap();
        let topic = NotificationDelivered::topic();
        for n in 5..good.len() {
            let e = codec.decode_value(topic, &good[..n]).await.unwrap_err();
            assert!(matches!(e, CodecError::BadBody { .. }), "{n}: {e}");
        }
        let e = codec
            .decode_value(topic, &good[..good.len() - 3])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("the record ends early"), "{e}");
    }

    #[tokio::test]
    async fn a_topics_own_schema_is_not_anothers() {
        // Found by the wire_decode fuzz target: once schema 1 had decoded
        // as campaign.created's own, a record of it on another topic was
        // read raw with that topic's schema (the cache was per id only).
        let codec = Codec::new(Arc::new(InMemoryResolver::new()));
        let bytes = codec.encode(&delivered()).await.unwrap();
        let back: NotificationDelivered = codec.decode(&bytes).await.unwrap();
        assert_eq!(back, delivered());
        let e = codec
            .decode::<NotificationClicked>(&bytes)
            .await
            .unwrap_err();
        assert!(matches!(e, CodecError::BadBody { .. }), "{e}");
        let clicked = NotificationClicked {
            event_id: back.event_id,
            occurred_at: back.occurred_at,
            store_id: back.store_id,
            notification_id: back.notification_id,
            campaign_id: back.campaign_id,
        };
        let ok = codec.encode(&clicked).await.unwrap();
        assert_eq!(
            codec.decode::<NotificationClicked>(&ok).await.unwrap(),
            clicked
        );
        assert!(codec.decode::<NotificationDelivered>(&ok).await.is_err());
    }

    #[tokio::test]
    async fn refuses_a_record_of_another_topic() {
        // notification.clicked has the same fields as .delivered, and
        // campaign.launched's are a subset of .delivered's: a delivery
        // written on either topic is not a click nor a launch.
        let codec = Codec::new(Arc::new(InMemoryResolver::new()));
        let bytes = codec.encode(&delivered()).await.unwrap();
        for topic in [NotificationClicked::topic(), CampaignLaunched::topic()] {
            let e = codec.decode_value(topic, &bytes).await.unwrap_err();
            assert!(
                e.to_string()
                    .contains("is the record io.pushflow.events.NotificationDelivered, not"),
                "{e}"
            );
        }
        // An alias of the reader's record still resolves.
        let resolver = Arc::new(InMemoryResolver::new());
        let mut json: serde_json::Value =
            serde_json::from_str(NotificationDelivered::topic().schema_text).unwrap();
        json["name"] = "Delivery".into();
        resolver.insert(42, &json.to_string());
        let old = Schema::parse_str(&json.to_string()).unwrap();
        let body = GenericDatumWriter::builder(&old)
            .build()
            .unwrap()
            .write_value_to_vec(delivered().to_avro().unwrap())
            .unwrap();
        let codec = Codec::new(resolver);
        let framed = wire::frame(42, &body);
        assert!(codec
            .decode::<NotificationDelivered>(&framed)
            .await
            .is_err());
        let mut aliased = Schema::parse_str(NotificationDelivered::topic().schema_text).unwrap();
        if let Schema::Record(r) = &mut aliased {
            r.aliases = Some(vec!["Delivery".try_into().unwrap()]);
        }
        assert_eq!(other_record(&old, &aliased), None);
        assert!(other_record(&old, NotificationDelivered::topic().schema()).is_some());
    }
}
