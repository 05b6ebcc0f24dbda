//! The one codec for stored bytes: raft log entries, snapshots and raft RPC payloads are
//! encoded here, with bincode 2.0.1 (pinned: 3.0.0 is an empty crate).
//!
//! Every stored type derives `bincode::Encode`/`Decode` and carries its own version tag (see
//! `state::VersionedCommand`), so a change to a stored type is a visible compatibility change.
//! Opaque A2A JSON inside stored types is held as [`Json`], encoded as its text.

use bincode::config::{Configuration, Fixint, LittleEndian, standard};
use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use serde_json::Value;

/// Stored bytes are little-endian with fixed-width integers: simple to reason about on disk
/// and as fast as varints for our mostly-string payloads.
fn config() -> Configuration<LittleEndian, Fixint> {
    standard().with_fixed_int_encoding()
}

/// Encodes a stored value.
pub fn encode<T: bincode::Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for our types: they have no fallible Encode impls
    // except Json, whose serialization of a Value cannot fail.
    // Not sized first: that would serialize the JSON inside twice. Commands are small.
    let mut out = Vec::with_capacity(ENCODE_CAPACITY_START);
    bincode::encode_into_std_write(value, &mut out, config()).expect("encoding a stored value cannot fail");
    out
}

/// First allocation for an encoded value: most commands fit.
const ENCODE_CAPACITY_START: usize = 1024;

/// Decodes a stored value, requiring that every byte is consumed.
pub fn decode<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, read) = bincode::decode_from_slice(bytes, config())?;
    if read != bytes.len() {
        return Err(DecodeError::OtherString(format!("{} trailing bytes after a stored value", bytes.len() - read)));
    }
    Ok(value)
}

/// Opaque A2A JSON kept inside stored types (messages, parts, metadata, cards). It is stored
/// as JSON text so bincode never has to understand it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Json(pub Value);

impl Json {
    pub fn into_inner(self) -> Value {
        self.0
    }
}

impl From<Value> for Json {
    fn from(value: Value) -> Self {
        Self(value)
    }
}

impl bincode::Encode for Json {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        let text = serde_json::to_string(&self.0).map_err(|e| EncodeError::OtherString(e.to_string()))?;
        text.encode(encoder)
    }
}

impl<C> bincode::Decode<C> for Json {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let text = String::decode(decoder)?;
        serde_json::from_str(&text).map(Json).map_err(|e| DecodeError::OtherString(format!("stored json: {e}")))
    }
}

impl<'de, C> bincode::BorrowDecode<'de, C> for Json {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        <Self as bincode::Decode<C>>::decode(decoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(bincode::Encode, bincode::Decode, Debug, PartialEq)]
    struct Sample {
        id: String,
        n: u64,
        body: Json,
        maybe: Option<Json>,
    }

    #[test]
    fn round_trip_with_json() {
        let s =
            Sample { id: "t-1".into(), n: 7, body: Json(json!({"parts": [{"text": "hi"}], "x": null})), maybe: None };
        let bytes = encode(&s);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
    }

    #[test]
    fn trailing_and_truncated_bytes_are_errors() {
        let s = Sample { id: "a".into(), n: 1, body: Json(json!(1)), maybe: Some(Json(json!([]))) };
        let mut bytes = encode(&s);
        bytes.push(0);
        assert!(decode::<Sample>(&bytes).is_err());
        bytes.truncate(bytes.len() - 3);
        assert!(decode::<Sample>(&bytes).is_err());
    }
}
