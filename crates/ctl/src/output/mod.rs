//! Rendering: the generic table formats ([`table`]) and the member table of `list`,
//! `topology` and the other commands ([`members`]).

pub mod members;
pub mod table;
