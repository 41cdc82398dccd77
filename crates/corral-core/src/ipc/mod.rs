//! Framed IPC between the primary and one worker: `frame` (the wire format of one datagram),
//! `reassembly` (datagrams back into messages, on bytes alone), `channel` (a socket with an
//! ordered outgoing queue, reading through `reassembly`) and `proto` (the payloads of the
//! engine's own control messages).

pub mod channel;
pub mod frame;
pub mod proto;
pub mod reassembly;

pub use channel::{Channel, Message, Recv};
pub use frame::{Kind, MAX_MESSAGE_LEN};
