//! Sealing secrets before they reach etcd: AES-256-GCM (aws-lc-rs) with the cluster's seal key, a random
//! 96-bit nonce per seal, and the etcd key the value is written under as associated data, so a sealed
//! value moved to another key (another certificate's version, say) does not open.
//!
//! Format: `renewd-seal-v1:` + base64(nonce ‖ ciphertext ‖ tag).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine as _;

use crate::config::Secret;

const TAG: &str = "renewd-seal-v1:";

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unseal {
    /// Not a sealed value at all.
    #[error("not a sealed value ({0})")]
    Malformed(&'static str),
    /// The tag did not verify: another seal key, or the value was moved or altered.
    #[error("it does not open with this seal key")]
    WrongKey,
}

fn key(seal_key: &Secret) -> LessSafeKey {
    let unbound = UnboundKey::new(&AES_256_GCM, seal_key.expose())
        .expect("the seal key is 32 bytes (checked when the configuration was loaded)");
    LessSafeKey::new(unbound)
}

/// Seal `plain` for the etcd key `at`.
pub fn seal(seal_key: &Secret, at: &str, plain: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).expect("the system's random source works");
    let mut buf = plain.to_vec();
    key(seal_key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(at.as_bytes()),
            &mut buf,
        )
        .expect("AES-GCM sealing of a small value does not fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    format!(
        "{TAG}{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    )
}

/// Open a value [`seal`] made for the etcd key `at`.
pub fn unseal(seal_key: &Secret, at: &str, sealed: &str) -> Result<Vec<u8>, Unseal> {
    let b64 = sealed
        .strip_prefix(TAG)
        .ok_or(Unseal::Malformed("no renewd-seal-v1 tag"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| Unseal::Malformed("not base64"))?;
    if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(Unseal::Malformed("too short"));
    }
    let (nonce, rest) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unseal::Malformed("nonce"))?;
    let mut buf = rest.to_vec();
    let plain = key(seal_key)
        .open_in_place(nonce, Aad::from(at.as_bytes()), &mut buf)
        .map_err(|_| Unseal::WrongKey)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(b: u8) -> Secret {
        Secret::new(vec![b; 32])
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_at_its_etcd_key() {
        let plain = b"-----BEGIN PRIVATE KEY-----\nMIG...\n";
        let s = seal(&k(1), "/renewd/certs/www/version", plain);
        assert!(s.starts_with(TAG));
        assert!(!s.contains("PRIVATE"));
        assert_eq!(
            unseal(&k(1), "/renewd/certs/www/version", &s).unwrap(),
            plain
        );
        assert_eq!(
            unseal(&k(2), "/renewd/certs/www/version", &s),
            Err(Unseal::WrongKey)
        );
        assert_eq!(
            unseal(&k(1), "/renewd/certs/api/version", &s),
            Err(Unseal::WrongKey)
        );
        assert!(matches!(
            unseal(&k(1), "x", "plain text"),
            Err(Unseal::Malformed(_))
        ));
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let (a, b) = (seal(&k(1), "a", b"x"), seal(&k(1), "a", b"x"));
        assert_ne!(a, b, "a fresh nonce each time");
    }
}
