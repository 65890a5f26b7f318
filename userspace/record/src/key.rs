//! The host's Ed25519 signing key, exported public keys and key ids.
//!
//! The private key lives in one PKCS#8 PEM file (mode 0600, parent directory
//! 0700), created on first start. The public key is exported as an SPKI PEM
//! block so `verify` works on another machine. A [`KeyId`] is the first 16
//! bytes of SHA-256 over the raw public key; it only *names* a key — the
//! verifier always checks the signature under a key the caller trusts
//! (never a key found in the file; see systemd CVE-2023-31439).

use crate::error::{RecordError, Result};
use crate::util::{hex, sha256, unhex};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

type LineEnding = ed25519_dalek::pkcs8::spki::der::pem::LineEnding;

/// Names a public key: SHA-256 of the 32 raw key bytes, truncated to 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    fn of(key: &VerifyingKey) -> Self {
        let h = sha256(&[b"dbwarden-key-id-v1\0", key.as_bytes()]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        Self(id)
    }

    /// Parses the 32-character lowercase hex form.
    pub fn parse(s: &str) -> Option<Self> {
        unhex(s).map(Self)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A public key the verifier may trust.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl PublicKey {
    /// Parses an exported public key (the SPKI PEM block written by
    /// [`HostKey::public_key_pem`]); surrounding text and blank lines are ignored.
    ///
    /// # Errors
    /// [`RecordError::Key`] when no valid Ed25519 public key block is found.
    pub fn parse(text: &str) -> Result<Self> {
        let begin = text.find("-----BEGIN PUBLIC KEY-----");
        let end_marker = "-----END PUBLIC KEY-----";
        let block = match (begin, text.find(end_marker)) {
            (Some(b), Some(e)) if e > b => &text[b..e + end_marker.len()],
            _ => {
                return Err(RecordError::Key {
                    path: None,
                    reason: "no PUBLIC KEY PEM block found".into(),
                })
            }
        };
        let key = VerifyingKey::from_public_key_pem(block).map_err(|e| RecordError::Key {
            path: None,
            reason: format!("not an Ed25519 public key: {e}"),
        })?;
        Ok(Self::from_verifying_key(key))
    }

    fn from_verifying_key(key: VerifyingKey) -> Self {
        Self {
            id: KeyId::of(&key),
            key,
        }
    }

    /// The key id that segment headers carry.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// SPKI PEM text form.
    pub fn to_pem(&self) -> String {
        // Encoding a valid 32-byte key cannot fail.
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Checks a signature strictly (rejects malleable/small-order forms).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// The host's signing key.
pub struct HostKey {
    key: SigningKey,
    public: PublicKey,
}

impl HostKey {
    /// Loads the key at `path`, or creates it (mode 0600; missing parent
    /// directories are created 0700) when it does not exist yet.
    ///
    /// # Errors
    /// I/O failures; [`RecordError::Key`] when the file is not a PKCS#8 Ed25519
    /// key or is readable by group/others (fail closed, like ssh).
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::from_file_text(path, &text),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(RecordError::io("read host key", path, e)),
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| RecordError::io("create host key directory", parent, e))?;
        }
        let key = Self::generate()?;
        let pem = key
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| RecordError::Key {
                path: Some(path.into()),
                reason: format!("encode: {e}"),
            })?;
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => f,
            // Someone else created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| RecordError::io("read host key", path, e))?;
                return Self::from_file_text(path, &text);
            }
            Err(e) => return Err(RecordError::io("create host key", path, e)),
        };
        f.write_all(pem.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| RecordError::io("write host key", path, e))?;
        Ok(key)
    }

    fn from_file_text(path: &Path, text: &str) -> Result<Self> {
        let meta =
            std::fs::metadata(path).map_err(|e| RecordError::io("stat host key", path, e))?;
        if meta.mode() & 0o077 != 0 {
            return Err(RecordError::Key {
                path: Some(path.into()),
                reason: format!(
                    "permissions {:o} are too open; run `chmod 600 {}`",
                    meta.mode() & 0o777,
                    path.display()
                ),
            });
        }
        let key = SigningKey::from_pkcs8_pem(text).map_err(|e| RecordError::Key {
            path: Some(PathBuf::from(path)),
            reason: format!("not a PKCS#8 Ed25519 private key: {e}"),
        })?;
        Ok(Self::from_signing_key(key))
    }

    /// Generates a fresh key from the OS random source (not persisted).
    ///
    /// # Errors
    /// [`RecordError::Key`] when the OS random source fails.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| RecordError::Key {
            path: None,
            reason: format!("OS random source: {e}"),
        })?;
        let k = Self::from_seed(seed);
        seed.fill(0);
        Ok(k)
    }

    /// Deterministic key from a 32-byte seed (tests and fixtures).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(&seed))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(key.verifying_key());
        Self { key, public }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key id written into every segment header.
    pub fn key_id(&self) -> KeyId {
        self.public.id
    }

    /// The exported text form of the public key (SPKI PEM), for
    /// `dbwarden key export` and [`PublicKey::parse`].
    pub fn public_key_pem(&self) -> String {
        self.public.to_pem()
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostKey({})", self.public.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_load_export_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/sub/host.key");
        let k1 = HostKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let k2 = HostKey::load_or_create(&path).unwrap();
        assert_eq!(k1.key_id(), k2.key_id());
        let pem = k1.public_key_pem();
        let p = PublicKey::parse(&format!("comment\n{pem}\n")).unwrap();
        assert_eq!(p.key_id(), k1.key_id());
        let sig = k1.sign(b"hello");
        assert!(p.verify(b"hello", &sig));
        assert!(!p.verify(b"hellO", &sig));
        assert_eq!(KeyId::parse(&k1.key_id().to_string()), Some(k1.key_id()));
    }

    #[test]
    fn refuses_world_readable_key_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.key");
        HostKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = HostKey::load_or_create(&path).unwrap_err();
        assert!(e.to_string().contains("too open"), "{e}");
        assert!(PublicKey::parse("nothing here").is_err());
        assert!(
            PublicKey::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
    }
}
