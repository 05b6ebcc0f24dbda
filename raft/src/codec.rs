//! The one codec: every byte this crate stores or sends is made and read here.
//!
//! bincode 2 (serde mode, standard config: little endian, varints) for log entries, vote,
//! snapshot metadata and blobs, and raft RPC bodies. Every encoding starts with a format
//! version byte so a stored type can change later without misreading old files; decoding
//! rejects an unknown version, trailing bytes and anything larger than `decode_bytes_max`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of every encoding made here; bump it (and keep a reader for the old one) when a
/// stored or wire type changes shape.
const FORMAT_VERSION: u8 = 1;

/// Largest value decoded, so a corrupt length prefix cannot make us allocate without bound.
/// One GiB is far above any RPC body or snapshot chunk we accept.
const DECODE_BYTES_MAX: usize = 1 << 30;

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("encode: {0}")]
    Encode(String),
    #[error("decode: {0}")]
    Decode(String),
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("empty input")]
    Empty,
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_BYTES_MAX>()
}

/// Encodes `value` behind the format version byte.
///
/// The size is measured first and the buffer allocated once: entries of a large batch would
/// otherwise grow by doubling, and every regrowth of a big buffer lands on fresh pages the
/// kernel has to zero (seen as a tenth of the write path's CPU in profiles).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let err = |e: bincode::error::EncodeError| CodecError::Encode(e.to_string());
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config()).map_err(err)?;
    let mut out = Vec::with_capacity(1 + size.bytes_written);
    out.push(FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(err)?;
    Ok(out)
}

/// Decodes a value made by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version(version));
    }
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

/// Opaque bytes (a command, a response, a snapshot) encoded as one length-prefixed run
/// instead of serde's byte-by-byte sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(BlobVisitor)
    }
}

struct BlobVisitor;

impl<'de> serde::de::Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
        Ok(Blob(v.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejections() {
        let value = (7u64, Blob(vec![1, 2, 3]), "x".to_owned());
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<(u64, Blob, String)>(&bytes).unwrap(), value);

        let mut wrong_version = bytes.clone();
        wrong_version[0] = 99;
        assert!(matches!(decode::<(u64, Blob, String)>(&wrong_version), Err(CodecError::Version(99))));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(decode::<(u64, Blob, String)>(&trailing), Err(CodecError::Trailing(1))));
        assert!(decode::<(u64, Blob, String)>(&bytes[..bytes.len() - 1]).is_err());
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
    }

    #[test]
    fn blob_is_one_run() {
        let bytes = encode(&Blob(vec![0xAB; 1000])).unwrap();
        // Version byte, varint length (3 bytes for 1000), then the raw bytes.
        assert_eq!(bytes.len(), 1 + 3 + 1000);
    }
}
