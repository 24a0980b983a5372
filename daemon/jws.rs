//! The few JWS-signed ACME requests instant-acme 0.8.5 has no call for: downloading an alternate chain
//! (POST-as-GET with the account key, RFC 8555 §7.4.2) and revoking with the certificate's own key
//! (§7.6, a `jwk` header instead of `kid`). Flattened JSON serialization, signed with aws-lc-rs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;

use crate::config::KeySpec;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A private key that signs JWS: the account key (ES256) or a certificate key (ES256, ES384, RS256).
pub enum JwsKey {
    Ec {
        pair: EcdsaKeyPair,
        alg: &'static str,
        crv: &'static str,
    },
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for JwsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwsKey(<redacted>)")
    }
}

/// Who signs: the account (by its URL) or a key shown in full (revocation by certificate key).
pub enum By<'a> {
    Kid(&'a str),
    Jwk,
}

impl JwsKey {
    /// A PKCS#8 key of type `kind`.
    pub fn from_pkcs8(der: &[u8], kind: KeySpec) -> Result<Self, String> {
        let ec = |alg, crv, a: &'static signature::EcdsaSigningAlgorithm| {
            EcdsaKeyPair::from_pkcs8(a, der)
                .map(|pair| JwsKey::Ec { pair, alg, crv })
                .map_err(|e| format!("not a usable ECDSA key: {e}"))
        };
        match kind {
            KeySpec::EcdsaP256 => ec(
                "ES256",
                "P-256",
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            ),
            KeySpec::EcdsaP384 => ec(
                "ES384",
                "P-384",
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            ),
            KeySpec::Rsa { .. } => RsaKeyPair::from_pkcs8(der)
                .map(JwsKey::Rsa)
                .map_err(|e| format!("not a usable RSA key: {e}")),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            JwsKey::Ec { alg, .. } => alg,
            JwsKey::Rsa(_) => "RS256",
        }
    }

    /// The public key as a JWK (RFC 7518 §6).
    fn jwk(&self) -> Result<serde_json::Value, String> {
        match self {
            JwsKey::Ec { pair, crv, .. } => {
                let point = pair.public_key().as_ref();
                let n = (point.len() - 1) / 2;
                if point.first() != Some(&4) || point.len() != 1 + 2 * n {
                    return Err("an EC public key that is not an uncompressed point".into());
                }
                Ok(serde_json::json!({
                    "crv": crv, "kty": "EC",
                    "x": b64(&point[1..1 + n]), "y": b64(&point[1 + n..]),
                }))
            }
            JwsKey::Rsa(pair) => {
                use aws_lc_rs::encoding::AsDer;
                use x509_parser::prelude::FromDer;
                let spki = pair
                    .public_key()
                    .as_der()
                    .map_err(|_| "the RSA public key cannot be encoded".to_string())?;
                let unreadable = |e: String| format!("the RSA public key cannot be read: {e}");
                let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki.as_ref())
                    .map_err(|e| unreadable(e.to_string()))?;
                let Ok(x509_parser::public_key::PublicKey::RSA(key)) = info.parsed() else {
                    return Err(unreadable("not an RSA key".into()));
                };
                let strip = |b: &[u8]| {
                    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
                    b[i..].to_vec()
                };
                Ok(serde_json::json!({
                    "e": b64(&strip(key.exponent)), "kty": "RSA", "n": b64(&strip(key.modulus)),
                }))
            }
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        match self {
            JwsKey::Ec { pair, .. } => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing failed".to_string()),
            JwsKey::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| "signing failed".to_string())?;
                Ok(sig)
            }
        }
    }

    /// The request body: `payload` None is POST-as-GET (an empty payload).
    pub fn body(
        &self,
        by: By<'_>,
        nonce: &str,
        url: &str,
        payload: Option<&serde_json::Value>,
    ) -> Result<String, String> {
        let mut protected = serde_json::json!({ "alg": self.alg(), "nonce": nonce, "url": url });
        match by {
            By::Kid(kid) => protected["kid"] = kid.into(),
            By::Jwk => protected["jwk"] = self.jwk()?,
        }
        let protected = b64(protected.to_string().as_bytes());
        let payload = payload
            .map(|p| b64(p.to_string().as_bytes()))
            .unwrap_or_default();
        let signature = self.sign(format!("{protected}.{payload}").as_bytes())?;
        Ok(serde_json::json!({
            "protected": protected, "payload": payload, "signature": b64(&signature),
        })
        .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::NewKey;

    /// Each key type signs, and the signature verifies against the JWK it publishes.
    #[test]
    fn every_key_type_signs_what_its_jwk_verifies() {
        for kind in [
            KeySpec::EcdsaP256,
            KeySpec::EcdsaP384,
            KeySpec::Rsa { bits: 2048 },
        ] {
            let key = NewKey::generate(kind).unwrap();
            let der = key.pair.serialize_der();
            let jws = JwsKey::from_pkcs8(&der, kind).unwrap();
            let body: serde_json::Value = serde_json::from_str(
                &jws.body(
                    By::Jwk,
                    "n0nce",
                    "https://ca.example/revoke",
                    Some(&serde_json::json!({"x": 1})),
                )
                .unwrap(),
            )
            .unwrap();
            let dec = |s: &serde_json::Value| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s.as_str().unwrap())
                    .unwrap()
            };
            let header: serde_json::Value =
                serde_json::from_slice(&dec(&body["protected"])).unwrap();
            let jwk = &header["jwk"];
            let msg = format!(
                "{}.{}",
                body["protected"].as_str().unwrap(),
                body["payload"].as_str().unwrap()
            );
            let sig = dec(&body["signature"]);
            let ok = match kind {
                KeySpec::Rsa { .. } => {
                    let (n, e) = (dec(&jwk["n"]), dec(&jwk["e"]));
                    signature::RsaPublicKeyComponents { n: &n, e: &e }
                        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg.as_bytes(), &sig)
                        .is_ok()
                }
                _ => {
                    let mut point = vec![4u8];
                    point.extend(dec(&jwk["x"]));
                    point.extend(dec(&jwk["y"]));
                    let alg: &dyn signature::VerificationAlgorithm = if kind == KeySpec::EcdsaP256 {
                        &signature::ECDSA_P256_SHA256_FIXED
                    } else {
                        &signature::ECDSA_P384_SHA384_FIXED
                    };
                    signature::UnparsedPublicKey::new(alg, &point)
                        .verify(msg.as_bytes(), &sig)
                        .is_ok()
                }
            };
            assert!(ok, "{kind}: {header}");
        }
    }
}
