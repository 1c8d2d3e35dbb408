//! What an API key may do.

use serde::{Deserialize, Serialize};

/// One permission of an API key (`[[api.keys]] scopes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Scope {
    /// List conversations and read transcripts.
    #[serde(rename = "conversations:read")]
    ConversationsRead,
    /// Open, assign, transfer and close conversations.
    #[serde(rename = "conversations:write")]
    ConversationsWrite,
    /// Post messages into conversations.
    #[serde(rename = "messages:write")]
    MessagesWrite,
    /// See agents and their presence.
    #[serde(rename = "agents:read")]
    AgentsRead,
    /// Send notices to agents.
    #[serde(rename = "notices:write")]
    NoticesWrite,
    /// Everything above, and ending users' sessions.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// The name in config and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::ConversationsRead => "conversations:read",
            Self::ConversationsWrite => "conversations:write",
            Self::MessagesWrite => "messages:write",
            Self::AgentsRead => "agents:read",
            Self::NoticesWrite => "notices:write",
            Self::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes; `admin` holds every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope (an admin JWT).
    pub const ALL: Scopes = Scopes(u8::MAX);

    /// The set of `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Whether the set grants `scope`.
    pub fn grants(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_grants_everything_and_others_only_themselves() {
        let admin = Scopes::of(&[Scope::Admin]);
        let read = Scopes::of(&[Scope::ConversationsRead]);
        for s in [
            Scope::ConversationsRead,
            Scope::ConversationsWrite,
            Scope::MessagesWrite,
            Scope::AgentsRead,
            Scope::NoticesWrite,
            Scope::Admin,
        ] {
            assert!(admin.grants(s));
            assert!(Scopes::ALL.grants(s));
            assert_eq!(
                read.grants(s),
                s == Scope::ConversationsRead,
                "{}",
                s.name()
            );
        }
        assert!(!Scopes::default().grants(Scope::ConversationsRead));
    }
}
