//! Row operations: the four kinds of change wal2json reports (`I`, `U`, `D`, `T`), as decoded
//! changes carry them, requests and policies name them, and subscriptions mask them. Parses
//! nothing (the decoder and the request parser do).

/// The change operation of an I/U/D/T message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Insert, Op::Update, Op::Delete, Op::Truncate];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
        }
    }

    /// Bit used in subscription op masks.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}
