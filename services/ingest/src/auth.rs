//! Bearer tokens for `/v1/events`, scoped to topics and to stores: the
//! shared token code of [`pushflow_runtime::bearer`] (hashes only,
//! constant-time comparison), with ingest's own rules on top — which topics
//! a token may name ([`crate::config::check_topics`]: catalogue topics,
//! never the billable ones) and the wording of a refused record.

use pushflow_runtime::bearer::EnvFormat;
pub use pushflow_runtime::bearer::{hash_token, AuthError, TokenEntry, Tokens};

/// Parses `PUSHFLOW_INGEST_TOKENS`:
/// `name:plaintext:topic1|topic2[:store1|store2];…` (`*` for every topic
/// or store; without the stores field, every store).
pub fn parse_env(spec: &str) -> Result<Tokens, String> {
    Tokens::parse_env(
        spec,
        EnvFormat::TopicsAndStores,
        crate::config::check_topics,
    )
}

/// Why `token` may not write a record of `store_id`, as ingest answers it
/// (403), or `None` when it may.
pub fn store_refusal(token: &TokenEntry, store_id: &str) -> Option<String> {
    match token.check_store(store_id) {
        Err(AuthError::OtherStore {
            name,
            store,
            stores,
        }) => Some(format!(
            "token {name:?} may not write for store {store:?} (it covers: {stores}); the whole batch was refused"
        )),
        Err(other) => Some(other.to_string()),
        Ok(()) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_override() {
        let t = parse_env(
            "dev:pushflow-dev-token:*; svc:svc-token-1:campaign.created|campaign.launched",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert!(parse_env("dev:short:*").is_err());
        assert!(parse_env("dev:long-enough:nope.topic").is_err());
        assert!(parse_env("dev:long-enough:notification.delivered").is_err());
        assert!(parse_env("justname").is_err());
    }

    #[test]
    fn a_record_of_another_store_is_refused_in_ingest_words() {
        let t = parse_env("shop:shop-token-1:campaign.created:store-a|store-b; all:all-token-1:*")
            .unwrap();
        let shop = t
            .check(Some("Bearer shop-token-1"), "campaign.created")
            .unwrap();
        assert_eq!(store_refusal(shop, "store-a"), None);
        assert_eq!(
            store_refusal(shop, "store-c").unwrap(),
            "token \"shop\" may not write for store \"store-c\" (it covers: store-a, store-b); \
             the whole batch was refused"
        );
        let all = t
            .check(Some("Bearer all-token-1"), "campaign.created")
            .unwrap();
        assert_eq!(store_refusal(all, "store-c"), None);
        assert!(parse_env("x:long-enough:*:").is_err(), "an empty store");
    }
}
