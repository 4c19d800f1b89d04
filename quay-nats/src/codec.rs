//! How payloads cross the wire: the [`Codec`] trait, and [`Json`], the
//! default, through serde.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

/// Encodes a payload for the stream and decodes it on a node. A payload
/// that does not decode on a node is poison: it goes to the DLQ at once.
pub trait Codec<T>: Send + Sync + 'static {
    /// The payload's bytes.
    fn encode(&self, payload: &T) -> Result<Bytes, String>;
    /// The payload from its bytes.
    fn decode(&self, bytes: &[u8]) -> Result<T, String>;
}

/// JSON through serde_json.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn encode(&self, payload: &T) -> Result<Bytes, String> {
        serde_json::to_vec(payload)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}
