//! Field encryption: AES-256-GCM envelopes for sensitive values and keyed HMAC blind indexes
//! for searching them, under data keys that a master key wraps.
//!
//! - A value is stored as `k<version>:<base64 of nonce ‖ ciphertext ‖ tag>`: a fresh 96-bit
//!   nonce per value, the data key's version in front. The object, field and record id are
//!   bound in as associated data, so a ciphertext copied to another row or field fails to
//!   decrypt instead of showing someone else's value.
//! - A blind index is HMAC-SHA-256 over the normalised value (see
//!   `tessera_metadata::normalise`) under a key derived per kind of value (phone, email,
//!   text), truncated to its first 64 bits and stored as a signed 64-bit integer: an index
//!   entry no larger than the plain value's would be. Two different values of one field share
//!   an index with probability about n²/2⁶⁵ over n values (under one in a million at six
//!   million values), which could only make a unique field refuse one value as taken; a
//!   lookup of one value meets another's index with probability n/2⁶⁴.
//! - The master key lives in a file or the environment, never in the database. It wraps the
//!   data keys and the blind-index key that the key ring table stores.
//!
//! Keys are `Secret`s: their `Debug` prints nothing, there is no `Display`, and their bytes are
//! wiped when dropped.

pub mod backup;
pub mod keys;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, Generate, Key, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tessera_metadata::{FieldType, blind_index_domain, normalise};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes of a key (AES-256 and the HMAC keys alike).
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// Failures of encryption and decryption. None of them carries a key or a plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the value is not an encrypted envelope")]
    NotEncrypted,
    #[error("the value is encrypted with key version {0}, which the key ring does not hold")]
    UnknownKey(u32),
    #[error("the value fails authentication: it was altered, or belongs to another record or field")]
    Tampered,
    #[error("the master key is malformed: {0}")]
    BadMasterKey(String),
    #[error("the master key does not open the key ring (key version {0}): is it the right key file?")]
    WrongMasterKey(u32),
}

/// A value that must never be printed: `Debug` shows `[redacted]`, there is no `Display`, and
/// the contents are wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The secret itself; keep the borrow short and never log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// 32 random bytes: a data key, the blind-index key, or the master key.
#[derive(Clone, Debug)]
pub struct KeyMaterial(Secret<[u8; KEY_BYTES]>);

impl KeyMaterial {
    pub fn generate() -> KeyMaterial {
        let key = Key::<Aes256Gcm>::generate();
        let mut bytes = [0u8; KEY_BYTES];
        bytes.copy_from_slice(key.as_slice());
        KeyMaterial(Secret::new(bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> KeyMaterial {
        KeyMaterial(Secret::new(bytes))
    }

    fn bytes(&self) -> &[u8; KEY_BYTES] {
        self.0.expose()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.bytes()))
    }
}

/// The key that wraps every other key. Written to its file as base64.
#[derive(Clone, Debug)]
pub struct MasterKey(KeyMaterial);

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey(KeyMaterial::generate())
    }

    /// Reads the base64 text of a key file or environment variable.
    pub fn parse(text: &str) -> Result<MasterKey, CryptoError> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadMasterKey("it is not base64".into()))?;
        let decoded = Secret::new(decoded);
        let bytes: [u8; KEY_BYTES] = decoded.expose().as_slice().try_into().map_err(|_| {
            CryptoError::BadMasterKey(format!("it holds {} bytes, not {KEY_BYTES}", decoded.expose().len()))
        })?;
        Ok(MasterKey(KeyMaterial::from_bytes(bytes)))
    }

    /// The text to store in a key file.
    pub fn encode(&self) -> Secret<String> {
        Secret::new(base64::engine::general_purpose::STANDARD.encode(self.0.bytes()))
    }

    fn wrap_aad(purpose: &str, version: u32) -> Vec<u8> {
        format!("tessera-key-ring:{purpose}:{version}").into_bytes()
    }

    /// Encrypts a key for the key ring, bound to its purpose and version.
    pub fn wrap(&self, purpose: &str, version: u32, key: &KeyMaterial) -> String {
        let aad = Self::wrap_aad(purpose, version);
        seal(&self.0.cipher(), &aad, key.bytes())
    }

    /// Decrypts a key of the key ring; a wrong master key is reported as such.
    pub fn unwrap(&self, purpose: &str, version: u32, wrapped: &str) -> Result<KeyMaterial, CryptoError> {
        let aad = Self::wrap_aad(purpose, version);
        let plain = open(&self.0.cipher(), &aad, wrapped).map_err(|_| CryptoError::WrongMasterKey(version))?;
        let plain = Secret::new(plain);
        let bytes: [u8; KEY_BYTES] =
            plain.expose().as_slice().try_into().map_err(|_| CryptoError::WrongMasterKey(version))?;
        Ok(KeyMaterial::from_bytes(bytes))
    }
}

/// `nonce ‖ ciphertext ‖ tag`, base64.
fn seal(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> String {
    let mut out = String::new();
    seal_into(&mut out, cipher, aad, plaintext);
    out
}

/// Appends `nonce ‖ ciphertext ‖ tag`, base64, to `out`: encrypted in place in one buffer and
/// encoded straight into the output (values are sealed per field of every row written).
fn seal_into(out: &mut String, cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) {
    let mut bytes = Vec::with_capacity(NONCE_BYTES + plaintext.len() + TAG_BYTES);
    // 96 random bits from the thread's CSPRNG (ChaCha, seeded and reseeded from the operating
    // system): as unpredictable as asking the OS each time, without a system call per value.
    let mut nonce = [0u8; NONCE_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(plaintext);
    let nonce = Nonce::<Aes256Gcm>::from(nonce);
    // Encryption with a valid key and nonce cannot fail for messages this small.
    if let Ok(tag) = cipher.encrypt_inout_detached(&nonce, aad, bytes[NONCE_BYTES..].as_mut().into()) {
        bytes.extend_from_slice(tag.as_slice());
        out.reserve(bytes.len().div_ceil(3) * 4);
        STANDARD_NO_PAD.encode_string(&bytes, out);
    }
}

fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &str) -> Result<Vec<u8>, CryptoError> {
    let mut bytes = STANDARD_NO_PAD.decode(sealed).map_err(|_| CryptoError::Tampered)?;
    let plain = open_in_place(cipher, aad, &mut bytes)?;
    bytes.truncate(plain.end);
    bytes.drain(..plain.start);
    Ok(bytes)
}

/// Decrypts `nonce ‖ ciphertext ‖ tag` where it lies; the plaintext's place in `bytes`.
fn open_in_place(cipher: &Aes256Gcm, aad: &[u8], bytes: &mut [u8]) -> Result<std::ops::Range<usize>, CryptoError> {
    if bytes.len() < NONCE_BYTES + TAG_BYTES {
        return Err(CryptoError::Tampered);
    }
    let tag_at = bytes.len() - TAG_BYTES;
    let (nonce, rest) = bytes.split_at_mut(NONCE_BYTES);
    let (text, tag) = rest.split_at_mut(tag_at - NONCE_BYTES);
    let nonce = Nonce::<Aes256Gcm>::try_from(&*nonce).map_err(|_| CryptoError::Tampered)?;
    let tag: aes_gcm::Tag = (&*tag).try_into().map_err(|_| CryptoError::Tampered)?;
    cipher.decrypt_inout_detached(&nonce, aad, text.into(), &tag).map_err(|_| CryptoError::Tampered)?;
    Ok(NONCE_BYTES..tag_at)
}

/// A zeroed buffer of a given length: on the stack up to `N` bytes, on the heap beyond. Wiped
/// when dropped, so a plaintext decrypted in it is not left behind.
enum Scratch<const N: usize> {
    Stack([u8; N], usize),
    Heap(Vec<u8>),
}

impl<const N: usize> Scratch<N> {
    fn new(len: usize) -> Scratch<N> {
        if len <= N { Scratch::Stack([0; N], len) } else { Scratch::Heap(vec![0; len]) }
    }

    fn bytes(&mut self) -> &mut [u8] {
        match self {
            Scratch::Stack(bytes, len) => &mut bytes[..*len],
            Scratch::Heap(bytes) => bytes,
        }
    }
}

impl<const N: usize> Drop for Scratch<N> {
    fn drop(&mut self) {
        self.bytes().zeroize();
    }
}

/// Where a value belongs: bound into its ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    pub object: &'a str,
    pub field: &'a str,
    pub record_id: &'a str,
}

impl Aad<'_> {
    /// Calls `f` with the associated data's bytes, built on the stack when they fit: they are
    /// built for every value sealed or opened.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        const DOMAIN: &[u8] = b"tessera-field-v1";
        let parts = [self.object, self.field, self.record_id];
        let len = DOMAIN.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
        let mut scratch = Scratch::<256>::new(len);
        let buf = scratch.bytes();
        buf[..DOMAIN.len()].copy_from_slice(DOMAIN);
        let mut at = DOMAIN.len();
        for part in parts {
            buf[at..at + 4].copy_from_slice(&(part.len() as u32).to_be_bytes());
            buf[at + 4..at + 4 + part.len()].copy_from_slice(part.as_bytes());
            at += 4 + part.len();
        }
        f(buf)
    }
}

/// The key version of a stored envelope (`k3:…` → 3), or `None` for anything else.
pub fn envelope_version(stored: &str) -> Option<u32> {
    split_envelope(stored).map(|(version, _)| version)
}

/// A stored envelope's key version and base64 body; `None` unless it starts with a version
/// written as `envelope_prefix` writes it (no leading zeros).
fn split_envelope(stored: &str) -> Option<(u32, &str)> {
    let rest = stored.strip_prefix('k')?;
    let (digits, body) = rest.split_once(':')?;
    let canonical = matches!(digits.len(), 1..=9) && (digits == "0" || !digits.starts_with('0'));
    if !canonical || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, body))
}

/// The prefix of envelopes made with a key version (`k3:`).
pub fn envelope_prefix(version: u32) -> String {
    let mut out = String::with_capacity(12);
    push_envelope_prefix(&mut out, version);
    out
}

fn push_envelope_prefix(out: &mut String, version: u32) {
    // Writing to a `String` cannot fail.
    let _ = write!(out, "k{version}:");
}

/// The data keys and the blind-index keys, unwrapped: what encrypts, decrypts and indexes.
pub struct KeyRing {
    active: u32,
    ciphers: BTreeMap<u32, Aes256Gcm>,
    /// The blind-index keys lookups match, the one that indexes new values first. Only during a
    /// rotation is there more than one: rows not yet rewritten still carry the older key's
    /// indexes.
    blind: Vec<BlindKey>,
}

/// One blind-index key: a keyed HMAC per domain of values (`phone`, `email`, `text`), cloned
/// per use.
struct BlindKey(BTreeMap<&'static str, Hmac<Sha256>>);

impl BlindKey {
    fn derive(root: &KeyMaterial) -> BlindKey {
        let mut macs = BTreeMap::new();
        for domain in ["phone", "email", "text"] {
            // Each domain's key is HMAC(root, domain): unrelated keys from one stored secret.
            let derived = hmac_of(root.bytes(), format!("tessera-blind-index:{domain}").as_bytes());
            let mac = <Hmac<Sha256> as Mac>::new_from_slice(&derived).unwrap_or_else(|_| unreachable_mac());
            macs.insert(domain, mac);
        }
        BlindKey(macs)
    }

    fn index(&self, domain: &str, normalised: &str) -> i64 {
        // `derive` makes a key for every domain `blind_index_domain` names.
        let Some(mac) = self.0.get(domain) else { return 0 };
        let mut mac = mac.clone();
        mac.update(normalised.as_bytes());
        blind_index_of_digest(&mac.finalize().into_bytes())
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("versions", &self.ciphers.keys().collect::<Vec<_>>())
            .field("blind_index_keys", &self.blind.len())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A key ring of data keys by version, `active` encrypting new values, and the root key of
    /// the blind indexes.
    pub fn new(data_keys: Vec<(u32, KeyMaterial)>, active: u32, blind_root: &KeyMaterial) -> KeyRing {
        let ciphers = data_keys.into_iter().map(|(v, k)| (v, k.cipher())).collect();
        KeyRing { active, ciphers, blind: vec![BlindKey::derive(blind_root)] }
    }

    /// The same ring, whose lookups also match the indexes of older blind-index keys (those of
    /// a rotation still rewriting rows); new values are still indexed with the ring's own.
    pub fn also_matching(mut self, older_blind_roots: &[KeyMaterial]) -> KeyRing {
        self.blind.extend(older_blind_roots.iter().map(BlindKey::derive));
        self
    }

    /// The version new values are encrypted with.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// Every data key version held.
    pub fn versions(&self) -> Vec<u32> {
        self.ciphers.keys().copied().collect()
    }

    /// Encrypts a value with the active key.
    pub fn encrypt(&self, aad: Aad<'_>, plaintext: &str) -> String {
        match self.ciphers.get(&self.active) {
            Some(cipher) => {
                // The prefix and the base64 text in one allocation, sized up front.
                let sealed = NONCE_BYTES + plaintext.len() + TAG_BYTES;
                let mut out = String::with_capacity(12 + sealed.div_ceil(3) * 4);
                push_envelope_prefix(&mut out, self.active);
                aad.with_bytes(|aad| seal_into(&mut out, cipher, aad, plaintext.as_bytes()));
                out
            }
            // `new` is always given the active key; a ring without it encrypts nothing.
            None => String::new(),
        }
    }

    /// Decrypts a stored envelope.
    pub fn decrypt(&self, aad: Aad<'_>, stored: &str) -> Result<String, CryptoError> {
        let mut value = stored.to_string();
        self.decrypt_in_place(aad, &mut value)?;
        Ok(value)
    }

    /// Decrypts a stored envelope where it lies: on success `value` holds the plaintext, in the
    /// buffer that held the envelope (reads open a value per sensitive field of every record
    /// they return, and this spares each a buffer of its own); on failure it is left as it was.
    pub fn decrypt_in_place(&self, aad: Aad<'_>, value: &mut String) -> Result<(), CryptoError> {
        let (version, body) = split_envelope(value).ok_or(CryptoError::NotEncrypted)?;
        let cipher = self.ciphers.get(&version).ok_or(CryptoError::UnknownKey(version))?;
        // Decoded and decrypted on the stack when it fits (any value of a few hundred bytes).
        let mut scratch = Scratch::<384>::new(base64::decoded_len_estimate(body.len()));
        let buf = scratch.bytes();
        let n = STANDARD_NO_PAD.decode_slice(body, &mut *buf).map_err(|_| CryptoError::Tampered)?;
        let plain = aad.with_bytes(|aad| open_in_place(cipher, aad, &mut buf[..n]))?;
        let plain = std::str::from_utf8(&buf[plain]).map_err(|_| CryptoError::Tampered)?;
        value.clear();
        value.push_str(plain);
        Ok(())
    }

    /// The blind index of a value of a field of type `t`, under the key that indexes new
    /// values: equal for values that normalise equally (`+86 138-1234-5678` and `13812345678`).
    pub fn blind_index(&self, t: FieldType, value: &str) -> i64 {
        let normalised = normalise(t, value);
        self.blind.first().map_or(0, |key| key.index(blind_index_domain(t), &normalised))
    }

    /// Every blind index a stored value equal to `value` may carry: one per key lookups match,
    /// the current key's first. What a lookup, a uniqueness check or an upsert compares with.
    pub fn blind_indexes(&self, t: FieldType, value: &str) -> Vec<i64> {
        let normalised = normalise(t, value);
        let domain = blind_index_domain(t);
        self.blind.iter().map(|key| key.index(domain, &normalised)).collect()
    }
}

/// The first 64 bits of an HMAC digest, big-endian, as the signed integer a column stores.
fn blind_index_of_digest(digest: &[u8]) -> i64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The blind index stored by Tessera before 2026-11-30 (base64 of the digest's first 128
/// bits) as the integer stored since (its first 64 bits). `None` for text that is not one.
pub fn blind_index_from_legacy(text: &str) -> Option<i64> {
    let bytes = STANDARD_NO_PAD.decode(text).ok()?;
    (bytes.len() == 16).then(|| blind_index_of_digest(&bytes))
}

fn hmac_of(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_mac());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// HMAC takes keys of any length, so building one never fails; this only satisfies the types.
fn unreachable_mac() -> Hmac<Sha256> {
    match <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; KEY_BYTES]) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(vec![(1, KeyMaterial::generate()), (2, KeyMaterial::generate())], 2, &KeyMaterial::generate())
    }

    const AAD: Aad<'static> = Aad { object: "contact", field: "phone", record_id: "r1" };

    #[test]
    fn round_trips_with_a_fresh_nonce_each_time() {
        let ring = ring();
        let a = ring.encrypt(AAD, "13812345678");
        let b = ring.encrypt(AAD, "13812345678");
        assert_ne!(a, b, "same plaintext, different ciphertexts");
        assert!(a.starts_with("k2:"));
        assert_eq!(envelope_version(&a), Some(2));
        assert_eq!(ring.decrypt(AAD, &a).unwrap(), "13812345678");
        assert!(!a.contains("13812345678"));
    }

    #[test]
    fn refuses_moved_or_altered_ciphertext() {
        let ring = ring();
        let c = ring.encrypt(AAD, "13812345678");
        let other_record = Aad { record_id: "r2", ..AAD };
        let other_field = Aad { field: "mobile", ..AAD };
        assert_eq!(ring.decrypt(other_record, &c), Err(CryptoError::Tampered));
        assert_eq!(ring.decrypt(other_field, &c), Err(CryptoError::Tampered));
        let mut bytes = c.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert_eq!(ring.decrypt(AAD, &altered), Err(CryptoError::Tampered));
        assert_eq!(ring.decrypt(AAD, "k2:short"), Err(CryptoError::Tampered));
        assert_eq!(ring.decrypt(AAD, "k9:AAAA"), Err(CryptoError::UnknownKey(9)));
        assert_eq!(ring.decrypt(AAD, "13812345678"), Err(CryptoError::NotEncrypted));
        // Only the version as written: `k02:` is not an envelope of key 2.
        let padded = ring.encrypt(AAD, "13812345678").replacen("k2:", "k02:", 1);
        assert_eq!(ring.decrypt(AAD, &padded), Err(CryptoError::NotEncrypted));
        assert_eq!(envelope_version(&padded), None);
        // Associated data too long for the stack buffer is bound in just the same.
        let long_id = "r".repeat(300);
        let far = Aad { record_id: &long_id, ..AAD };
        let sealed = ring.encrypt(far, "13812345678");
        assert_eq!(ring.decrypt(far, &sealed).unwrap(), "13812345678");
        assert_eq!(ring.decrypt(Aad { record_id: &"r".repeat(299), ..AAD }, &sealed), Err(CryptoError::Tampered));
    }

    #[test]
    fn blind_indexes_match_normalised_values_only() {
        let ring = ring();
        let a = ring.blind_index(FieldType::Phone, "+86 138-1234-5678");
        assert_eq!(a, ring.blind_index(FieldType::Phone, "13812345678"));
        assert_ne!(a, ring.blind_index(FieldType::Phone, "13812345679"));
        assert_eq!(
            ring.blind_index(FieldType::Email, " Li@Example.com"),
            ring.blind_index(FieldType::Email, "li@example.com")
        );
        // Indexes stored as base64 text by earlier versions become the same integers.
        let legacy = STANDARD_NO_PAD.encode({
            let mut mac = ring.blind[0].0.get("phone").unwrap().clone();
            mac.update(b"8613812345678");
            mac.finalize().into_bytes()[..16].to_vec()
        });
        assert_eq!(blind_index_from_legacy(&legacy), Some(a));
        assert_eq!(blind_index_from_legacy("not an index"), None);
        assert_eq!(blind_index_from_legacy(&STANDARD_NO_PAD.encode([1u8; 8])), None);
        // Another ring (another org) indexes the same value differently.
        assert_ne!(
            a,
            super::KeyRing::new(vec![], 1, &KeyMaterial::generate()).blind_index(FieldType::Phone, "13812345678")
        );
    }

    #[test]
    fn a_ring_with_an_older_blind_key_indexes_with_the_new_one_and_matches_both() {
        let (old, new) = (KeyMaterial::from_bytes([1; KEY_BYTES]), KeyMaterial::from_bytes([2; KEY_BYTES]));
        let before = KeyRing::new(vec![], 1, &old);
        let during = KeyRing::new(vec![], 2, &new).also_matching(&[KeyMaterial::from_bytes([1; KEY_BYTES])]);
        let (was, now) = (
            before.blind_index(FieldType::Phone, "13812345678"),
            during.blind_index(FieldType::Phone, "+86 138 1234 5678"),
        );
        assert_ne!(was, now, "the new key indexes differently");
        assert_eq!(during.blind_indexes(FieldType::Phone, "13812345678"), [now, was], "the new key's index first");
        assert_eq!(before.blind_indexes(FieldType::Phone, "13812345678"), [was]);
    }

    #[test]
    fn master_key_wraps_and_detects_the_wrong_key() {
        let master = MasterKey::generate();
        let data = KeyMaterial::generate();
        let wrapped = master.wrap("data", 1, &data);
        assert_eq!(master.unwrap("data", 1, &wrapped).unwrap().bytes(), data.bytes());
        assert_eq!(master.unwrap("data", 2, &wrapped).unwrap_err(), CryptoError::WrongMasterKey(2));
        assert_eq!(MasterKey::generate().unwrap("data", 1, &wrapped).unwrap_err(), CryptoError::WrongMasterKey(1));
        let text = master.encode();
        assert_eq!(MasterKey::parse(text.expose()).unwrap().0.bytes(), master.0.bytes());
        assert!(matches!(MasterKey::parse("not base64!"), Err(CryptoError::BadMasterKey(_))));
        assert!(matches!(MasterKey::parse("AAAA"), Err(CryptoError::BadMasterKey(_))));
    }

    #[test]
    fn secrets_print_nothing() {
        let master = MasterKey::generate();
        let printed = format!("{master:?} {:?} {:?}", master.encode(), KeyMaterial::generate());
        assert!(!printed.contains(master.encode().expose().as_str()));
        assert_eq!(printed.matches("[redacted]").count(), 3, "{printed}");
        assert!(!format!("{:?}", ring()).contains("cipher"));
    }
}
