//! API keys: `sk_<id>_<secret>`. The keys file holds only `<id> <role> <sha256(secret)>`;
//! a presented key is checked in constant time and never logged.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlgate::{ApiError, ErrorCode, Role};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The header clients authenticate with.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// A key as presented by a client, borrowed from its header. `Debug` shows the id only.
pub struct ApiKey<'a> {
    id: &'a str,
    secret: &'a str,
}

impl<'a> ApiKey<'a> {
    /// Parses `sk_<id>_<secret>`.
    pub fn parse(s: &'a str) -> Option<ApiKey<'a>> {
        let rest = s.trim().strip_prefix("sk_")?;
        let (id, secret) = rest.split_once('_')?;
        let ok = |p: &str, max: usize| {
            !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        (ok(id, 32) && ok(secret, 256)).then_some(ApiKey { id, secret })
    }

    pub fn id(&self) -> &str {
        self.id
    }
}

impl fmt::Debug for ApiKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(sk_{}_***)", self.id)
    }
}

/// Who a request comes from, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The key's id (shared with the keys file's entry: no copy per request).
    pub key_id: Arc<str>,
    pub role: Role,
}

#[derive(Clone)]
struct Entry {
    id: Arc<str>,
    role: Role,
    hash: [u8; 32],
}

/// The keys the gatekeeper accepts.
#[derive(Clone)]
pub struct KeyStore {
    keys: HashMap<String, Entry>,
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl KeyStore {
    /// Reads a keys file: `<id> <role> <sha256-hex>` per line; `#` comments and blank lines.
    pub fn load(path: &Path) -> Result<KeyStore, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read keys file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("keys file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<KeyStore, String> {
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, role, hash] = fields.as_slice() else {
                return Err(format!(
                    "line {}: expected `<id> <role> <sha256-hex>`",
                    n + 1
                ));
            };
            let role = Role::parse(role)
                .ok_or_else(|| format!("line {}: role must be read, write or admin", n + 1))?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hash, &mut digest)
                .map_err(|_| format!("line {}: hash must be 64 hex characters", n + 1))?;
            if ApiKey::parse(&format!("sk_{id}_x")).is_none() {
                return Err(format!(
                    "line {}: id must be 1 to 32 letters or digits",
                    n + 1
                ));
            }
            let entry = Entry {
                id: Arc::from(*id),
                role,
                hash: digest,
            };
            if keys.insert(id.to_string(), entry).is_some() {
                return Err(format!("line {}: duplicate key id {id}", n + 1));
            }
        }
        if keys.is_empty() {
            return Err("no keys: create one with `gatekeeper keygen --role read`".into());
        }
        Ok(KeyStore { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks the `X-API-Key` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Identity, ApiError> {
        let unauthorized = |m: &str| ApiError::new(ErrorCode::Unauthorized, m);
        let header = header.ok_or_else(|| unauthorized("missing X-API-Key header"))?;
        let key = ApiKey::parse(header).ok_or_else(|| unauthorized("invalid API key"))?;
        let presented = sha256(key.secret);
        // Unknown ids still pay for a comparison, so timing does not reveal which ids exist.
        const NONE: [u8; 32] = [0; 32];
        let entry = self.keys.get(key.id);
        let matches = bool::from(presented.ct_eq(entry.map_or(&NONE, |e| &e.hash)));
        match entry {
            Some(e) if matches => Ok(Identity {
                key_id: e.id.clone(),
                role: e.role,
            }),
            _ => Err(unauthorized("invalid API key")),
        }
    }
}

/// A newly generated key: shown once, with its keys-file line.
pub struct NewKey {
    pub key: String,
    pub line: String,
}

/// Generates a key: 8-hex-character id, 256-bit secret.
pub fn generate(role: Role, id: Option<&str>) -> Result<NewKey, String> {
    let mut rng = rand::rng();
    let id = match id {
        Some(id) => id.to_string(),
        None => format!("{:08x}", rng.next_u32()),
    };
    if ApiKey::parse(&format!("sk_{id}_x")).is_none() {
        return Err("--id must be 1 to 32 letters or digits".into());
    }
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    Ok(NewKey {
        key: format!("sk_{id}_{secret}"),
        line: format!("{id} {} {}", role.as_str(), hex::encode(sha256(&secret))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_authenticate_with_their_role() {
        let r = generate(Role::Read, None).unwrap();
        let w = generate(Role::Write, Some("writer1")).unwrap();
        let store = KeyStore::parse(&format!("# comment\n{}\n\n{}\n", r.line, w.line)).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.authenticate(Some(&r.key)).unwrap().role, Role::Read);
        let who = store.authenticate(Some(&w.key)).unwrap();
        assert_eq!((&*who.key_id, who.role), ("writer1", Role::Write));
        assert!(
            !r.line.contains(r.key.rsplit('_').next().unwrap()),
            "file holds no secret"
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        let k = generate(Role::Admin, Some("a1")).unwrap();
        let store = KeyStore::parse(&k.line).unwrap();
        let mut wrong = k.key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        let cases: &[(Option<&str>, &str)] = &[
            (None, "missing"),
            (Some(""), "empty"),
            (Some("Bearer xyz"), "not a key"),
            (Some("sk_a1_"), "no secret"),
            (Some("sk_zz_0123"), "unknown id"),
            (Some(&wrong), "wrong secret"),
            (Some("sk_a1_ab'--"), "injection characters"),
        ];
        for (h, what) in cases {
            let e = store.authenticate(*h).expect_err(what);
            assert_eq!(e.code(), ErrorCode::Unauthorized, "{what}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = generate(Role::Read, Some("dbg")).unwrap();
        let parsed = ApiKey::parse(&k.key).unwrap();
        let secret = k.key.rsplit('_').next().unwrap();
        assert!(!format!("{parsed:?}").contains(secret));
    }

    #[test]
    fn keys_file_errors() {
        let cases = [
            ("", "no keys"),
            ("abc read", "expected"),
            ("abc reader 00", "role"),
            ("abc read 00", "hash"),
        ];
        for (text, want) in cases {
            let e = KeyStore::parse(text).err().unwrap();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let k = generate(Role::Read, Some("dup")).unwrap();
        assert!(KeyStore::parse(&format!("{}\n{}", k.line, k.line))
            .err()
            .unwrap()
            .contains("duplicate"));
    }
}
