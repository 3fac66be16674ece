//! Masking secret values in text that comes from elsewhere.
//!
//! A destination's 401 page, a per-record message or a database error may
//! echo a credential retl sent (an `Authorization` header, a password).
//! Every such text passes through a [`Masker`] where it enters retl (the
//! http destination's replies and transport errors, the warehouse's errors),
//! so nothing downstream (Sync status, Events, `retl run` output, logs, the
//! record log, pending failures, the sync-run table) ever sees the value.
//!
//! Each value is masked as it is and in the forms a server is likely to
//! echo it in: base64 (standard and URL-safe, with and without padding),
//! URL-encoded (`%20` and `+` for spaces, upper and lower case hex) and
//! JSON-escaped; for a value with an authentication scheme
//! (`Bearer <token>`), the credentials after the scheme too; for a URL
//! with a password, the password. A value (or part) shorter than
//! [`MIN_LEN`] characters is not masked: it cannot be told from ordinary
//! text, and masking it would garble every message.

use std::borrow::Cow;

use base64::Engine as _;

use crate::warehouse::SecretValues;

/// What a masked value is replaced by.
pub const MASK: &str = "***";
/// Shortest value that is masked.
pub const MIN_LEN: usize = 4;

/// Replaces every known secret value, in every form, by [`MASK`].
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Longest first, so that a value is masked before a part of it.
    needles: Vec<String>,
}

impl Masker {
    /// A masker for every value in `secrets`.
    pub fn new(secrets: &SecretValues) -> Masker {
        Masker::from_values(secrets.values().map(String::as_str))
    }

    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut needles = Vec::new();
        for value in values {
            for part in parts(value) {
                forms(&part, &mut needles);
            }
        }
        needles.retain(|n| n.chars().count() >= MIN_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Masker { needles }
    }

    /// `text` with every secret value replaced.
    pub fn apply<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = Cow::Owned(out.replace(n.as_str(), MASK));
            }
        }
        out
    }

    /// Like [`Masker::apply`], for an owned string.
    pub fn owned(&self, text: String) -> String {
        match self.apply(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(masked) => masked,
        }
    }
}

/// The value, the credentials after an authentication scheme, and a URL's password.
fn parts(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if let Some((_, credentials)) = value.trim().split_once(char::is_whitespace) {
        out.push(credentials.trim().to_string());
    }
    if let Ok(url) = reqwest::Url::parse(value.trim())
        && let Some(password) = url.password()
    {
        out.push(password.to_string());
        if let Ok(decoded) = percent_decode(password) {
            out.push(decoded);
        }
    }
    out
}

fn forms(v: &str, out: &mut Vec<String>) {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    out.push(v.to_string());
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(v));
    }
    let upper = percent_encode(v, false);
    out.push(upper.replace("%20", "+"));
    out.push(percent_encode(v, true));
    out.push(upper);
    if let Ok(json) = serde_json::to_string(v) {
        out.push(json.trim_matches('"').to_string());
        out.push(json.trim_matches('"').replace('/', "\\/"));
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters,
/// with upper- or lower-case hex digits (servers write either).
fn percent_encode(text: &str, lower: bool) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ if lower => format!("%{b:02x}"),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_decode(text: &str) -> Result<String, ()> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    #[test]
    fn every_form_of_a_value_is_masked() {
        let secret = "Bearer s3cr3t/value+x";
        let m = Masker::from_values([secret, "postgres://app:p%40ss-word@db:5432/x", "ab"]);
        for form in [
            secret.to_string(),
            "s3cr3t/value+x".to_string(),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            STANDARD.encode("s3cr3t/value+x"),
            "Bearer%20s3cr3t%2Fvalue%2Bx".to_string(),
            "Bearer+s3cr3t%2fvalue%2bx".to_string(),
            "s3cr3t\\/value+x".to_string(),
            "p@ss-word".to_string(),
            "p%40ss-word".to_string(),
        ] {
            let text = format!("HTTP 401: token {form} refused");
            let masked = m.apply(&text);
            assert!(!masked.contains(&form), "{form:?} in {masked:?}");
            assert!(masked.contains(MASK), "{masked}");
        }
        assert_eq!(m.apply("ab cd"), "ab cd", "too short to tell from text");
        assert!(matches!(m.apply("nothing here"), Cow::Borrowed(_)));
    }
}
