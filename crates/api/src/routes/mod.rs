//! Request handlers, one module per route group. Each handler gathers its input from the
//! request and the [`Backend`](crate::Backend), calls a pure function for the decision, and
//! returns a [`Reply`](crate::reply::Reply).

pub(crate) mod cluster;
pub(crate) mod health;
pub(crate) mod status;
pub(crate) mod switchover;
