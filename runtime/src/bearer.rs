//! Bearer tokens scoped to topics and to stores, shared by every HTTP
//! component that takes them: ingest (`/v1/events`, writes) and the
//! dashboard (`/api/v1`, reads). Each component decides what a scope means
//! for it; this module only parses, hashes and compares.
//!
//! Tokens are kept only as SHA-256 hashes; a presented token is hashed and
//! compared against every configured hash in constant time (no early exit),
//! so neither timing nor logs reveal a token.
//!
//! Two ways to configure them, the same fields each way:
//! - `tokens:` in a component's settings (`name`, `sha256`, `topics` where
//!   the component has topics, `stores`), built with
//!   [`TokenEntry::from_hash`];
//! - an environment variable that replaces them, entries separated by `;`
//!   ([`Tokens::parse_env`]): `name:token:topic1|topic2[:store1|store2]`
//!   for ingest, `name:token[:store1|store2]` for components without
//!   topics ([`EnvFormat`]).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The lower-case hex SHA-256 of `token`, as written in `tokens[].sha256`.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One configured token.
#[derive(Clone)]
pub struct TokenEntry {
    name: String,
    hash: [u8; 32],
    /// `None` = every topic.
    topics: Option<Vec<String>>,
    /// `None` = every store.
    stores: Option<Vec<String>>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

impl TokenEntry {
    /// A token from its hex hash; `topics` / `stores` empty or `["*"]`:
    /// every topic / store.
    pub fn from_hash(
        name: &str,
        sha256_hex: &str,
        topics: &[String],
        stores: &[String],
    ) -> Result<TokenEntry, String> {
        let hash = unhex(&sha256_hex.to_ascii_lowercase()).ok_or_else(|| {
            format!("token {name:?}: expected 64 hex digits (`pushflow ingest hash-token <TOKEN>`)")
        })?;
        Ok(TokenEntry {
            name: name.to_string(),
            hash,
            topics: scope(topics),
            stores: scope(stores),
        })
    }

    /// A token from its plain text (hashed at once).
    pub fn from_plain(name: &str, token: &str, topics: &[String], stores: &[String]) -> TokenEntry {
        TokenEntry {
            name: name.to_string(),
            hash: Sha256::digest(token.as_bytes()).into(),
            topics: scope(topics),
            stores: scope(stores),
        }
    }

    /// The token's name (logged; never the token).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the token may use `topic`.
    pub fn allows(&self, topic: &str) -> bool {
        self.topics
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == topic))
    }

    /// Refuses `store_id` unless the token covers it
    /// ([`AuthError::OtherStore`]).
    pub fn check_store(&self, store_id: &str) -> Result<(), AuthError> {
        match &self.stores {
            Some(stores) if !stores.iter().any(|s| s == store_id) => Err(AuthError::OtherStore {
                name: self.name.clone(),
                store: store_id.to_string(),
                stores: stores.join(", "),
            }),
            _ => Ok(()),
        }
    }
}

/// `None` (every one) when the list is empty or holds `*`.
fn scope(list: &[String]) -> Option<Vec<String>> {
    (!list.is_empty() && !list.iter().any(|t| t == "*")).then(|| list.to_vec())
}

/// A token's `stores`: empty (every store), `*`, or non-empty store ids.
pub fn check_stores(stores: &[String]) -> Result<(), String> {
    match stores.iter().find(|s| s.trim().is_empty()) {
        Some(_) => Err("a store id is empty: list store ids, or \"*\" for every store".into()),
        None => Ok(()),
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header (401).
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    /// The token matches no configured token (401).
    #[error("invalid bearer token")]
    Invalid,
    /// The token is valid but not for this topic (403).
    #[error("token {name:?} may not write to topic {topic:?}")]
    Forbidden {
        /// The token's name.
        name: String,
        /// The topic asked for.
        topic: String,
    },
    /// The token is valid but does not cover this store (403).
    #[error("token {name:?} does not cover store {store:?} (it covers: {stores})")]
    OtherStore {
        /// The token's name.
        name: String,
        /// The store asked for.
        store: String,
        /// The stores the token covers.
        stores: String,
    },
}

impl AuthError {
    /// Whether the caller failed to authenticate (401) rather than asked
    /// for something its token does not cover (403).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, AuthError::Missing | AuthError::Invalid)
    }
}

/// The fields of an environment variable's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFormat {
    /// `name:token:topic1|topic2[:store1|store2]` (ingest).
    TopicsAndStores,
    /// `name:token[:store1|store2]` (components without topics).
    Stores,
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

impl Tokens {
    /// From entries.
    pub fn new(entries: Vec<TokenEntry>) -> Tokens {
        Tokens { entries }
    }

    /// Parses an environment variable's value in `format`, entries
    /// separated by `;` (`*` for every topic or store; without the stores
    /// field, every store); `check_topics` judges each entry's topics.
    pub fn parse_env(
        spec: &str,
        format: EnvFormat,
        check_topics: impl Fn(&[String]) -> Result<(), String>,
    ) -> Result<Tokens, String> {
        let shape = match format {
            EnvFormat::TopicsAndStores => "name:token:topic1|topic2[:store1|store2]",
            EnvFormat::Stores => "name:token[:store1|store2]",
        };
        let mut entries = Vec::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let fields = match format {
                EnvFormat::TopicsAndStores => 4,
                EnvFormat::Stores => 3,
            };
            let mut it = part.splitn(fields, ':');
            let (name, token) = (it.next(), it.next());
            let topics = match format {
                EnvFormat::TopicsAndStores => it.next(),
                EnvFormat::Stores => Some(""),
            };
            let (Some(name), Some(token), Some(topics)) = (name, token, topics) else {
                return Err(format!("expected {shape} (entries separated by ';')"));
            };
            let stores: Vec<String> = match it.next() {
                Some(s) => s.split('|').map(|s| s.trim().to_string()).collect(),
                None => Vec::new(),
            };
            check_stores(&stores).map_err(|e| format!("token {name:?}: {e}"))?;
            if name.is_empty() || token.len() < 8 {
                return Err(format!(
                    "token {name:?}: name must be non-empty and the token at least 8 characters"
                ));
            }
            let topics: Vec<String> = match format {
                EnvFormat::TopicsAndStores => {
                    topics.split('|').map(|t| t.trim().to_string()).collect()
                }
                EnvFormat::Stores => Vec::new(),
            };
            check_topics(&topics).map_err(|e| format!("token {name:?}: {e}"))?;
            entries.push(TokenEntry::from_plain(name, token, &topics, &stores));
        }
        Ok(Tokens { entries })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the token of an `Authorization` header value
    /// ([`AuthError::Missing`] / [`AuthError::Invalid`] otherwise); the
    /// caller checks its scopes.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<&TokenEntry, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&TokenEntry> = None;
        for e in &self.entries {
            // Every entry is compared; no early exit.
            if bool::from(e.hash.ct_eq(&presented)) {
                found = Some(e);
            }
        }
        found.ok_or(AuthError::Invalid)
    }

    /// Checks an `Authorization` header value for `topic`; returns the
    /// token (whose stores the caller checks per record).
    pub fn check(
        &self,
        authorization: Option<&str>,
        topic: &str,
    ) -> Result<&TokenEntry, AuthError> {
        let e = self.authenticate(authorization)?;
        if !e.allows(topic) {
            return Err(AuthError::Forbidden {
                name: e.name.clone(),
                topic: topic.to_string(),
            });
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_topic(_: &[String]) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn hashes_and_checks_scopes() {
        assert_eq!(
            hash_token("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let t = Tokens::new(vec![
            TokenEntry::from_hash(
                "billing",
                &hash_token("billing-secret"),
                &["campaign.created".into()],
                &[],
            )
            .unwrap(),
            TokenEntry::from_plain("admin", "admin-secret", &["*".into()], &["*".into()]),
        ]);
        assert_eq!(
            t.check(Some("Bearer billing-secret"), "campaign.created")
                .map(TokenEntry::name),
            Ok("billing")
        );
        assert!(matches!(
            t.check(Some("Bearer billing-secret"), "campaign.launched"),
            Err(AuthError::Forbidden { .. })
        ));
        assert_eq!(
            t.check(Some("Bearer admin-secret"), "campaign.launched")
                .map(TokenEntry::name),
            Ok("admin")
        );
        assert_eq!(
            t.check(Some("Bearer nope"), "campaign.created")
                .unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            t.check(None, "campaign.created").unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            t.check(Some("Basic abc"), "campaign.created").unwrap_err(),
            AuthError::Missing
        );
        assert!(t.authenticate(None).unwrap_err().is_unauthenticated());
        assert_eq!(
            t.authenticate(Some("Bearer billing-secret"))
                .map(TokenEntry::name),
            Ok("billing")
        );
    }

    #[test]
    fn parses_both_env_formats() {
        let t = Tokens::parse_env(
            "dev:pushflow-dev-token:*; svc:svc-token-1:campaign.created|campaign.launched",
            EnvFormat::TopicsAndStores,
            any_topic,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert!(Tokens::parse_env("dev:short:*", EnvFormat::TopicsAndStores, any_topic).is_err());
        assert!(Tokens::parse_env("justname", EnvFormat::TopicsAndStores, any_topic).is_err());
        let refuse = |_: &[String]| Err("no such topic".to_string());
        let e = Tokens::parse_env("dev:long-enough:x", EnvFormat::TopicsAndStores, refuse);
        assert!(e.unwrap_err().contains("no such topic"));
        assert!(TokenEntry::from_hash("x", "abc", &[], &[]).is_err());

        let t = Tokens::parse_env(
            "all:pushflow-dev-token; shop:shop-token-1:store-a|store-b",
            EnvFormat::Stores,
            any_topic,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        let shop = t.authenticate(Some("Bearer shop-token-1")).unwrap();
        assert_eq!(shop.check_store("store-b"), Ok(()));
        let e = shop.check_store("store-c").unwrap_err();
        assert_eq!(
            e.to_string(),
            "token \"shop\" does not cover store \"store-c\" (it covers: store-a, store-b)"
        );
        assert!(!e.is_unauthenticated());
        let all = t.authenticate(Some("Bearer pushflow-dev-token")).unwrap();
        assert_eq!(all.check_store("store-c"), Ok(()));
        let e = Tokens::parse_env("x", EnvFormat::Stores, any_topic).unwrap_err();
        assert!(e.contains("name:token[:store1|store2]"), "{e}");
    }

    #[test]
    fn a_token_covers_its_stores_only() {
        let t = Tokens::parse_env(
            "shop:shop-token-1:campaign.created:store-a|store-b; all:all-token-1:*",
            EnvFormat::TopicsAndStores,
            any_topic,
        )
        .unwrap();
        let shop = t
            .check(Some("Bearer shop-token-1"), "campaign.created")
            .unwrap();
        assert_eq!(shop.check_store("store-a"), Ok(()));
        let e = shop.check_store("store-c").unwrap_err();
        assert!(e.to_string().contains("\"store-c\""), "{e}");
        assert!(e.to_string().contains("store-a, store-b"), "{e}");
        let all = t
            .check(Some("Bearer all-token-1"), "campaign.created")
            .unwrap();
        assert_eq!(all.check_store("store-c"), Ok(()));
        assert!(
            Tokens::parse_env("x:long-enough:*:", EnvFormat::TopicsAndStores, any_topic).is_err(),
            "an empty store"
        );
        assert!(check_stores(&["".into()]).is_err());
        assert!(check_stores(&[]).is_ok());
    }
}
