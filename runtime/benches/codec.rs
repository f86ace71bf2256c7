//! Encode and decode of `notification.delivered` through the Codec (wire
//! format, cached schema ids, typed event), beside apache-avro's plain
//! decode of the same Avro body as the baseline.
//!
//! `cargo bench -p pushflow-runtime --bench codec`

// criterion's macros generate undocumented public functions.
#![expect(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pushflow_runtime::codec::{wire, Codec, InMemoryResolver};
use pushflow_schemas::{Event, NotificationDelivered};
use std::sync::Arc;

fn event() -> NotificationDelivered {
    NotificationDelivered {
        event_id: "3e0f8f5e-58f4-4d2f-9a4c-0d1b0b9a7c11".into(),
        occurred_at: 1_767_225_600_000,
        store_id: "store-000123".into(),
        notification_id: "6c1b2f0e-8a34-5d2c-9e77-0f5a1b2c3d4e".into(),
        campaign_id: "campaign-42".into(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let codec = Codec::new(Arc::new(InMemoryResolver::new()));
    let e = event();
    let bytes = rt.block_on(codec.encode(&e)).unwrap();
    let (_, body) = wire::split(&bytes).unwrap();
    let body = body.to_vec();
    let schema = NotificationDelivered::topic().schema();

    let mut g = c.benchmark_group("notification.delivered");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline: apache-avro plain decode", |b| {
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
            .build()
            .unwrap();
        b.iter(|| reader.read_value(&mut black_box(&body[..])).unwrap())
    });
    g.bench_function("pushflow decode (wire + typed)", |b| {
        b.iter(|| {
            rt.block_on(codec.decode::<NotificationDelivered>(black_box(&bytes)))
                .unwrap()
        })
    });
    g.bench_function("pushflow encode (typed + wire)", |b| {
        b.iter(|| rt.block_on(codec.encode(black_box(&e))).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
