//! Webhooks: changes delivered to HTTP endpoints. Owns the request bodies and headers each
//! `format` sends; does not read the journal or decide who receives a change (see `hub/`).

pub mod pgstream;
