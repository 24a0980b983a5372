//! Private keys, CSRs, and facts read from certificates (x509-parser).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, RsaKeySize};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::config::KeySpec;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("could not generate a {0} key: {1}")]
    KeyGen(KeySpec, rcgen::Error),
    #[error("could not build the certificate request: {0}")]
    Csr(rcgen::Error),
    #[error("the CA returned no certificate in its PEM chain")]
    EmptyChain,
    #[error("could not parse certificate {index} of the chain: {reason}")]
    Parse { index: usize, reason: String },
    #[error("could not read the private key: {0}")]
    Key(rcgen::Error),
    #[error("the issued certificate does not match the key generated for this order")]
    KeyMismatch,
    #[error("the issued certificate names {got:?}, but the spec asks for {want:?}")]
    NameMismatch { want: Vec<String>, got: Vec<String> },
    #[error("the chain is broken: certificate {index}'s issuer `{issuer}` is not the subject of the next one (`{next_subject}`)")]
    BrokenChain {
        index: usize,
        issuer: String,
        next_subject: String,
    },
}

/// A private key generated for one order, with its PEM (PKCS#8).
pub struct NewKey {
    pub pair: KeyPair,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewKey(<redacted>)")
    }
}

impl NewKey {
    pub fn generate(spec: KeySpec) -> Result<Self, CertError> {
        let pair = match spec {
            KeySpec::Rsa { bits } => {
                let size = match bits {
                    3072 => RsaKeySize::_3072,
                    4096 => RsaKeySize::_4096,
                    _ => RsaKeySize::_2048,
                };
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
            }
            KeySpec::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeySpec::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        }
        .map_err(|e| CertError::KeyGen(spec, e))?;
        Ok(NewKey { pair })
    }

    /// A key read back from PEM (PKCS#8, as renewd writes `privkey.pem`), with its type.
    pub fn from_pem(pem: &str) -> Result<(Self, KeySpec), String> {
        let pair = KeyPair::from_pem(pem).map_err(|e| e.to_string())?;
        let alg = pair.algorithm();
        let kind = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeySpec::EcdsaP256
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            KeySpec::EcdsaP384
        } else if alg == &rcgen::PKCS_RSA_SHA256 {
            use x509_parser::prelude::FromDer;
            let der = rcgen::PublicKeyData::subject_public_key_info(&pair);
            let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
                .map_err(|e| e.to_string())?;
            match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeySpec::Rsa {
                    bits: rsa.key_size() as u32,
                },
                _ => return Err("an RSA key whose public part cannot be read".to_string()),
            }
        } else {
            return Err("a key type renewd does not issue with".to_string());
        };
        Ok((NewKey { pair }, kind))
    }

    pub fn pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// DER CSR for `domains`; the first is the subject CN, all are SANs.
    pub fn csr_der(&self, domains: &[String]) -> Result<Vec<u8>, CertError> {
        let mut params = CertificateParams::new(domains.to_vec()).map_err(CertError::Csr)?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = domains.first() {
            dn.push(DnType::CommonName, first.clone());
        }
        params.distinguished_name = dn;
        let csr = params
            .serialize_request(&self.pair)
            .map_err(CertError::Csr)?;
        Ok(csr.der().to_vec())
    }
}

/// What renewd needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Upper-case hex, no separators.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS names from the subjectAltName extension, lower-case, sorted.
    pub dns_names: Vec<String>,
    /// The subject public key (BIT STRING contents of the SPKI).
    pub public_key: Vec<u8>,
    /// Authority key identifier and raw serial (DER contents) — ARI's certificate identifier.
    pub authority_key_id: Option<Vec<u8>>,
    pub raw_serial: Vec<u8>,
    pub subject: String,
    pub issuer: String,
}

impl CertFacts {
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// notAfter as RFC 3339 (UTC, seconds).
    pub fn not_after_rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(self.not_after).to_string()
    }

    /// Whether the certificate covers exactly `domains` (order and case do not matter).
    pub fn names_match(&self, domains: &[String]) -> bool {
        let want: BTreeSet<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let got: BTreeSet<String> = self.dns_names.iter().cloned().collect();
        want == got
    }
}

/// Split a PEM bundle into DER certificates, in order.
/// The issuer CN of the last (topmost) certificate of a PEM chain: what `preferred_chain` names.
pub fn top_issuer_cn(chain_pem: &str) -> Option<String> {
    let ders = pem_certificates(chain_pem).ok()?;
    let last = ders.last()?;
    let (_, cert) = x509_parser::parse_x509_certificate(last).ok()?;
    let cn = cert
        .issuer()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let mut out = Vec::new();
    for (index, item) in Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        let item = item.map_err(|e| CertError::Parse {
            index,
            reason: e.to_string(),
        })?;
        if item.label == "CERTIFICATE" {
            out.push(item.contents);
        }
    }
    if out.is_empty() {
        return Err(CertError::EmptyChain);
    }
    Ok(out)
}

/// Read the facts of one DER certificate.
pub fn facts(der: &[u8], index: usize) -> Result<CertFacts, CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse {
        index,
        reason: e.to_string(),
    })?;
    let to_system = |t: &x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH
        }
    };
    let mut dns_names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                dns_names.push(n.to_ascii_lowercase());
            }
        }
    }
    dns_names.sort();
    dns_names.dedup();
    let authority_key_id = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    Ok(CertFacts {
        serial: serial_hex(cert.raw_serial()),
        not_before: to_system(&cert.validity().not_before),
        not_after: to_system(&cert.validity().not_after),
        dns_names,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        authority_key_id,
        raw_serial: cert.raw_serial().to_vec(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
    })
}

/// The public key (raw, as in a certificate's SPKI) of a PEM private key.
pub fn public_key_of_pem(key_pem: &str) -> Result<Vec<u8>, CertError> {
    let pair = KeyPair::from_pem(key_pem).map_err(CertError::Key)?;
    Ok(pair.public_key_raw().to_vec())
}

/// A CA's answer, split and checked.
#[derive(Debug, Clone)]
pub struct IssuedChain {
    pub leaf: CertFacts,
    /// The leaf as PEM.
    pub cert_pem: String,
    /// The intermediates as PEM (possibly empty).
    pub chain_pem: String,
    /// leaf + intermediates.
    pub fullchain_pem: String,
}

/// Check what the CA returned: the leaf carries our key and exactly our names, and each certificate is
/// issued by the next one.
pub fn check_issued(
    fullchain_pem: &str,
    key_public: &[u8],
    domains: &[String],
) -> Result<IssuedChain, CertError> {
    let ders = pem_certificates(fullchain_pem)?;
    let all: Vec<CertFacts> = ders
        .iter()
        .enumerate()
        .map(|(i, d)| facts(d, i))
        .collect::<Result<_, _>>()?;
    let leaf = all[0].clone();
    if leaf.public_key != key_public {
        return Err(CertError::KeyMismatch);
    }
    if !leaf.names_match(domains) {
        let mut want: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        want.sort();
        return Err(CertError::NameMismatch {
            want,
            got: leaf.dns_names.clone(),
        });
    }
    for (i, pair) in all.windows(2).enumerate() {
        if pair[0].issuer != pair[1].subject {
            return Err(CertError::BrokenChain {
                index: i,
                issuer: pair[0].issuer.clone(),
                next_subject: pair[1].subject.clone(),
            });
        }
    }
    let to_pem = |der: &Vec<u8>| pem_encode("CERTIFICATE", der);
    let cert_pem = to_pem(&ders[0]);
    let chain_pem: String = ders[1..].iter().map(to_pem).collect();
    Ok(IssuedChain {
        leaf,
        fullchain_pem: format!("{cert_pem}{chain_pem}"),
        cert_pem,
        chain_pem,
    })
}

/// Standard PEM (64-column base64 lines).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A serial number as `openssl x509 -serial` prints it: upper-case hex of the integer, without the 0x00
/// byte DER puts in front of a serial whose first byte has the high bit set (kept in `raw_serial`, which
/// ARI's certificate identifier needs as encoded).
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_read_back_from_pem_knows_its_type() {
        for spec in [
            KeySpec::EcdsaP256,
            KeySpec::EcdsaP384,
            KeySpec::Rsa { bits: 2048 },
        ] {
            let key = NewKey::generate(spec).unwrap();
            let (back, kind) = NewKey::from_pem(&key.pem()).unwrap();
            assert_eq!(kind, spec);
            assert_eq!(back.pem(), key.pem());
        }
        assert!(NewKey::from_pem("not a key").is_err());
    }

    #[test]
    fn serial_is_shown_as_openssl_shows_it() {
        // DER pads a serial whose first byte has the high bit set; openssl does not show the pad.
        assert_eq!(serial_hex(&[0x00, 0xF2, 0xFE, 0x0A]), "F2FE0A");
        assert_eq!(serial_hex(&[0x7F, 0x00]), "7F00");
        assert_eq!(serial_hex(&[0x00]), "00");
        // Through a real certificate whose serial needs the pad.
        let key = NewKey::generate(KeySpec::EcdsaP256).unwrap();
        let mut params = CertificateParams::new(vec!["a.example.test".to_string()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x9A, 0x01]));
        let pem = params.self_signed(&key.pair).unwrap().pem();
        let der = pem_certificates(&pem).unwrap();
        let f = facts(&der[0], 0).unwrap();
        assert_eq!(
            (f.serial.as_str(), f.raw_serial.as_slice()),
            ("9A01", &[0x00, 0x9A, 0x01][..])
        );
    }

    fn self_signed(key: &NewKey, names: &[&str]) -> String {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.self_signed(&key.pair).unwrap().pem()
    }

    #[test]
    fn generated_keys_match_their_certificates() {
        for spec in [
            KeySpec::EcdsaP256,
            KeySpec::EcdsaP384,
            KeySpec::Rsa { bits: 2048 },
        ] {
            let key = NewKey::generate(spec).unwrap();
            let pem = self_signed(&key, &["a.example.test", "*.a.example.test"]);
            let names = vec!["*.a.example.test".to_string(), "A.example.test".to_string()];
            let issued = check_issued(&pem, key.pair.public_key_raw(), &names).unwrap();
            assert_eq!(
                issued.leaf.dns_names,
                vec!["*.a.example.test", "a.example.test"]
            );
            assert_eq!(
                public_key_of_pem(&key.pem()).unwrap(),
                issued.leaf.public_key
            );
            assert!(issued.chain_pem.is_empty());
        }
    }

    #[test]
    fn wrong_key_and_wrong_names_are_refused() {
        let key = NewKey::generate(KeySpec::EcdsaP256).unwrap();
        let other = NewKey::generate(KeySpec::EcdsaP256).unwrap();
        let pem = self_signed(&key, &["a.example.test"]);
        let names = vec!["a.example.test".to_string()];
        assert!(matches!(
            check_issued(&pem, other.pair.public_key_raw(), &names),
            Err(CertError::KeyMismatch)
        ));
        let more = vec!["a.example.test".to_string(), "b.example.test".to_string()];
        assert!(matches!(
            check_issued(&pem, key.pair.public_key_raw(), &more),
            Err(CertError::NameMismatch { .. })
        ));
    }

    #[test]
    fn csr_carries_all_names() {
        let key = NewKey::generate(KeySpec::EcdsaP256).unwrap();
        let der = key
            .csr_der(&["a.example.test".into(), "*.a.example.test".into()])
            .unwrap();
        use x509_parser::prelude::FromDer;
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        assert!(csr
            .certification_request_info
            .subject
            .to_string()
            .contains("a.example.test"));
    }
}
