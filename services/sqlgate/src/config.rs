//! Reading typed configuration from environment variables, shared by both services.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where configuration comes from: the process environment, or a map in tests.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned().filter(|v| !v.is_empty())
    }
}

/// A configuration problem: the service prints it as one line and exits with code 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Exit code for bad configuration (`EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;

// Defaults both services share. The limits are part of the wire contract: the proxy must accept
// whatever the gatekeeper lets through, so the two start from the same values.

/// Request body limit (413): room for `DEFAULT_MAX_TX_STATEMENTS` statements with their params,
/// while a flood of bodies cannot hold much memory per connection.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// SQL text limit (400): far above any hand-written statement, and it bounds the classifier's
/// work (lexer, tokenizer and parser are linear in it).
pub const DEFAULT_MAX_SQL_BYTES: usize = 64 << 10;
/// Params per statement (400): a bulk `INSERT … VALUES (?, ?), …` of a few hundred rows fits.
pub const DEFAULT_MAX_PARAMS: usize = 1000;
/// Statements per `/transaction` (400): a transaction holds a connection to the manager for its
/// whole length, so it stays short.
pub const DEFAULT_MAX_TX_STATEMENTS: usize = 100;
/// Parameter sets per `/batch` (400): a batch is one transaction on the manager, so it stays
/// bounded; 1,000 small rows fit in the default body limit.
pub const DEFAULT_MAX_BATCH_SETS: usize = 1000;
/// SQL texts whose classification each service remembers (`Classifier`): applications repeat a
/// few hundred parameterised statements, and an entry is at most a few KiB.
pub const CLASSIFIER_CACHE_ENTRIES: usize = 1024;

/// A secret value: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a variable, parsing it, with a default.
pub fn get_or<T: FromStr>(env: &dyn Env, key: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match env.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| ConfigError(format!("{key}={v:?} is invalid: {e}"))),
    }
}

/// Reads a required variable.
pub fn required(env: &dyn Env, key: &str) -> Result<String, ConfigError> {
    env.get(key)
        .ok_or_else(|| ConfigError(format!("{key} is required but not set")))
}

/// Reads a required secret; the error never holds its value.
pub fn required_secret(env: &dyn Env, key: &str) -> Result<Secret, ConfigError> {
    required(env, key).map(Secret)
}

/// Reads a duration given in milliseconds.
pub fn millis(env: &dyn Env, key: &str, default_ms: u64) -> Result<Duration, ConfigError> {
    let ms: u64 = get_or(env, key, default_ms)?;
    if ms == 0 {
        return Err(ConfigError(format!("{key} must be greater than 0")));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn parse_errors_name_the_variable() {
        let env: HashMap<String, String> = [("X_MS".to_string(), "abc".to_string())].into();
        let e = millis(&env, "X_MS", 5).unwrap_err();
        assert!(e.0.contains("X_MS"), "{e}");
        assert_eq!(millis(&env, "Y_MS", 5).unwrap(), Duration::from_millis(5));
        assert!(required(&env, "NOPE").unwrap_err().0.contains("NOPE"));
    }
}
