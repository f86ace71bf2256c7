//! The Confluent wire format: magic byte 0, a 4-byte big-endian schema id,
//! then the Avro body.

use super::CodecError;

/// The only magic byte Confluent's format defines.
pub const MAGIC: u8 = 0;

/// Splits a framed value into (schema id, Avro body), checking the magic
/// byte explicitly.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match bytes {
        [] | [_] | [_, _] | [_, _, _] | [_, _, _, _] => Err(CodecError::TooShort(bytes.len())),
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [m, ..] => Err(CodecError::WrongMagicByte(*m)),
    }
}

/// Frames an Avro body with its schema id.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_splits() {
        let f = frame(258, b"abc");
        assert_eq!(f, [0, 0, 0, 1, 2, b'a', b'b', b'c']);
        assert_eq!(split(&f).unwrap(), (258, &b"abc"[..]));
    }

    #[test]
    fn refuses_bad_frames() {
        assert!(matches!(split(&[0, 0, 1]), Err(CodecError::TooShort(3))));
        assert!(matches!(
            split(&[1, 0, 0, 0, 1, 9]),
            Err(CodecError::WrongMagicByte(1))
        ));
        assert!(matches!(
            split(b"{\"json\":1}"),
            Err(CodecError::WrongMagicByte(b'{'))
        ));
    }
}
