//! Signed cursors: where a list stopped, handed to clients as opaque text and taken back only
//! unaltered.
//!
//! A cursor is the JSON of a list's position, base64url-encoded, then `.` and an HMAC-SHA-256
//! tag of it (128 bits). The key is derived from `SECRET_KEY`, so every instance that shares
//! the key accepts the cursors of the others, and a cursor tells nothing a client could change
//! to read past the filters it was made for. What a position means (the sort, the filters it
//! is tied to) is the business of each list; this module only seals and opens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag kept in a cursor: enough against forgery, short in a URL.
const TAG_BYTES: usize = 16;
/// Longest cursor text read; anything longer is not one of ours.
pub const MAX_CURSOR_CHARS: usize = 2048;
/// Why the key is derived rather than `SECRET_KEY` used as it is: a tag made for a cursor can
/// never pass for a token signature, nor the reverse.
const KEY_PURPOSE: &[u8] = b"app list cursor v1";

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not made by this service with this key, or altered since.
    #[error(
        "is not a cursor this service issued for this list (damaged, altered, made for another list or with another SECRET_KEY); start again without it"
    )]
    Forged,
}

/// Seals and opens cursors with the key derived from the secret.
#[derive(Clone)]
pub struct Cursors {
    key: [u8; 32],
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors { key: <redacted> }")
    }
}

impl Cursors {
    /// The key is HMAC-SHA-256(secret, purpose).
    pub fn new(secret: &str) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        mac.update(KEY_PURPOSE);
        Cursors {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn tag(&self, payload: &str) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes()[..TAG_BYTES].to_vec()
    }

    /// The cursor text of `position`.
    pub fn seal<T: Serialize>(&self, position: &T) -> String {
        let json = serde_json::to_vec(position).expect("a position serializes");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(self.tag(&payload));
        format!("{payload}.{tag}")
    }

    /// The position sealed in `text`, if this key sealed it and nothing changed since.
    pub fn open<T: DeserializeOwned>(&self, text: &str) -> Result<T, CursorError> {
        if text.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::Forged);
        }
        let (payload, tag) = text.split_once('.').ok_or(CursorError::Forged)?;
        let given = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Forged)?;
        if given.len() != TAG_BYTES {
            return Err(CursorError::Forged);
        }
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(payload.as_bytes());
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&given)
            .map_err(|_| CursorError::Forged)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CursorError::Forged)?;
        // Signed by us yet unreadable: a cursor of another version of the position's shape.
        serde_json::from_slice(&json).map_err(|_| CursorError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Spot {
        key: String,
        id: u32,
    }

    fn spot() -> Spot {
        Spot {
            key: "milk".into(),
            id: 7,
        }
    }

    #[test]
    fn a_sealed_position_opens_unchanged() {
        let cursors = Cursors::new("a-secret");
        let text = cursors.seal(&spot());
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{text}"
        );
        assert_eq!(cursors.open::<Spot>(&text), Ok(spot()));
    }

    #[test]
    fn altered_or_foreign_cursors_are_refused() {
        let cursors = Cursors::new("a-secret");
        let text = cursors.seal(&spot());
        let (payload, tag) = text.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode(br#"{"key":"milk","id":8}"#);
        for bad in [
            format!("{other}.{tag}"),
            format!("{payload}.{}", &tag[..tag.len() - 2]),
            format!("{payload}."),
            payload.to_string(),
            String::new(),
            "x".repeat(MAX_CURSOR_CHARS + 1),
        ] {
            assert_eq!(
                cursors.open::<Spot>(&bad),
                Err(CursorError::Forged),
                "{bad}"
            );
        }
        let elsewhere = Cursors::new("another-secret");
        assert_eq!(elsewhere.open::<Spot>(&text), Err(CursorError::Forged));
    }
}
