//! How the simulator answers: per-subscriber rules and random faults,
//! set over `POST /sim/behaviour` or from the command line.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One way of answering a push request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Status to answer (e.g. 404, 410, 429, 500); 201 accepts after the delay.
    #[serde(default = "default_status")]
    pub status: u16,
    /// `Retry-After` seconds sent with the answer (429/503).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Wait this long before answering (a slow push service).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Answer this way for the first `times` requests only (per subscriber),
    /// then accept normally; unset: always.
    #[serde(default)]
    pub times: Option<u32>,
}

fn default_status() -> u16 {
    201
}

/// A rule applied to a random fraction of all requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomRule {
    /// Share of requests (0..=1) answered with `rule`.
    pub fraction: f64,
    /// The answer.
    pub rule: Rule,
}

/// The simulator's whole behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Rules for chosen subscribers (by subscriber id).
    #[serde(default)]
    pub subscribers: HashMap<String, Rule>,
    /// Rules for random fractions of requests, tried in order.
    #[serde(default)]
    pub random: Vec<RandomRule>,
    /// Share of accepted requests whose body is decrypted and checked
    /// (1.0 = all; benchmarks use e.g. 0.01). VAPID is always checked.
    #[serde(default = "default_sample")]
    pub verify_sample: f64,
    /// Keep each accepted request's raw body and Authorization header, for
    /// independent checkers (off in benchmarks to save memory).
    #[serde(default = "default_keep_raw")]
    pub keep_raw: bool,
}

fn default_sample() -> f64 {
    1.0
}
fn default_keep_raw() -> bool {
    true
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            subscribers: HashMap::new(),
            random: Vec::new(),
            verify_sample: default_sample(),
            keep_raw: default_keep_raw(),
        }
    }
}

impl Behaviour {
    /// The rule for this request of `subscriber` (its `hits`-th under a
    /// subscriber rule, counting from 0), with `roll` in 0..1 for the
    /// random rules.
    pub fn pick(&self, subscriber: &str, hits: u32, roll: f64) -> Option<&Rule> {
        if let Some(r) = self.subscribers.get(subscriber) {
            if r.times.is_none_or(|t| hits < t) {
                return Some(r);
            }
            return None;
        }
        let mut acc = 0.0;
        for r in &self.random {
            acc += r.fraction;
            if roll < acc {
                return Some(&r.rule);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_picks() {
        let b: Behaviour = serde_json::from_str(
            r#"{"subscribers": {"a": {"status": 429, "retry_after": 1, "times": 2}},
                "random": [{"fraction": 0.1, "rule": {"status": 500}}], "verify_sample": 0.5}"#,
        )
        .unwrap();
        assert_eq!(b.pick("a", 0, 0.9).unwrap().status, 429);
        assert_eq!(b.pick("a", 1, 0.9).unwrap().retry_after, Some(1));
        assert!(
            b.pick("a", 2, 0.0).is_none(),
            "after `times` the subscriber is accepted"
        );
        assert_eq!(b.pick("b", 0, 0.05).unwrap().status, 500);
        assert!(b.pick("b", 0, 0.5).is_none());
        assert!(serde_json::from_str::<Behaviour>(r#"{"nope": 1}"#).is_err());
    }
}
