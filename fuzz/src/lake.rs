//! `wire_decode`, the lake's side: the same bytes as the s3-parquet sink
//! reads them, with the writer's schema only (the lake keeps every
//! version's columns), through its fast decoder when the schema is all
//! primitives (`decode::Decoder`) and apache-avro's generic reader
//! otherwise.
//!
//! Properties: the fast decoder accepts a body exactly when apache-avro's
//! reader over the whole record does (`codec::read_datum`), leaving no
//! bytes over (the sink refuses trailing bytes), and then both give the
//! same Arrow row and the same event time; on a refusal it leaves no
//! cells behind. Whatever the generic reader accepts fits the writer's
//! layout. (A refused record goes to `<topic>.dlq` with
//! `pushflow.dlq.error` = "cannot decode for the lake: …".)

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use pushflow_runtime::codec::{read_datum, wire};
use pushflow_s3_parquet::columns::{Batcher, Layout};
use pushflow_s3_parquet::decode::Decoder;
use std::sync::Arc;

use crate::wire::Writer;

/// Checks the properties of the module doc for one record value.
pub fn check(bytes: &[u8]) {
    let Ok((id, body)) = wire::split(bytes) else {
        return; // the same refusal as every consumer's (see `crate::wire`)
    };
    let Writer::Avro(schema) = crate::wire::writer(id) else {
        return;
    };
    let layout = Arc::new(Layout::of(schema).expect("every registered writer has a lake layout"));
    let reader = GenericDatumReader::builder(schema)
        .build()
        .expect("a reader over a registered writer");
    // The reference: apache-avro's reader over the whole record (see
    // `codec::read_datum`: a read past the end is an error, not a null).
    let mut rest = body;
    let generic = read_datum(&reader, &mut rest)
        .ok()
        .filter(|_| rest.is_empty());
    if let Some(v) = &generic {
        let mut b = Batcher::new(layout.clone());
        b.append(v).unwrap_or_else(|e| {
            panic!("id {id}: the generic reader's value does not fit the layout: {e}")
        });
    }
    let Some(decoder) = Decoder::of(schema) else {
        return; // the sink reads this writer with exactly the reader above
    };
    let mut rest = body;
    let mut cells = Vec::new();
    let read = decoder.read(&mut rest, &mut cells);
    if read.is_err() {
        assert!(cells.is_empty(), "id {id}: a refusal left cells behind");
    }
    let fast = read.is_ok() && rest.is_empty();
    assert_eq!(
        fast,
        generic.is_some(),
        "id {id}: the fast decoder {} a body the generic reader {} ({read:?})",
        if fast { "accepts" } else { "refuses" },
        if fast { "refuses" } else { "accepts" },
    );
    let Some(v) = generic else {
        return;
    };
    let (mut x, mut y) = (Batcher::new(layout.clone()), Batcher::new(layout));
    x.append_cells(&cells)
        .unwrap_or_else(|e| panic!("id {id}: the fast decoder's cells do not fit the layout: {e}"));
    y.append(&v).expect("appended above");
    assert_eq!(
        x.finish().expect("one row"),
        y.finish().expect("one row"),
        "id {id}: the fast and the generic path give different rows"
    );
    assert_eq!(
        decoder.event_time(&cells),
        event_time(&v),
        "id {id}: event time"
    );
}

/// `occurred_at` as the generic path takes it (timestamp-millis or long,
/// possibly in a union).
fn event_time(v: &Value) -> Option<i64> {
    let Value::Record(fields) = v else {
        return None;
    };
    let (_, t) = fields.iter().find(|(n, _)| n == "occurred_at")?;
    match t {
        Value::Union(_, inner) => event_time_of(inner),
        other => event_time_of(other),
    }
}

fn event_time_of(v: &Value) -> Option<i64> {
    match v {
        Value::TimestampMillis(t) | Value::Long(t) => Some(*t),
        _ => None,
    }
}
