//! From Avro to Arrow, generically: the Arrow schema of a writer schema and
//! typed column builders fed straight from decoded Avro values.
//!
//! Mapping (so that any record of primitives works and schema evolution is
//! only "a new column"): a union with null becomes a nullable column of the
//! other branch; enums, uuids and strings become Utf8; `timestamp-millis`
//! becomes `Timestamp(Millisecond, "UTC")` (Parquet INT64
//! TIMESTAMP(MILLIS, isAdjustedToUTC)); int/long/float/double/boolean/bytes
//! map to their Arrow twins; anything nested (arrays, maps, records,
//! multi-branch unions) is kept as its JSON text in a Utf8 column.

use apache_avro::types::Value;
use apache_avro::Schema;
use arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, PrimitiveBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit,
};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

use crate::decode::Cell;
use crate::LakeError;

/// The column kind a field of the Avro record maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Utf8 (string, enum, uuid, nested-as-JSON).
    Utf8,
    /// Int32 (int, date, time-millis).
    Int32,
    /// Int64 (long and the other time types).
    Int64,
    /// Float32.
    Float32,
    /// Float64.
    Float64,
    /// Boolean.
    Bool,
    /// Timestamp(Millisecond, UTC).
    TimestampMillis,
    /// Binary (bytes, fixed).
    Binary,
    /// Nested value kept as JSON text.
    Json,
}

/// One column: its name, kind and nullability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Field name.
    pub name: String,
    /// Arrow kind.
    pub kind: Kind,
    /// Whether the Avro type is a union with null.
    pub nullable: bool,
}

/// The columns of an Avro record schema and the matching Arrow schema.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Columns in field order.
    pub columns: Vec<Column>,
    /// The Arrow schema.
    pub schema: SchemaRef,
    /// Index of `occurred_at` (the partitioning event time), if present.
    pub event_time: Option<usize>,
    /// Index of `event_id` (what the lake holds once), if present.
    pub event_id: Option<usize>,
}

fn kind_of(schema: &Schema) -> (Kind, bool) {
    match schema {
        Schema::Union(u) => {
            let variants = u.variants();
            let non_null: Vec<&Schema> = variants.iter().filter(|s| **s != Schema::Null).collect();
            let nullable = non_null.len() < variants.len();
            match non_null.as_slice() {
                [one] => (kind_of(one).0, nullable),
                _ => (Kind::Json, true),
            }
        }
        Schema::Boolean => (Kind::Bool, false),
        Schema::Int | Schema::Date | Schema::TimeMillis => (Kind::Int32, false),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => (Kind::Int64, false),
        Schema::TimestampMillis => (Kind::TimestampMillis, false),
        Schema::Float => (Kind::Float32, false),
        Schema::Double => (Kind::Float64, false),
        Schema::Bytes | Schema::Fixed(_) => (Kind::Binary, false),
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => (Kind::Utf8, false),
        _ => (Kind::Json, false),
    }
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Utf8 | Kind::Json => DataType::Utf8,
        Kind::Int32 => DataType::Int32,
        Kind::Int64 => DataType::Int64,
        Kind::Float32 => DataType::Float32,
        Kind::Float64 => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::TimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        Kind::Binary => DataType::Binary,
    }
}

impl Layout {
    /// The layout of a record schema.
    pub fn of(schema: &Schema) -> Result<Layout, LakeError> {
        let Schema::Record(record) = schema else {
            return Err(LakeError::Schema(
                "the topic's schema is not an Avro record".to_string(),
            ));
        };
        let columns: Vec<Column> = record
            .fields
            .iter()
            .map(|f| {
                let (kind, nullable) = kind_of(&f.schema);
                Column {
                    name: f.name.clone(),
                    kind,
                    nullable,
                }
            })
            .collect();
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, data_type(c.kind), c.nullable))
            .collect();
        let event_time = columns.iter().position(|c| c.name == "occurred_at");
        let event_id = columns.iter().position(|c| c.name == "event_id");
        Ok(Layout {
            columns,
            schema: Arc::new(ArrowSchema::new(fields)),
            event_time,
            event_id,
        })
    }
}

enum Builder {
    Utf8(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMillisecondBuilder),
    Binary(BinaryBuilder),
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

fn mismatch(col: &Column, v: &Value) -> LakeError {
    LakeError::Schema(format!(
        "field {:?} holds {v:?}, which does not fit its {:?} column",
        col.name, col.kind
    ))
}

/// Whether `v` (already unwrapped from its union) fits `col`.
fn fits(col: &Column, v: &Value) -> bool {
    match (col.kind, v) {
        (_, Value::Null) => col.nullable,
        (Kind::Json, _) => true,
        (Kind::Utf8, Value::String(_) | Value::Enum(..) | Value::Uuid(_)) => true,
        (Kind::Int32, Value::Int(_) | Value::Date(_) | Value::TimeMillis(_)) => true,
        (
            Kind::Int64,
            Value::Long(_)
            | Value::Int(_)
            | Value::TimeMicros(_)
            | Value::TimestampMicros(_)
            | Value::TimestampNanos(_)
            | Value::LocalTimestampMillis(_)
            | Value::LocalTimestampMicros(_)
            | Value::LocalTimestampNanos(_),
        ) => true,
        (Kind::TimestampMillis, Value::TimestampMillis(_) | Value::Long(_)) => true,
        (Kind::Float32, Value::Float(_)) => true,
        (Kind::Float64, Value::Double(_) | Value::Float(_)) => true,
        (Kind::Bool, Value::Boolean(_)) => true,
        (Kind::Binary, Value::Bytes(_) | Value::Fixed(..)) => true,
        _ => false,
    }
}

/// Whether `c` fits `col` (the decoder yields each column's own type; this
/// is the guard that keeps the columns aligned all the same).
fn cell_fits(col: &Column, c: &Cell<'_>) -> bool {
    matches!(
        (col.kind, c),
        (Kind::Utf8, Cell::Str(_) | Cell::Uuid(_))
            | (Kind::Int32, Cell::Int(_))
            | (Kind::Int64 | Kind::TimestampMillis, Cell::Long(_))
            | (Kind::Float32, Cell::Float(_))
            | (Kind::Float64, Cell::Double(_))
            | (Kind::Bool, Cell::Bool(_))
            | (Kind::Binary, Cell::Bytes(_))
    ) || (col.nullable && *c == Cell::Null)
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        match kind {
            Kind::Utf8 | Kind::Json => Builder::Utf8(StringBuilder::new()),
            Kind::Int32 => Builder::Int32(Int32Builder::new()),
            Kind::Int64 => Builder::Int64(Int64Builder::new()),
            Kind::Float32 => Builder::Float32(Float32Builder::new()),
            Kind::Float64 => Builder::Float64(Float64Builder::new()),
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::TimestampMillis => {
                Builder::Ts(TimestampMillisecondBuilder::new().with_timezone("UTC"))
            }
            Kind::Binary => Builder::Binary(BinaryBuilder::new()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Utf8(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
        }
    }

    /// Appends a cell that [`cell_fits`] the column (anything else is
    /// ignored: the caller checked the whole row first).
    #[inline]
    fn append_cell(&mut self, c: &Cell<'_>) {
        match (self, c) {
            (b, Cell::Null) => b.append_null(),
            (Builder::Utf8(b), Cell::Str(s)) => b.append_value(s),
            (Builder::Utf8(b), Cell::Uuid(u)) => {
                let mut buf = [0u8; 36];
                b.append_value(u.hyphenated().encode_lower(&mut buf));
            }
            (Builder::Int32(b), Cell::Int(x)) => b.append_value(*x),
            (Builder::Int64(b), Cell::Long(x)) => b.append_value(*x),
            (Builder::Ts(b), Cell::Long(x)) => b.append_value(*x),
            (Builder::Float32(b), Cell::Float(x)) => b.append_value(*x),
            (Builder::Float64(b), Cell::Double(x)) => b.append_value(*x),
            (Builder::Bool(b), Cell::Bool(x)) => b.append_value(*x),
            (Builder::Binary(b), Cell::Bytes(x)) => b.append_value(x),
            _ => debug_assert!(false, "append_cell: unchecked cell {c:?}"),
        }
    }

    fn append(&mut self, col: &Column, v: &Value) -> Result<(), LakeError> {
        let v = unwrap_union(v);
        if matches!(v, Value::Null) {
            self.append_null();
            return Ok(());
        }
        match (self, v) {
            (Builder::Utf8(b), Value::String(s) | Value::Enum(_, s)) => b.append_value(s),
            (Builder::Utf8(b), Value::Uuid(u)) => {
                let mut buf = [0u8; 36];
                b.append_value(u.hyphenated().encode_lower(&mut buf));
            }
            (Builder::Utf8(b), other) if col.kind == Kind::Json => {
                let json: serde_json::Value = other
                    .clone()
                    .try_into()
                    .map_err(|e| LakeError::Schema(format!("field {:?}: {e}", col.name)))?;
                b.append_value(json.to_string());
            }
            (Builder::Int32(b), Value::Int(x) | Value::Date(x) | Value::TimeMillis(x)) => {
                b.append_value(*x)
            }
            (
                Builder::Int64(b),
                Value::Long(x)
                | Value::TimeMicros(x)
                | Value::TimestampMicros(x)
                | Value::TimestampNanos(x)
                | Value::LocalTimestampMillis(x)
                | Value::LocalTimestampMicros(x)
                | Value::LocalTimestampNanos(x),
            ) => b.append_value(*x),
            (Builder::Int64(b), Value::Int(x)) => b.append_value(i64::from(*x)),
            (Builder::Ts(b), Value::TimestampMillis(x) | Value::Long(x)) => b.append_value(*x),
            (Builder::Float32(b), Value::Float(x)) => b.append_value(*x),
            (Builder::Float64(b), Value::Double(x)) => b.append_value(*x),
            (Builder::Float64(b), Value::Float(x)) => b.append_value(f64::from(*x)),
            (Builder::Bool(b), Value::Boolean(x)) => b.append_value(*x),
            (Builder::Binary(b), Value::Bytes(x) | Value::Fixed(_, x)) => b.append_value(x),
            (_, v) => return Err(mismatch(col, v)),
        }
        Ok(())
    }

    /// The array so far; the builder starts again with room for as many
    /// rows and bytes (batches are alike, so this saves regrowing).
    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => {
                let a = b.finish();
                *b = StringBuilder::with_capacity(a.len(), a.value_data().len());
                Arc::new(a)
            }
            Builder::Int32(b) => refill(b),
            Builder::Int64(b) => refill(b),
            Builder::Float32(b) => refill(b),
            Builder::Float64(b) => refill(b),
            Builder::Bool(b) => {
                let a = b.finish();
                *b = BooleanBuilder::with_capacity(a.len());
                Arc::new(a)
            }
            Builder::Ts(b) => refill(b),
            Builder::Binary(b) => {
                let a = b.finish();
                *b = BinaryBuilder::with_capacity(a.len(), a.value_data().len());
                Arc::new(a)
            }
        }
    }
}

/// The array of a primitive builder so far; the builder starts again with
/// room for as many rows and the same data type (a timestamp keeps its
/// time zone).
fn refill<T: ArrowPrimitiveType>(b: &mut PrimitiveBuilder<T>) -> ArrayRef {
    let a = b.finish();
    *b = PrimitiveBuilder::<T>::with_capacity(a.len()).with_data_type(a.data_type().clone());
    Arc::new(a)
}

/// Typed Arrow builders for one layout: append decoded records, take
/// record batches.
pub struct Batcher {
    layout: Arc<Layout>,
    builders: Vec<Builder>,
    rows: usize,
}

impl Batcher {
    /// Empty builders for `layout`.
    pub fn new(layout: Arc<Layout>) -> Batcher {
        let builders = layout
            .columns
            .iter()
            .map(|c| Builder::new(c.kind))
            .collect();
        Batcher {
            layout,
            builders,
            rows: 0,
        }
    }

    /// Rows appended since the last [`Batcher::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends a decoded record (fields in the layout's order). On error
    /// nothing is appended.
    pub fn append(&mut self, record: &Value) -> Result<(), LakeError> {
        let Value::Record(fields) = record else {
            return Err(LakeError::Schema("the value is not an Avro record".into()));
        };
        if fields.len() != self.layout.columns.len() {
            return Err(LakeError::Schema(format!(
                "record has {} fields, its schema {}",
                fields.len(),
                self.layout.columns.len()
            )));
        }
        // Check first so that a bad value leaves the columns aligned.
        for (col, (_, v)) in self.layout.columns.iter().zip(fields) {
            if !fits(col, unwrap_union(v)) {
                return Err(mismatch(col, v));
            }
        }
        for (i, (col, (_, v))) in self.layout.columns.iter().zip(fields).enumerate() {
            self.builders[i].append(col, v)?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends a record read by [`crate::decode::Decoder`] (a cell per
    /// column, in order). On error nothing is appended.
    pub fn append_cells(&mut self, cells: &[Cell<'_>]) -> Result<(), LakeError> {
        if cells.len() != self.layout.columns.len() {
            return Err(LakeError::Schema(format!(
                "record has {} fields, its schema {}",
                cells.len(),
                self.layout.columns.len()
            )));
        }
        // Check first so that a bad value leaves the columns aligned.
        for (col, c) in self.layout.columns.iter().zip(cells) {
            if !cell_fits(col, c) {
                return Err(LakeError::Schema(format!(
                    "field {:?} holds {c:?}, which does not fit its {:?} column",
                    col.name, col.kind
                )));
            }
        }
        for (b, c) in self.builders.iter_mut().zip(cells) {
            b.append_cell(c);
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows appended so far as one batch; the builders start again,
    /// empty, with room for a batch like this one.
    pub fn finish(&mut self) -> Result<RecordBatch, LakeError> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.layout.schema.clone(), arrays)?)
    }
}
