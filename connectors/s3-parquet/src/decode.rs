//! The sink's fast path from Avro bytes to the column builders.
//!
//! A record whose fields are all primitives — boolean, int, long, float,
//! double, bytes, string, enum, fixed, uuid and the date/time logical
//! types, each possibly in a union with null — is read straight from its binary
//! encoding into [`Cell`]s that borrow its bytes: no `Value` tree, no
//! allocation per field. That is most of the cost of going through
//! apache-avro's generic reader (a `String` per field name and per string
//! value, built and then dropped for every record). Any other schema
//! (nested records, arrays, maps, multi-branch unions, decimal, duration,
//! references to named types) goes through the generic reader and
//! [`crate::columns::Batcher::append`].
//!
//! The decoder accepts exactly what the generic reader with the same
//! writer schema accepts for these types (zig-zag varints of at most ten
//! bytes, ints within 32 bits, non-negative lengths, UTF-8 strings, booleans
//! 0 or 1, enum and union indexes in range, uuids that parse); a record it
//! refuses goes to the DLQ like one the generic reader refuses.

use apache_avro::schema::UuidSchema;
use apache_avro::{Schema, Uuid};

/// One field of a record as read from its bytes (strings and bytes borrow
/// them; enum symbols borrow the schema).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// Null (the null branch of a union).
    Null,
    /// boolean.
    Bool(bool),
    /// int, date, time-millis.
    Int(i32),
    /// long and the other date/time types (timestamp-millis included).
    Long(i64),
    /// float.
    Float(f32),
    /// double.
    Double(f64),
    /// string, enum symbol.
    Str(&'a str),
    /// bytes, fixed.
    Bytes(&'a [u8]),
    /// uuid (written to its column as lowercase hyphenated text).
    Uuid(Uuid),
}

/// How to read one field.
#[derive(Debug, Clone)]
enum Op {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    Str,
    Bytes,
    Fixed(usize),
    Enum(Vec<String>),
    /// uuid as a string (any form `Uuid::parse_str` takes).
    UuidStr,
    /// uuid as 16 bytes, length-prefixed or fixed of this size.
    UuidBytes,
    UuidFixed(usize),
    /// Union branches (null and one other type).
    Union(Vec<Op>),
}

/// Reads records of one writer schema into cells, one per field.
#[derive(Debug, Clone)]
pub struct Decoder {
    ops: Vec<Op>,
    event_time: Option<usize>,
}

fn primitive(schema: &Schema) -> Option<Op> {
    Some(match schema {
        Schema::Boolean => Op::Bool,
        Schema::Int | Schema::Date | Schema::TimeMillis => Op::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Op::Long,
        Schema::Float => Op::Float,
        Schema::Double => Op::Double,
        Schema::Bytes => Op::Bytes,
        Schema::String => Op::Str,
        Schema::Fixed(f) => Op::Fixed(f.size),
        Schema::Enum(e) => Op::Enum(e.symbols.clone()),
        Schema::Uuid(UuidSchema::String) => Op::UuidStr,
        Schema::Uuid(UuidSchema::Bytes) => Op::UuidBytes,
        Schema::Uuid(UuidSchema::Fixed(f)) => Op::UuidFixed(f.size),
        _ => return None,
    })
}

fn op_of(schema: &Schema) -> Option<Op> {
    let Schema::Union(u) = schema else {
        return primitive(schema);
    };
    let variants = u.variants();
    if variants.iter().filter(|s| **s != Schema::Null).count() != 1 {
        return None; // a JSON column (see `columns`): the generic path
    }
    let branches = variants
        .iter()
        .map(|s| match s {
            Schema::Null => Some(Op::Null),
            other => primitive(other),
        })
        .collect::<Option<Vec<Op>>>()?;
    Some(Op::Union(branches))
}

impl Decoder {
    /// The decoder of a record schema; `None` when a field needs the
    /// generic reader.
    pub fn of(schema: &Schema) -> Option<Decoder> {
        let Schema::Record(record) = schema else {
            return None;
        };
        let ops = record
            .fields
            .iter()
            .map(|f| op_of(&f.schema))
            .collect::<Option<Vec<Op>>>()?;
        // The event time as the generic path takes it: a timestamp-millis
        // or a long `occurred_at` (possibly nullable).
        let event_time = record.fields.iter().position(|f| {
            f.name == "occurred_at"
                && match &f.schema {
                    Schema::Union(u) => u
                        .variants()
                        .iter()
                        .any(|s| matches!(s, Schema::TimestampMillis | Schema::Long)),
                    s => matches!(s, Schema::TimestampMillis | Schema::Long),
                }
        });
        Some(Decoder { ops, event_time })
    }

    /// Reads one record from the front of `buf` (advanced past it) into
    /// `out` (cleared first). On error `out` is cleared and the message
    /// says what is wrong.
    pub fn read<'a>(&'a self, buf: &mut &'a [u8], out: &mut Vec<Cell<'a>>) -> Result<(), String> {
        out.clear();
        for op in &self.ops {
            match read_op(op, buf) {
                Ok(c) => out.push(c),
                Err(e) => {
                    let field = out.len();
                    out.clear();
                    return Err(format!("field {field}: {e}"));
                }
            }
        }
        Ok(())
    }

    /// The event time (ms since the epoch) of a record read by
    /// [`Decoder::read`]: its `occurred_at` field when that is a
    /// timestamp-millis or long and not null.
    pub fn event_time(&self, cells: &[Cell<'_>]) -> Option<i64> {
        match cells.get(self.event_time?) {
            Some(Cell::Long(t)) => Some(*t),
            _ => None,
        }
    }
}

/// A reusable cell buffer of any lifetime: the allocation is kept (an
/// empty `Vec` is collected in place), the borrows are not.
pub fn recycle<'b>(mut cells: Vec<Cell<'_>>) -> Vec<Cell<'b>> {
    cells.clear();
    cells.into_iter().map(|_| Cell::Null).collect()
}

fn read_op<'a>(op: &'a Op, buf: &mut &'a [u8]) -> Result<Cell<'a>, String> {
    Ok(match op {
        Op::Null => Cell::Null,
        Op::Bool => match take(buf, 1)?[0] {
            0 => Cell::Bool(false),
            1 => Cell::Bool(true),
            b => return Err(format!("{b} is not a boolean (0 or 1)")),
        },
        Op::Int => Cell::Int(int(buf)?),
        Op::Long => Cell::Long(long(buf)?),
        Op::Float => Cell::Float(f32::from_le_bytes(
            take(buf, 4)?.try_into().map_err(|_| "float")?,
        )),
        Op::Double => Cell::Double(f64::from_le_bytes(
            take(buf, 8)?.try_into().map_err(|_| "double")?,
        )),
        Op::Str => {
            let n = len(buf)?;
            let bytes = take(buf, n)?;
            Cell::Str(std::str::from_utf8(bytes).map_err(|e| format!("string: {e}"))?)
        }
        Op::Bytes => {
            let n = len(buf)?;
            Cell::Bytes(take(buf, n)?)
        }
        Op::Fixed(n) => Cell::Bytes(take(buf, *n)?),
        Op::Enum(symbols) => {
            let i = int(buf)?;
            let symbol = usize::try_from(i).ok().and_then(|i| symbols.get(i));
            Cell::Str(symbol.ok_or_else(|| {
                format!("enum index {i} out of range ({} symbols)", symbols.len())
            })?)
        }
        Op::UuidStr => {
            let n = len(buf)?;
            let bytes = take(buf, n)?;
            // Only ASCII parses, so this is the generic reader's UTF-8
            // check and parse in one.
            Cell::Uuid(Uuid::try_parse_ascii(bytes).map_err(|e| format!("uuid: {e}"))?)
        }
        Op::UuidBytes => {
            let n = len(buf)?;
            Cell::Uuid(Uuid::from_slice(take(buf, n)?).map_err(|e| format!("uuid: {e}"))?)
        }
        Op::UuidFixed(n) => {
            let bytes = take(buf, *n)?;
            Cell::Uuid(Uuid::from_slice(bytes).map_err(|e| format!("uuid: {e}"))?)
        }
        Op::Union(branches) => {
            let i = long(buf)?;
            let branch = usize::try_from(i).ok().and_then(|i| branches.get(i));
            let branch = branch.ok_or_else(|| {
                format!(
                    "union branch {i} out of range ({} branches)",
                    branches.len()
                )
            })?;
            read_op(branch, buf)?
        }
    })
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!(
            "the record ends early ({n} bytes wanted, {} left)",
            buf.len()
        ));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

/// A zig-zag varint of at most ten bytes (Avro's long).
#[inline]
fn long(buf: &mut &[u8]) -> Result<i64, String> {
    let mut z: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(if z & 1 == 0 {
                (z >> 1) as i64
            } else {
                !(z >> 1) as i64
            });
        }
    }
    Err(if buf.len() >= 10 {
        "a varint longer than 10 bytes".to_string()
    } else {
        "the record ends inside a varint".to_string()
    })
}

#[inline]
fn int(buf: &mut &[u8]) -> Result<i32, String> {
    let v = long(buf)?;
    i32::try_from(v).map_err(|_| format!("{v} does not fit an int"))
}

#[inline]
fn len(buf: &mut &[u8]) -> Result<usize, String> {
    let v = long(buf)?;
    usize::try_from(v).map_err(|_| format!("negative length {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::{Batcher, Layout};
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;
    use std::sync::Arc;

    const SCHEMA: &str = r#"{"type": "record", "name": "All", "fields": [
        {"name": "s", "type": "string"},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "boolean"},
        {"name": "by", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "ns", "type": ["null", "string"], "default": null},
        {"name": "nl", "type": ["long", "null"]},
        {"name": "ne", "type": ["null", {"type": "enum", "name": "E2", "symbols": ["X", "Y"]}], "default": null},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "nid", "type": ["null", {"type": "string", "logicalType": "uuid"}], "default": null},
        {"name": "nd", "type": ["null", "double"], "default": null}
    ]}"#;

    fn to_avro_datum(schema: &Schema, v: Value) -> Result<Vec<u8>, apache_avro::Error> {
        GenericDatumWriter::builder(schema)
            .build()?
            .write_value_to_vec(v)
    }

    fn value(i: i64) -> Value {
        let null_or = |v: Value, branch: u32| {
            if i % 3 == 0 {
                Value::Union(if branch == 0 { 1 } else { 0 }, Box::new(Value::Null))
            } else {
                Value::Union(branch, Box::new(v))
            }
        };
        Value::Record(vec![
            (
                "s".into(),
                Value::String(format!("é-{i}-{}", "x".repeat(i as usize % 40))),
            ),
            (
                "occurred_at".into(),
                Value::TimestampMillis(1_767_225_600_000 + i),
            ),
            (
                "i".into(),
                Value::Int(if i % 2 == 0 { i32::MIN } else { i as i32 }),
            ),
            (
                "l".into(),
                Value::Long(if i % 5 == 0 { i64::MAX } else { -i * 1_000_003 }),
            ),
            ("f".into(), Value::Float(i as f32 / 3.0)),
            ("d".into(), Value::Double(-(i as f64) / 7.0)),
            ("b".into(), Value::Boolean(i % 2 == 1)),
            ("by".into(), Value::Bytes(vec![i as u8; i as usize % 9])),
            ("fx".into(), Value::Fixed(4, vec![1, 2, 3, i as u8])),
            (
                "e".into(),
                Value::Enum((i % 3) as u32, ["A", "B", "C"][i as usize % 3].into()),
            ),
            ("day".into(), Value::Date(20_000 + i as i32)),
            ("us".into(), Value::TimestampMicros(i * 1_000_000)),
            ("ns".into(), null_or(Value::String(format!("n{i}")), 1)),
            ("nl".into(), null_or(Value::Long(i), 0)),
            ("ne".into(), null_or(Value::Enum(1, "Y".into()), 1)),
            (
                "id".into(),
                Value::Uuid(Uuid::from_u128(
                    0xABCD_0000_0000_4000_8000_0000_0000_0000 + i as u128,
                )),
            ),
            (
                "nid".into(),
                null_or(Value::Uuid(Uuid::from_u128(i as u128)), 1),
            ),
            ("nd".into(), null_or(Value::Double(0.5), 1)),
        ])
    }

    #[test]
    fn reads_what_the_generic_reader_reads() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let layout = Arc::new(Layout::of(&schema).unwrap());
        let decoder = Decoder::of(&schema).expect("all primitive");
        let reader = GenericDatumReader::builder(&schema).build().unwrap();
        let (mut fast, mut generic) = (Batcher::new(layout.clone()), Batcher::new(layout));
        for i in 0..500 {
            let mut cells = Vec::new();
            let bytes = to_avro_datum(&schema, value(i)).unwrap();
            let mut body = &bytes[..];
            decoder.read(&mut body, &mut cells).unwrap();
            assert!(body.is_empty());
            assert_eq!(decoder.event_time(&cells), Some(1_767_225_600_000 + i));
            fast.append_cells(&cells).unwrap();
            let v = reader.read_value(&mut &bytes[..]).unwrap();
            generic.append(&v).unwrap();
        }
        let (a, b) = (fast.finish().unwrap(), generic.finish().unwrap());
        assert_eq!(a.num_rows(), 500);
        assert_eq!(a, b);
    }

    #[test]
    fn refuses_what_the_generic_reader_refuses() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let decoder = Decoder::of(&schema).unwrap();
        let reader = GenericDatumReader::builder(&schema).build().unwrap();
        let good = to_avro_datum(&schema, value(4)).unwrap();
        let mut cells = Vec::new();
        // Every truncation fails (the record ends with a double).
        for n in 0..good.len() {
            let cut = &good[..n];
            let fast = decoder.read(&mut &cut[..], &mut cells);
            assert!(fast.is_err(), "accepted {n} of {} bytes", good.len());
            assert!(cells.is_empty());
        }
        // Corruptions, one byte at a time: whenever the generic reader
        // refuses the record (or leaves bytes over), so does the decoder,
        // and when it accepts it both read the same row.
        let layout = Arc::new(Layout::of(&schema).unwrap());
        for pos in 0..good.len() {
            for b in [0x00u8, 0x01, 0x02, 0x7f, 0x80, 0xff, 0xc3, b'A', b'-', b'{'] {
                let mut bad = good.clone();
                bad[pos] = b;
                let mut gbody = &bad[..];
                let generic = reader
                    .read_value(&mut gbody)
                    .ok()
                    .filter(|_| gbody.is_empty());
                let mut fbody = &bad[..];
                let mut cells = Vec::new();
                let fast = decoder.read(&mut fbody, &mut cells).is_ok() && fbody.is_empty();
                assert_eq!(fast, generic.is_some(), "byte {pos} = {b:#x}");
                if let Some(v) = generic {
                    let (mut x, mut y) =
                        (Batcher::new(layout.clone()), Batcher::new(layout.clone()));
                    x.append_cells(&cells).unwrap();
                    y.append(&v).unwrap();
                    assert_eq!(
                        x.finish().unwrap(),
                        y.finish().unwrap(),
                        "byte {pos} = {b:#x}"
                    );
                }
            }
        }
        // Varints: eleven continuation bytes, an int out of range.
        let int_schema = Schema::parse_str(
            r#"{"type": "record", "name": "I", "fields": [{"name": "i", "type": "int"}]}"#,
        )
        .unwrap();
        let d = Decoder::of(&int_schema).unwrap();
        let overlong = [0xffu8; 11];
        assert!(d.read(&mut &overlong[..], &mut Vec::new()).is_err());
        let big = to_avro_datum(&Schema::Long, Value::Long(1 << 40)).unwrap();
        assert!(d
            .read(&mut &big[..], &mut Vec::new())
            .unwrap_err()
            .contains("does not fit"));
    }

    #[test]
    fn leaves_nested_and_special_types_to_the_generic_reader() {
        for field in [
            r#"{"type": "array", "items": "string"}"#,
            r#"{"type": "map", "values": "long"}"#,
            r#"["null", "string", "long"]"#,
            r#"["null", "E"]"#,
            r#"{"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}"#,
            r#"{"type": "record", "name": "In", "fields": [{"name": "x", "type": "int"}]}"#,
            r#""null""#,
        ] {
            let s = format!(
                r#"{{"type": "record", "name": "R", "fields": [{{"name": "a", "type": {{"type": "enum", "name": "E", "symbols": ["A"]}}}}, {{"name": "x", "type": {field}}}]}}"#
            );
            let schema = Schema::parse_str(&s).unwrap();
            assert!(Decoder::of(&schema).is_none(), "{field}");
        }
    }

    #[test]
    fn recycles_the_cell_buffer() {
        let mut cells: Vec<Cell<'static>> = Vec::with_capacity(64);
        let ptr = cells.as_ptr();
        let text = String::from("short-lived");
        let mut borrowed: Vec<Cell<'_>> = recycle(std::mem::take(&mut cells));
        borrowed.push(Cell::Str(&text));
        cells = recycle(borrowed);
        assert!(cells.is_empty() && cells.capacity() >= 64);
        assert_eq!(cells.as_ptr(), ptr, "the allocation is kept");
    }
}
