//! BIND key files, exactly as `tsig-keygen` writes them:
//!
//! ```text
//! key "acme-update" {
//!     algorithm hmac-sha256;
//!     secret "2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=";
//! };
//! ```
//!
//! (`tsig-keygen` indents with a tab.) Comments (`//`, `#`, `/* */`) and several keys per file are
//! allowed. Errors carry the file and the line of the offending token and never quote the secret.

use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::error::{Diagnostic, Pos};
use super::settings::{Secret, TsigAlgorithm, TsigKey};
use crate::fsread::ReadError;

/// Standard base64, padding optional (BIND writes it padded).
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Read `path` and return its only key. A file with several keys is an error listing their names:
/// use [`parse_tsig_key_file_named`] (the config's `tsig_key_name:`) to pick one.
pub fn parse_tsig_key_file(path: &Path) -> Result<TsigKey, Diagnostic> {
    parse_tsig_key_file_named(path, None)
}

/// Read `path` and return the key called `name` (or the only key when `name` is `None`).
pub fn parse_tsig_key_file_named(path: &Path, name: Option<&str>) -> Result<TsigKey, Diagnostic> {
    let text = crate::fsread::read_text_capped(path, crate::fsread::SECRET_MAX).map_err(|e| {
        let why = match e {
            ReadError::Io(e) => format!("cannot read the TSIG key file: {e}"),
            other => format!("the TSIG key file {other}"),
        };
        Diagnostic::error(
            path,
            None,
            format!(
                "{why}; create it with `tsig-keygen -a hmac-sha256 NAME > {}` \
                 (the key the DNS server's update-policy grants) and make it readable by renewd only",
                path.display()
            ),
        )
    })?;
    let keys = parse_tsig_keys(path, &text)?;
    select_key(path, None, keys, name)
}

/// Pick the key named `name` from `keys` (or the only one). Errors point at `at` in `file`
/// (the config entry) when given, else at the key file itself.
pub(crate) fn select_key(
    file: &Path,
    at: Option<Pos>,
    keys: Vec<TsigKey>,
    name: Option<&str>,
) -> Result<TsigKey, Diagnostic> {
    let names = || {
        keys.iter()
            .map(|k| format!("`{}`", k.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(want) => {
            let want_n = want.trim_end_matches('.');
            if let Some(k) = keys.iter().find(|k| k.name.eq_ignore_ascii_case(want_n)) {
                return Ok(k.clone());
            }
            Err(Diagnostic::error(
                file,
                at,
                format!(
                    "no key named `{want}` in the TSIG key file; it holds {}",
                    names()
                ),
            ))
        }
        None if keys.len() == 1 => Ok(keys.into_iter().next().expect("one key")),
        None => Err(Diagnostic::error(
            file,
            at,
            format!(
                "the TSIG key file holds {} keys ({}): say which one with `tsig_key_name:`",
                keys.len(),
                names()
            ),
        )),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Semi,
}

fn describe(t: &Tok) -> String {
    match t {
        // Short words only: a long one may be a misplaced secret, which is never echoed.
        Tok::Word(w) if w.chars().count() <= 16 => format!("`{w}`"),
        Tok::Word(_) => "an unexpected word".to_string(),
        Tok::Str(_) => "a quoted string".to_string(),
        Tok::Open => "`{`".to_string(),
        Tok::Close => "`}`".to_string(),
        Tok::Semi => "`;`".to_string(),
    }
}

fn lex(file: &Path, text: &str) -> Result<Vec<(Tok, Pos)>, Diagnostic> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    // Advance one char, keeping line/col.
    macro_rules! bump {
        () => {{
            if chars[i] == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            i += 1;
        }};
    }
    while i < chars.len() {
        let c = chars[i];
        let here = Pos { line, col };
        if c.is_whitespace() {
            bump!();
        } else if c == '#' || (c == '/' && chars.get(i + 1) == Some(&'/')) {
            while i < chars.len() && chars[i] != '\n' {
                bump!();
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            bump!();
            bump!();
            loop {
                if i >= chars.len() {
                    return Err(Diagnostic::error(
                        file,
                        Some(here),
                        "unterminated `/*` comment: add the closing `*/`",
                    ));
                }
                if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    bump!();
                    bump!();
                    break;
                }
                bump!();
            }
        } else if c == '"' {
            bump!();
            let mut s = String::new();
            loop {
                if i >= chars.len() {
                    return Err(Diagnostic::error(
                        file,
                        Some(here),
                        "unterminated quoted string: add the closing `\"`",
                    ));
                }
                match chars[i] {
                    '"' => {
                        bump!();
                        break;
                    }
                    '\\' if i + 1 < chars.len() => {
                        bump!();
                        s.push(chars[i]);
                        bump!();
                    }
                    ch => {
                        s.push(ch);
                        bump!();
                    }
                }
            }
            out.push((Tok::Str(s), here));
        } else if c == '{' || c == '}' || c == ';' {
            out.push((
                match c {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    _ => Tok::Semi,
                },
                here,
            ));
            bump!();
        } else {
            let mut w = String::new();
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '{' | '}' | ';' | '"' | '#')
                && (chars[i] != '/' || !matches!(chars.get(i + 1), Some('/') | Some('*')))
            {
                w.push(chars[i]);
                bump!();
            }
            out.push((Tok::Word(w), here));
        }
    }
    Ok(out)
}

/// Parse every key in a BIND key file's text. At least one key is required.
pub fn parse_tsig_keys(file: &Path, text: &str) -> Result<Vec<TsigKey>, Diagnostic> {
    let toks = lex(file, text)?;
    let mut it = toks.into_iter().peekable();
    let mut keys: Vec<TsigKey> = Vec::new();
    let end_pos = Pos {
        line: text.lines().count().max(1),
        col: text.lines().last().map_or(1, |l| l.chars().count() + 1),
    };
    let err = |pos: Pos, msg: String| Diagnostic::error(file, Some(pos), msg);

    while let Some((tok, pos)) = it.next() {
        match &tok {
            Tok::Word(w) if w == "key" => {}
            other => {
                return Err(err(
                    pos,
                    format!(
                        "expected `key \"NAME\" {{ algorithm ...; secret \"...\"; }};`, found {}; \
                         a TSIG key file holds only key statements, as `tsig-keygen` writes them",
                        describe(other)
                    ),
                ))
            }
        }
        let key_pos = pos;
        let name = match it.next() {
            Some((Tok::Str(s), _)) | Some((Tok::Word(s), _)) if !s.is_empty() => {
                s.trim_end_matches('.').to_string()
            }
            Some((t, p)) => {
                return Err(err(
                    p,
                    format!(
                        "expected the key's name after `key`, found {}",
                        describe(&t)
                    ),
                ))
            }
            None => {
                return Err(err(
                    end_pos,
                    "the file ends after `key`: the key's name and `{ ... };` are missing".into(),
                ))
            }
        };
        match it.next() {
            Some((Tok::Open, _)) => {}
            Some((t, p)) => {
                return Err(err(
                    p,
                    format!(
                        "expected `{{` after `key \"{name}\"`, found {}",
                        describe(&t)
                    ),
                ))
            }
            None => {
                return Err(err(
                    end_pos,
                    format!("the file ends inside key `{name}`: `{{ ... }};` is missing"),
                ))
            }
        }
        let mut algorithm: Option<TsigAlgorithm> = None;
        let mut secret: Option<Secret> = None;
        loop {
            let (tok, pos) = it.next().ok_or_else(|| {
                err(
                    end_pos,
                    format!("the file ends inside key `{name}`: the closing `}};` is missing"),
                )
            })?;
            match tok {
                Tok::Close => break,
                Tok::Word(w) if w.eq_ignore_ascii_case("algorithm") => {
                    let (t, p) = it.next().ok_or_else(|| {
                        err(end_pos, "the file ends after `algorithm`".into())
                    })?;
                    let alg = match t {
                        Tok::Word(a) | Tok::Str(a) => a,
                        other => {
                            return Err(err(
                                p,
                                format!("expected an algorithm name after `algorithm`, found {}", describe(&other)),
                            ))
                        }
                    };
                    algorithm = Some(parse_algorithm(&alg).map_err(|m| err(p, m))?);
                    expect_semi(file, &mut it, end_pos, "algorithm")?;
                }
                Tok::Word(w) if w.eq_ignore_ascii_case("secret") => {
                    let (t, p) = it.next().ok_or_else(|| err(end_pos, "the file ends after `secret`".into()))?;
                    let b64 = match t {
                        Tok::Str(s) => s,
                        // An unquoted secret: accept it, BIND does too. Never echo it.
                        Tok::Word(s) => s,
                        other => {
                            return Err(err(
                                p,
                                format!("expected the quoted base64 secret after `secret`, found {}", describe(&other)),
                            ))
                        }
                    };
                    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
                    if compact.is_empty() {
                        return Err(err(p, format!("the secret of key `{name}` is empty")));
                    }
                    let bytes = STANDARD_ANY_PAD.decode(compact.as_bytes()).map_err(|_| {
                        err(
                            p,
                            format!(
                                "the secret of key `{name}` is not valid base64; copy it again from the \
                                 server's key file or generate a new key with `tsig-keygen -a hmac-sha256 {name}`"
                            ),
                        )
                    })?;
                    secret = Some(Secret::new(bytes));
                    expect_semi(file, &mut it, end_pos, "secret")?;
                }
                Tok::Word(w) => {
                    return Err(err(
                        pos,
                        format!("unknown statement `{w}` in key `{name}`: a key has only `algorithm` and `secret`"),
                    ))
                }
                other => {
                    return Err(err(
                        pos,
                        format!("expected `algorithm`, `secret` or `}}` in key `{name}`, found {}", describe(&other)),
                    ))
                }
            }
        }
        match it.next() {
            Some((Tok::Semi, _)) => {}
            Some((t, p)) => {
                return Err(err(
                    p,
                    format!(
                        "expected `;` after the closing `}}` of key `{name}`, found {}",
                        describe(&t)
                    ),
                ))
            }
            None => {
                return Err(err(
                    end_pos,
                    format!("missing `;` after the closing `}}` of key `{name}`"),
                ))
            }
        }
        let algorithm = algorithm.ok_or_else(|| {
            err(
                key_pos,
                format!("key `{name}` has no `algorithm` (add `algorithm hmac-sha256;`)"),
            )
        })?;
        let secret =
            secret.ok_or_else(|| err(key_pos, format!("key `{name}` has no `secret \"...\";`")))?;
        if keys.iter().any(|k| k.name.eq_ignore_ascii_case(&name)) {
            return Err(err(
                key_pos,
                format!("key `{name}` is defined twice in this file"),
            ));
        }
        keys.push(TsigKey {
            name,
            algorithm,
            secret,
        });
    }
    if keys.is_empty() {
        return Err(Diagnostic::error(
            file,
            None,
            "no key in this file; it should hold what `tsig-keygen -a hmac-sha256 NAME` prints",
        ));
    }
    Ok(keys)
}

fn expect_semi(
    file: &Path,
    it: &mut impl Iterator<Item = (Tok, Pos)>,
    end_pos: Pos,
    after: &str,
) -> Result<(), Diagnostic> {
    match it.next() {
        Some((Tok::Semi, _)) => Ok(()),
        Some((t, p)) => Err(Diagnostic::error(
            file,
            Some(p),
            format!(
                "expected `;` after the `{after}` value, found {}",
                describe(&t)
            ),
        )),
        None => Err(Diagnostic::error(
            file,
            Some(end_pos),
            format!("missing `;` after the `{after}` value"),
        )),
    }
}

fn parse_algorithm(a: &str) -> Result<TsigAlgorithm, String> {
    let norm = a.trim_end_matches('.').to_ascii_lowercase();
    match norm.as_str() {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        "hmac-md5" | "hmac-md5.sig-alg.reg.int" => Err(
            "algorithm hmac-md5 is broken and renewd does not support it: create a new key with \
             `tsig-keygen -a hmac-sha256 NAME`, put it in this file and in the DNS server's \
             configuration (key statement and update-policy), and reload the server"
                .to_string(),
        ),
        _ => Err(format!(
            "unsupported TSIG algorithm `{a}`: use hmac-sha256, hmac-sha384 or hmac-sha512 \
             (create a key with `tsig-keygen -a hmac-sha256 NAME`)"
        )),
    }
}
