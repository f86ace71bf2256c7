//! `pushflow bench sink`, in process on one core: Avro bodies → Parquet
//! bytes the sink's way, through apache-avro's generic `Value`s, from
//! decoded `Value`s, and the ceiling (arrow-rs's `ArrowWriter` on prebuilt
//! RecordBatches).

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use pushflow_runtime::codec::wire;
use pushflow_s3_parquet::columns::{Batcher, Layout};
use pushflow_s3_parquet::decode::Decoder;
use pushflow_s3_parquet::LakeError;
use pushflow_schemas::{Event, NotificationDelivered};
use std::sync::Arc;
use std::time::Instant;

use super::sink::err;

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

/// Rounds of each in-process measurement. The three measurements take
/// turns and the best round of each counts: on a shared machine the best
/// round is the least disturbed one, for the baseline as for the sink.
pub const ROUNDS: usize = 5;

/// The in-process figures, one core.
#[derive(Debug, Clone)]
pub struct InProcess {
    /// Avro bodies → Parquet the sink's way (fast decoder → builders →
    /// writer), records/s.
    pub decode_encode_rate: f64,
    /// Input (Avro) MB/s of `decode_encode_rate`.
    pub decode_encode_mb_s: f64,
    /// Avro bodies → Parquet through generic `Value`s, records/s.
    pub generic_decode_encode_rate: f64,
    /// Decoded values → Parquet (builders + writer), records/s.
    pub encode_rate: f64,
    /// RecordBatches → Parquet with ArrowWriter alone, records/s.
    pub ceiling_rate: f64,
    /// Parquet bytes per event.
    pub parquet_bytes_per_event: f64,
}

/// Measures, on the current thread, `payloads` (framed Avro records of
/// `notification.delivered`) going to Parquet: from Avro bytes, from
/// decoded values, and the ceiling (ArrowWriter on prebuilt batches).
pub fn in_process(payloads: &[Vec<u8>]) -> Result<InProcess, LakeError> {
    let events = payloads.len() as f64;
    let avro_bytes: usize = payloads.iter().map(|p| p.len().saturating_sub(5)).sum();
    let schema = NotificationDelivered::topic().schema();
    let layout = Arc::new(Layout::of(schema)?);
    let reader = GenericDatumReader::builder(schema).build().map_err(err)?;
    let decode = |p: &Vec<u8>| -> Result<Value, LakeError> {
        let (_, mut body) = wire::split(p).map_err(err)?;
        reader.read_value(&mut body).map_err(err)
    };
    // The sink's path for records of primitives (see `SinkHandler`).
    let decoder = Decoder::of(schema).ok_or_else(|| err("no fast decoder for the schema"))?;
    let sink_path = || -> Result<usize, LakeError> {
        let mut cells = Vec::new();
        to_parquet(&layout, payloads, |b, p| {
            let (_, mut body) = wire::split(p).map_err(err)?;
            decoder.read(&mut body, &mut cells).map_err(err)?;
            b.append_cells(&cells)
        })
    };
    let values: Vec<Value> = payloads.iter().map(decode).collect::<Result<_, _>>()?;
    // The ceiling's input: the same rows as prebuilt batches.
    let mut batcher = Batcher::new(layout.clone());
    let mut batches = Vec::new();
    for v in &values {
        batcher.append(v)?;
        if batcher.rows() >= 8192 {
            batches.push(batcher.finish()?);
        }
    }
    batches.push(batcher.finish()?);

    let (mut decode_encode, mut generic, mut encode, mut ceiling) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    let mut size = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        size = sink_path()?;
        decode_encode = decode_encode.min(started.elapsed().as_secs_f64());

        let started = Instant::now();
        to_parquet(&layout, payloads, |b, p| b.append(&decode(p)?))?;
        generic = generic.min(started.elapsed().as_secs_f64());

        let owned = values.clone(); // outside the clock
        let started = Instant::now();
        to_parquet(&layout, owned, |b, v| b.append(&v))?;
        encode = encode.min(started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut w = ArrowWriter::try_new(Vec::new(), layout.schema.clone(), Some(props()))?;
        for b in &batches {
            w.write(b)?;
        }
        w.into_inner()?;
        ceiling = ceiling.min(started.elapsed().as_secs_f64());
    }
    Ok(InProcess {
        decode_encode_rate: events / decode_encode,
        decode_encode_mb_s: avro_bytes as f64 / decode_encode / 1e6,
        generic_decode_encode_rate: events / generic,
        encode_rate: events / encode,
        ceiling_rate: events / ceiling,
        parquet_bytes_per_event: size as f64 / events.max(1.0),
    })
}

/// Rows → Parquet bytes the sink's way (its builders, flushed every 8,192
/// rows, then its writer settings); `append` adds one row. Returns the
/// file's size.
fn to_parquet<T>(
    layout: &Arc<Layout>,
    rows: impl IntoIterator<Item = T>,
    mut append: impl FnMut(&mut Batcher, T) -> Result<(), LakeError>,
) -> Result<usize, LakeError> {
    let mut batcher = Batcher::new(layout.clone());
    let mut w = ArrowWriter::try_new(Vec::new(), layout.schema.clone(), Some(props()))?;
    for row in rows {
        append(&mut batcher, row)?;
        if batcher.rows() >= 8192 {
            w.write(&batcher.finish()?)?;
        }
    }
    w.write(&batcher.finish()?)?;
    Ok(w.into_inner()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::bench::sink::event;
    use pushflow_runtime::codec::{Codec, InMemoryResolver};

    /// `n` framed `notification.delivered` records, as the benchmark sends them.
    async fn payloads(codec: &Codec, n: u64) -> Result<Vec<Vec<u8>>, LakeError> {
        let t0 = 1_767_225_600_000; // 2026-01-01T00:00Z; 7 ms apart → a few hours
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            out.push(codec.encode(&event(i, t0)).await.map_err(err)?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn measures_in_process() {
        let codec = Codec::new(Arc::new(InMemoryResolver::new()));
        let p = payloads(&codec, 5_000).await.unwrap();
        let ip = in_process(&p).unwrap();
        assert!(ip.encode_rate > 0.0 && ip.ceiling_rate > 0.0, "{ip:?}");
        assert!(ip.parquet_bytes_per_event > 0.0, "{ip:?}");
    }

    /// Profiling aid: `cargo test --release -p pushflow --bin pushflow
    /// profile_encode -- --ignored` under `perf record`.
    #[tokio::test]
    #[ignore]
    async fn profile_encode() {
        let codec = Codec::new(Arc::new(InMemoryResolver::new()));
        let p = payloads(&codec, 300_000).await.unwrap();
        for _ in 0..4 {
            let ip = in_process(&p).unwrap();
            println!(
                "sink path {:.0}% of ceiling, values {:.0}%: {ip:?}",
                100.0 * ip.decode_encode_rate / ip.ceiling_rate,
                100.0 * ip.encode_rate / ip.ceiling_rate
            );
        }
    }
}
