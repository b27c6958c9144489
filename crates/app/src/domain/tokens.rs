//! Access tokens: HS256 JWTs signed with `SECRET_KEY`, and the revocations of logout.
//!
//! Only HS256 is accepted, so a token claiming `alg: none` or another algorithm is refused.
//! Logout revokes a token's id until it would have expired anyway; the list lives in this
//! process (a restart forgets it, and tokens are short-lived).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// The token's own id, for revocation.
    pub jti: Uuid,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired; log in again")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
    #[error("the access token was revoked by logout; log in again")]
    Revoked,
}

/// Issues and checks tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime: Duration,
    revoked: Mutex<HashMap<Uuid, i64>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl Tokens {
    pub fn new(secret: &str, lifetime: Duration) -> Self {
        Tokens {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            lifetime,
            revoked: Mutex::new(HashMap::new()),
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A signed token for `user_id`, valid for the configured lifetime.
    pub fn issue(&self, user_id: Uuid) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            iat: now,
            exp: now + i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2),
            jti: Uuid::now_v7(),
        };
        self.sign(&claims)
    }

    /// Signs any claims (tests make expired ones with it).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The claims of a valid, unexpired, unrevoked HS256 token.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|err| {
                match err.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        if self.is_revoked(&data.claims.jti) {
            return Err(TokenError::Revoked);
        }
        Ok(data.claims)
    }

    /// Refuses the token from now on, until its expiry.
    pub fn revoke(&self, claims: &Claims) {
        let now = chrono::Utc::now().timestamp();
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, exp| *exp > now);
        revoked.insert(claims.jti, claims.exp);
    }

    fn is_revoked(&self, jti: &Uuid) -> bool {
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.contains_key(jti)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new("0123456789abcdef0123456789abcdef", Duration::from_secs(60))
    }

    #[test]
    fn issue_verify_revoke() {
        let t = tokens();
        let user = Uuid::now_v7();
        let token = t.issue(user).unwrap();
        let claims = t.verify(&token).unwrap();
        assert_eq!(claims.sub, user);
        t.revoke(&claims);
        assert_eq!(t.verify(&token), Err(TokenError::Revoked));
    }

    #[test]
    fn refuses_expired_tampered_foreign_and_unsigned_tokens() {
        let t = tokens();
        let now = chrono::Utc::now().timestamp();
        let expired = t
            .sign(&Claims {
                sub: Uuid::now_v7(),
                iat: now - 120,
                exp: now - 60,
                jti: Uuid::now_v7(),
            })
            .unwrap();
        assert_eq!(t.verify(&expired), Err(TokenError::Expired));
        let token = t.issue(Uuid::now_v7()).unwrap();
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 3, 'x');
        assert_eq!(t.verify(&tampered), Err(TokenError::Invalid));
        let other = Tokens::new("another-secret-another-secret-xx", Duration::from_secs(60));
        assert_eq!(
            t.verify(&other.issue(Uuid::now_v7()).unwrap()),
            Err(TokenError::Invalid)
        );
        // alg: none, with the same claims and no signature.
        let payload = token.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(t.verify(&none), Err(TokenError::Invalid));
        assert_eq!(t.verify("garbage"), Err(TokenError::Invalid));
    }
}
