//! Domain names the way BIND users write them: case-insensitive, trailing dot optional.
//!
//! Inside renewd names are kept lower-case without the trailing dot (`_acme-challenge.host.example`);
//! they become fully qualified hickory [`Name`]s only at the wire.

use hickory_proto::rr::Name;

use super::error::DnsError;

/// Lower-case, without trailing dot; rejects empty labels and over-long names.
pub fn normalize(name: &str) -> Result<String, DnsError> {
    let invalid = |reason: &str| DnsError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = name.trim();
    let n = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if n.is_empty() {
        return Err(invalid("empty name"));
    }
    if n.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    for label in n.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label (two dots in a row)"));
        }
        if label.len() > 63 {
            return Err(invalid("a label is longer than 63 characters"));
        }
        if label
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(invalid("contains whitespace or control characters"));
        }
    }
    Ok(n.to_ascii_lowercase())
}

/// The owner label of dns-01 values.
pub const CHALLENGE_LABEL: &str = "_acme-challenge";
/// The owner label of the standing dns-persist-01 record.
pub const PERSIST_LABEL: &str = "_validation-persist";

/// `*.foo.example` and `foo.example` → `_acme-challenge.foo.example`.
pub fn challenge_name(domain: &str) -> Result<String, DnsError> {
    owner_name(CHALLENGE_LABEL, domain)
}

/// `*.foo.example` and `foo.example` → `LABEL.foo.example`.
pub fn owner_name(label: &str, domain: &str) -> Result<String, DnsError> {
    let d = normalize(domain)?;
    let base = d.strip_prefix("*.").unwrap_or(&d);
    if base.contains('*') {
        return Err(DnsError::InvalidName {
            name: domain.to_string(),
            reason: "a wildcard is only allowed as the whole first label (`*.example.org`)"
                .to_string(),
        });
    }
    normalize(&format!("{label}.{base}"))
}

/// Whether `name` is `zone` or below it (label-wise: `xfoo.example` is not inside `foo.example`).
/// Both normalized.
pub fn is_inside(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len() && name.ends_with(zone) && {
            let cut = name.len() - zone.len();
            name.as_bytes()[cut - 1] == b'.'
        })
}

/// The parent of a normalized name, `None` for a single label (the root is never a zone we update).
pub fn parent(name: &str) -> Option<&str> {
    name.split_once('.').map(|(_, rest)| rest)
}

/// Fully qualified hickory name of a normalized (or user-written) name.
pub fn to_fqdn(name: &str) -> Result<Name, DnsError> {
    let n = normalize(name)?;
    let mut fqdn = Name::from_ascii(&n).map_err(|e| DnsError::InvalidName {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    fqdn.set_fqdn(true);
    Ok(fqdn)
}

/// A hickory name back in renewd's form.
pub fn from_wire(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    match s.strip_suffix('.') {
        Some(t) => t.to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_bind() {
        assert_eq!(
            normalize("Host1.Example.TEST.").unwrap(),
            "host1.example.test"
        );
        assert_eq!(normalize(" a.b ").unwrap(), "a.b");
        assert!(normalize("a..b").is_err());
        assert!(normalize(".").is_err());
        assert!(normalize("").is_err());
        assert!(normalize(&format!("{}.x", "a".repeat(64))).is_err());
        assert!(normalize("a b.c").is_err());
    }

    #[test]
    fn challenge_names() {
        assert_eq!(
            challenge_name("*.Foo.example").unwrap(),
            "_acme-challenge.foo.example"
        );
        assert_eq!(
            challenge_name("foo.example.").unwrap(),
            "_acme-challenge.foo.example"
        );
        assert!(challenge_name("a.*.foo.example").is_err());
    }

    #[test]
    fn inside_is_label_wise() {
        assert!(is_inside("a.foo.example", "foo.example"));
        assert!(is_inside("foo.example", "foo.example"));
        assert!(!is_inside("xfoo.example", "foo.example"));
        assert!(!is_inside("example", "foo.example"));
    }

    #[test]
    fn parents_walk_up() {
        assert_eq!(parent("a.b.c"), Some("b.c"));
        assert_eq!(parent("c"), None);
    }

    #[test]
    fn wire_round_trip_keeps_underscores() {
        let n = to_fqdn("_acme-challenge.Host1.example.test.").unwrap();
        assert!(n.is_fqdn());
        assert_eq!(from_wire(&n), "_acme-challenge.host1.example.test");
    }
}
