//! Message kind numbers carried in the frame header's `kind` byte.

/// Every message kind of protocol version 1. Numbers are stable; new kinds get new
/// numbers and an old peer answers an unknown one with `UNKNOWN_KIND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client → server: first frame of a session (version, token, resume cursors).
    Hello = 1,
    /// Server → client: the handshake succeeded.
    Welcome = 2,
    /// Either way: liveness probe; answered with `Pong` carrying the same request id.
    Ping = 3,
    /// Either way: answer to `Ping`.
    Pong = 4,
    /// Server → client: something failed; the header's status holds the code.
    Error = 5,
    /// Either way: orderly end of the session; the header's status holds the reason.
    Bye = 6,
    /// Client → server: a fresh token for the session, which then ends at the new
    /// token's `exp` instead of the old one's; answered with `Refreshed`.
    Refresh = 7,
    /// Server → client: the session accepted a `Refresh` (its new expiry).
    Refreshed = 8,
    /// Client → server: post a message to a conversation.
    Send = 16,
    /// Server → client: a `Send` was stored under a sequence number.
    Accepted = 17,
    /// Server → client: a message of a conversation to display (other events have
    /// their own kinds).
    Deliver = 18,
    /// Either way: delivered/read up to a sequence number.
    Receipt = 19,
    /// Either way: typing indicator.
    Typing = 20,
    /// Agent → server: a private note (staff only).
    Note = 21,
    /// Server → visitor: its position in the queue; server → the group's agents and
    /// bots: a conversation entered the queue, or left it (position 0).
    Queued = 32,
    /// Server → both sides: a conversation was assigned to an agent.
    Assigned = 33,
    /// Agent → server: hand a conversation to another agent or group; server → agent:
    /// the transfer note, for the agent who gets the conversation.
    Transfer = 34,
    /// Agent → server: pick up a queued conversation.
    Claim = 35,
    /// Either way: close a conversation.
    Close = 36,
    /// Visitor → server: rate a closed conversation.
    Rate = 37,
    /// Agent → server: its presence (server → agents is reserved: not sent yet).
    Presence = 38,
    /// Server → client: whether groups it watches can answer now.
    Availability = 39,
    /// Client → server: tell me the availability of a group (or of my groups) from
    /// now on.
    Watch = 40,
    /// Agent → server: an automatic (FAQ) reply in my conversation was wrong.
    WrongReply = 41,
    /// Client → server: ask for a page of history.
    History = 48,
    /// Server → client: one page of history.
    HistoryPage = 49,
    /// Agent → server: ask for canned-reply suggestions.
    Suggest = 50,
    /// Server → agent: canned-reply suggestions.
    Suggestions = 51,
    /// Admin → server, server → many: broadcast notice.
    Notice = 52,
    /// Admin → server: a page of the tenant's conversations.
    ListConversations = 53,
    /// Server → admin: a page of conversations.
    ConversationList = 54,
    /// Admin → server: end a user's sessions.
    Disconnect = 55,
    /// Server → admin: how many sessions a `Disconnect` ended.
    Disconnected = 56,
}

impl Kind {
    /// The kind for a header byte, if this build knows it.
    pub fn from_u8(v: u8) -> Option<Self> {
        use Kind::*;
        Some(match v {
            1 => Hello,
            2 => Welcome,
            3 => Ping,
            4 => Pong,
            5 => Error,
            6 => Bye,
            7 => Refresh,
            8 => Refreshed,
            16 => Send,
            17 => Accepted,
            18 => Deliver,
            19 => Receipt,
            20 => Typing,
            21 => Note,
            32 => Queued,
            33 => Assigned,
            34 => Transfer,
            35 => Claim,
            36 => Close,
            37 => Rate,
            38 => Presence,
            39 => Availability,
            40 => Watch,
            41 => WrongReply,
            48 => History,
            49 => HistoryPage,
            50 => Suggest,
            51 => Suggestions,
            52 => Notice,
            53 => ListConversations,
            54 => ConversationList,
            55 => Disconnect,
            56 => Disconnected,
            _ => return None,
        })
    }

    /// The header byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// A conversation request: a kind an established client sends that the server
    /// decodes and hands to the router or a conversation (PROTOCOL.md section 6.1).
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Kind::Send
                | Kind::Receipt
                | Kind::Typing
                | Kind::Transfer
                | Kind::Claim
                | Kind::Close
                | Kind::Rate
                | Kind::Presence
                | Kind::History
                | Kind::Notice
                | Kind::Suggest
                | Kind::Note
                | Kind::Watch
                | Kind::WrongReply
                | Kind::ListConversations
                | Kind::Disconnect
        )
    }

    /// Whether a client may send this kind at all (the others only the server sends,
    /// and are answered 105 from a client). `Refresh` is not a request in the sense of
    /// [`Kind::is_request`]: the session answers it itself, like `Ping`.
    pub fn from_client(self) -> bool {
        matches!(
            self,
            Kind::Hello | Kind::Ping | Kind::Pong | Kind::Bye | Kind::Refresh
        ) || self.is_request()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_or_is_unknown() {
        let mut known = 0;
        for v in 0..=u8::MAX {
            if let Some(k) = Kind::from_u8(v) {
                assert_eq!(k.as_u8(), v);
                known += 1;
            }
        }
        assert_eq!(known, 33);
    }
}
