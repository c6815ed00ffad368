//! `AgentName`: an agent's name, valid by construction.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest name accepted, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 64;

/// A valid agent name: 1–64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
///
/// The rule keeps names safe as path segments, file names and shell words, so
/// code holding an `AgentName` never needs to check it again.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentName(String);

/// Why a string is not a valid agent name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("agent name must not be empty")]
    Empty,
    #[error("agent name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("agent name must not start with '.' or '-'")]
    BadStart,
    #[error("agent name may only contain ASCII letters, digits, '.', '_' and '-' (found {0:?})")]
    BadChar(char),
}

impl AgentName {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let Some(first) = raw.chars().next() else {
            return Err(InvalidName::Empty);
        };
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidName::BadChar(bad));
        }
        if raw.len() > MAX_NAME_LEN {
            return Err(InvalidName::TooLong);
        }
        if first == '.' || first == '-' {
            return Err(InvalidName::BadStart);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for AgentName {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for AgentName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgentName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "A9", "x.y_z-1", "_lead", &"n".repeat(64)] {
            assert!(AgentName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(AgentName::parse(""), Err(InvalidName::Empty));
        assert_eq!(AgentName::parse(&"n".repeat(65)), Err(InvalidName::TooLong));
        assert_eq!(AgentName::parse(".hidden"), Err(InvalidName::BadStart));
        assert_eq!(AgentName::parse("-flag"), Err(InvalidName::BadStart));
        assert_eq!(AgentName::parse("a/b"), Err(InvalidName::BadChar('/')));
        assert_eq!(AgentName::parse("a\0"), Err(InvalidName::BadChar('\0')));
        assert_eq!(AgentName::parse("é"), Err(InvalidName::BadChar('é')));
        assert_eq!(AgentName::parse(".."), Err(InvalidName::BadStart));
    }
}
