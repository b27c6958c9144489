//! Access tokens: HS256 JWTs signed with `SECRET_KEY`, and the revocations of logout.
//!
//! Only HS256 is accepted, so a token claiming `alg: none` or another algorithm is refused. A
//! token is refused before its `nbf`, and when its `iat` lies in the future, each beyond a
//! leeway of [`CLOCK_LEEWAY_SECS`] for clocks of instances that differ a little. A token also
//! carries a fingerprint of the account's password hash as it was at issue, and
//! [`Claims::check_holder`] refuses it once the password changed (as Django's session hash
//! does): every new hash has a fresh salt, so every change counts, on every instance, with no
//! state beyond the account's row. Logout revokes a token's id until it would have expired
//! anyway; the revocations live in the database, shared by every instance
//! ([`super::revocations`]), so this service holds nothing but its keys.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::models::user_account;

/// How far in the future a token's `iat` and `nbf` may lie, in seconds: clocks of the instances
/// that issue and check tokens differ a little. Expiry is checked without leeway.
pub const CLOCK_LEEWAY_SECS: i64 = 30;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not valid before, seconds since the epoch; tokens issued here carry `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's own id, for revocation.
    pub jti: Uuid,
    /// [`password_stamp`] of the account when the token was issued. Absent from tokens made
    /// by [`Tokens::issue`] (and by versions before it existed), which are not checked.
    #[serde(default, rename = "pwd_stamp", skip_serializing_if = "Option::is_none")]
    pub password_stamp: Option<String>,
}

impl Claims {
    /// Checks the token against its account as stored now: a token issued before the
    /// password last changed (by anyone: a superuser's reset counts) is refused.
    pub fn check_holder(&self, holder: &user_account::Model) -> Result<(), TokenError> {
        match &self.password_stamp {
            Some(stamp) if Some(stamp) != password_stamp(holder).as_ref() => {
                Err(TokenError::PasswordChanged)
            }
            _ => Ok(()),
        }
    }
}

/// A fingerprint of the account's password hash (the first 128 bits of a SHA-256 of the PHC
/// string, hex); `None` for an account without a password. It changes whenever the password
/// does, and tells nothing of it: the hash it is made from has a secret, random salt.
pub fn password_stamp(user: &user_account::Model) -> Option<String> {
    let hash = user.hashed_password.as_deref()?;
    let digest = Sha256::new()
        .chain_update(b"app token password stamp\0")
        .chain_update(hash.as_bytes())
        .finalize();
    Some(hex::encode(&digest[..16]))
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
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token claims to be issued in the future; check the clocks of the servers")]
    IssuedInFuture,
    #[error("the password of this account changed after the access token was issued; log in again")]
    PasswordChanged,
}

/// Issues and checks tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime: Duration,
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
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A signed token for `user`, valid for the configured lifetime or until the account's
    /// password changes.
    pub fn issue_for(
        &self,
        user: &user_account::Model,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(&self.claims(user.id, password_stamp(user)))
    }

    /// A signed token for `user_id` without a password stamp, which a password change does not
    /// refuse; for tests and tools. Sign-in uses [`issue_for`](Self::issue_for).
    pub fn issue(&self, user_id: Uuid) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(&self.claims(user_id, None))
    }

    fn claims(&self, user_id: Uuid, password_stamp: Option<String>) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: user_id,
            iat: now,
            nbf: Some(now),
            exp: now + i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2),
            jti: Uuid::now_v7(),
            password_stamp,
        }
    }

    /// Signs any claims (tests make expired ones with it).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The claims of a valid, unexpired HS256 token whose `nbf` has come and whose `iat` is not
    /// in the future (both within [`CLOCK_LEEWAY_SECS`]). Whether it was revoked is the
    /// database's question ([`super::revocations::holder`]), and whether the account still
    /// accepts it [`Claims::check_holder`]'s.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // Checked below, with the leeway that expiry does not get.
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|err| {
                match err.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        let claims = data.claims;
        let latest = chrono::Utc::now().timestamp() + CLOCK_LEEWAY_SECS;
        if claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat > latest {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new("0123456789abcdef0123456789abcdef", Duration::from_secs(60))
    }

    #[test]
    fn issue_verify() {
        let t = tokens();
        let user = Uuid::now_v7();
        let token = t.issue(user).unwrap();
        let claims = t.verify(&token).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(t.verify(&token), Ok(claims), "verifying changes nothing");
    }

    #[test]
    fn refuses_expired_tampered_foreign_and_unsigned_tokens() {
        let t = tokens();
        let now = chrono::Utc::now().timestamp();
        let expired = t
            .sign(&Claims {
                sub: Uuid::now_v7(),
                iat: now - 120,
                nbf: None,
                exp: now - 60,
                jti: Uuid::now_v7(),
                password_stamp: None,
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

    fn claims_at(iat: i64, nbf: Option<i64>) -> Claims {
        Claims {
            sub: Uuid::now_v7(),
            iat,
            nbf,
            exp: iat + 3600,
            jti: Uuid::now_v7(),
            password_stamp: None,
        }
    }

    #[test]
    fn honors_nbf_and_refuses_iat_in_the_future_beyond_the_leeway() {
        let t = tokens();
        let now = chrono::Utc::now().timestamp();
        let verify = |claims: &Claims| t.verify(&t.sign(claims).unwrap()).map(|_| ());
        assert_eq!(verify(&claims_at(now, Some(now))), Ok(()));
        assert_eq!(verify(&claims_at(now, None)), Ok(()), "nbf is optional");
        assert_eq!(
            verify(&claims_at(now, Some(now + CLOCK_LEEWAY_SECS - 5))),
            Ok(()),
            "a clock a little ahead is tolerated"
        );
        assert_eq!(
            verify(&claims_at(now, Some(now + 600))),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            verify(&claims_at(now + CLOCK_LEEWAY_SECS - 5, None)),
            Ok(())
        );
        assert_eq!(
            verify(&claims_at(now + 600, None)),
            Err(TokenError::IssuedInFuture)
        );
    }

    #[test]
    fn a_password_change_outdates_the_tokens_issued_before() {
        let t = tokens();
        let now = chrono::Utc::now();
        let mut user = user_account::Model {
            id: Uuid::now_v7(),
            email: "ann@example.com".into(),
            name: None,
            hashed_password: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdG9uZQ$aGFzaG9uZQ".into()),
            avatar_url: None,
            is_active: true,
            is_superuser: false,
            is_verified: false,
            verified_at: None,
            joined_at: now.date_naive(),
            login_count: 0,
            created_at: now,
            updated_at: now,
        };
        let before = t.verify(&t.issue_for(&user).unwrap()).unwrap();
        let stamp = before.password_stamp.clone().unwrap();
        assert_eq!(stamp.len(), 32);
        assert_eq!(before.check_holder(&user), Ok(()));

        // The same password again gets a new salt, so a new hash: that counts as a change.
        user.hashed_password = Some("$argon2id$v=19$m=19456,t=2,p=1$YW5vdGhlcg$aGFzaG9uZQ".into());
        assert_eq!(before.check_holder(&user), Err(TokenError::PasswordChanged));
        let after = t.verify(&t.issue_for(&user).unwrap()).unwrap();
        assert_eq!(after.check_holder(&user), Ok(()));
        user.hashed_password = None;
        assert_eq!(after.check_holder(&user), Err(TokenError::PasswordChanged));

        // Tokens without a stamp are not checked.
        let unstamped = t.verify(&t.issue(user.id).unwrap()).unwrap();
        assert_eq!(unstamped.check_holder(&user), Ok(()));
    }
}
