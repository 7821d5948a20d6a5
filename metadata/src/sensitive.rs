//! Sensitive fields as plain data: how a field holding personal data is protected (encrypted at
//! rest, searchable through a blind index, masked for readers without `UNMASKED_READ`), how a
//! value is masked, and how it is normalised before its blind index is computed. The platform
//! does the cryptography; nothing here does I/O.

use serde::{Deserialize, Serialize};

use crate::FieldType;

/// How a sensitive value is shown to a reader who may not see it unmasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mask {
    /// Shown as stored: the field is protected at rest only.
    None,
    /// `13812345678` → `138****5678`.
    Phone,
    /// `li.lei@example.com` → `l***@example.com`.
    Email,
    /// `李雷` → `李*`.
    Name,
    /// `110101199003071234` → `1101**********1234`.
    IdNumber,
    /// `6222021234` → `****1234`.
    Last4,
    /// `******`, whatever the value.
    Full,
}

impl Mask {
    pub const ALL: [Mask; 7] =
        [Mask::None, Mask::Phone, Mask::Email, Mask::Name, Mask::IdNumber, Mask::Last4, Mask::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            Mask::None => "NONE",
            Mask::Phone => "PHONE",
            Mask::Email => "EMAIL",
            Mask::Name => "NAME",
            Mask::IdNumber => "ID_NUMBER",
            Mask::Last4 => "LAST4",
            Mask::Full => "FULL",
        }
    }

    pub fn parse(s: &str) -> Option<Mask> {
        Mask::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The mask a field of this type gets when its definition names none.
    pub fn default_for(t: FieldType) -> Mask {
        match t {
            FieldType::Phone => Mask::Phone,
            FieldType::Email => Mask::Email,
            _ => Mask::Full,
        }
    }

    /// The masked form of a value. Masks that keep a prefix and a suffix fall back to showing
    /// less of short values, so a mask never reveals a whole value.
    pub fn apply(self, value: &str) -> String {
        let chars: Vec<char> = value.chars().collect();
        match self {
            Mask::None => value.to_string(),
            Mask::Full => "******".to_string(),
            Mask::Phone => keep_ends(&chars, 3, 4),
            Mask::IdNumber => keep_ends(&chars, 4, 4),
            Mask::Last4 => {
                let tail: String = chars.iter().skip(chars.len().saturating_sub(4)).collect();
                if chars.len() <= 4 { "****".to_string() } else { format!("****{tail}") }
            }
            Mask::Email => match value.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    let first: String = local.chars().take(1).collect();
                    format!("{first}***@{domain}")
                }
                _ => "******".to_string(),
            },
            Mask::Name => {
                let mut out = String::with_capacity(value.len());
                let mut first = true;
                for c in chars {
                    if c.is_whitespace() {
                        out.push(c);
                    } else if first {
                        out.push(c);
                        first = false;
                    } else {
                        out.push('*');
                    }
                }
                if out.chars().count() == 1 { format!("{out}*") } else { out }
            }
        }
    }
}

/// Keeps `head` leading and `tail` trailing characters, starring the rest; a value too short to
/// keep both with something hidden between keeps at most its last quarter.
fn keep_ends(chars: &[char], head: usize, tail: usize) -> String {
    let n = chars.len();
    let (head, tail) = if n > head + tail { (head, tail) } else { (0, n / 4) };
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', n - head - tail));
    out.extend(&chars[n - tail..]);
    out
}

/// How a field holding personal data is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sensitivity {
    /// Stored as AES-256-GCM ciphertext.
    #[serde(default)]
    pub encrypted: bool,
    /// Has a keyed blind index for equality search, uniqueness and duplicate matching.
    #[serde(default)]
    pub searchable: bool,
    pub mask: Mask,
}

impl Sensitivity {
    /// Field types whose values can be sensitive: text of every kind but auto numbers (names,
    /// phones, emails, ID and card numbers, addresses, dates of birth kept as text).
    pub fn applies_to(t: FieldType) -> bool {
        t.is_textual() && t != FieldType::AutoNumber
    }
}

/// The country calling code assumed for phone numbers written without one (`+` or `00`).
pub const DEFAULT_COUNTRY_CODE: &str = "86";

/// Which values are compared for equality through a blind index: the same person's phone
/// written `+86 138-1234-5678` or `13812345678` is one value. Fields of the same kind share a
/// domain, so duplicates can be matched across objects (a lead's phone against contacts').
pub fn blind_index_domain(t: FieldType) -> &'static str {
    match t {
        FieldType::Phone => "phone",
        FieldType::Email => "email",
        _ => "text",
    }
}

/// The normalised form of a value that its blind index is computed over: emails trimmed and
/// lower-cased; phones as digits with their country code; other text trimmed, with runs of
/// white space made one space, lower-cased (ID numbers ending in `x` or `X` match).
pub fn normalise(t: FieldType, value: &str) -> String {
    match t {
        FieldType::Phone => normalise_phone(value),
        FieldType::Email => value.trim().to_lowercase(),
        _ => value.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase(),
    }
}

fn normalise_phone(value: &str) -> String {
    let trimmed = value.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if trimmed.starts_with('+') {
        return digits;
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return rest.to_string();
    }
    // A national number: a trunk `0` is dropped and the default country code put in front,
    // unless the digits already start with it and are too long to be national.
    if digits.starts_with(DEFAULT_COUNTRY_CODE) && digits.len() >= DEFAULT_COUNTRY_CODE.len() + 11 {
        return digits;
    }
    let national = digits.strip_prefix('0').unwrap_or(&digits);
    if national.is_empty() {
        return String::new();
    }
    format!("{DEFAULT_COUNTRY_CODE}{national}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_as_the_api_shows() {
        assert_eq!(Mask::Phone.apply("13812345678"), "138****5678");
        assert_eq!(Mask::Email.apply("li@example.com"), "l***@example.com");
        assert_eq!(Mask::Name.apply("李雷"), "李*");
        assert_eq!(Mask::Name.apply("欧阳娜娜"), "欧***");
        assert_eq!(Mask::Name.apply("John Smith"), "J*** *****");
        assert_eq!(Mask::Name.apply("李"), "李*");
        assert_eq!(Mask::IdNumber.apply("110101199003071234"), "1101**********1234");
        assert_eq!(Mask::Last4.apply("6222021234"), "****1234");
        assert_eq!(Mask::Full.apply("anything at all"), "******");
        assert_eq!(Mask::None.apply("plain"), "plain");
    }

    #[test]
    fn masks_never_reveal_short_values_whole() {
        for mask in [Mask::Phone, Mask::IdNumber, Mask::Last4, Mask::Email, Mask::Full] {
            for v in ["", "1", "12", "1234", "1234567", "a@b"] {
                let masked = mask.apply(v);
                assert!(v.is_empty() || masked != v, "{mask:?} reveals {v:?} as {masked:?}");
            }
        }
        assert_eq!(Mask::Phone.apply("1234567"), "******7");
    }

    #[test]
    fn normalises_for_equality() {
        let phone = |s| normalise(FieldType::Phone, s);
        assert_eq!(phone("13812345678"), "8613812345678");
        assert_eq!(phone("+86 138-1234-5678"), "8613812345678");
        assert_eq!(phone("0086 138 1234 5678"), "8613812345678");
        assert_eq!(phone("8613812345678"), "8613812345678");
        assert_eq!(phone("010 6552 9988"), "861065529988");
        assert_eq!(phone("+49 30 1234567"), "49301234567");
        assert_eq!(normalise(FieldType::Email, "  Li.Lei@Example.COM "), "li.lei@example.com");
        assert_eq!(normalise(FieldType::Text, " 11010119900307123x "), "11010119900307123x");
        assert_eq!(normalise(FieldType::Text, "11010119900307123X"), "11010119900307123x");
        assert_eq!(normalise(FieldType::Text, "Wang   Fang"), "wang fang");
    }
}
