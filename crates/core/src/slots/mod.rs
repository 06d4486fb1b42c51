//! Replication slots: which ones a member must have and what to do to get there.
//!
//! Patroni's rules (`Cluster.get_replication_slots`, `SlotsHandler`) as pure functions of
//! what the agent observed, so they are tested without a server:
//!
//! - [`name`]: slot names derived from member names;
//! - [`permanent`]: the `slots` and `ignore_slots` of the dynamic configuration, read as
//!   Patroni reads them (a bad entry is reported, never fatal);
//! - [`desired`]: the slots one member must have, from the cluster view: member slots
//!   (every other member's on every failover candidate while `member_slots_ttl > 0`), retained
//!   slots of absent members, and permanent physical and logical slots;
//! - [`plan`]: the steps from the slots that exist to the desired ones (drop, create,
//!   advance, copy logical slots from the primary);
//! - [`publish`]: what the leader writes to `/status` (`slots`, `retain_slots`).

pub mod desired;
mod name;
pub mod permanent;
pub mod plan;
pub mod publish;

pub use desired::{
    DesiredSlots, SlotRole, SlotView, Wanted, desired_slots, needs_hot_standby_feedback,
    slot_name_on_primary,
};
pub use name::{MAX_SLOT_NAME_LEN, is_valid_slot_name, slot_name_from_member_name};
pub use permanent::{IgnoreSlot, PermanentSlot, parse_ignore_slots, permanent_slots};
pub use plan::{DropReason, ExistingSlot, PlanInput, SlotPlan, SlotStep, plan};
pub use publish::{RetainedSlots, published_slots};

/// The kind of a slot and, for a logical one, what defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    /// A physical slot.
    Physical,
    /// A logical slot in `database` decoding with `plugin`.
    Logical {
        /// Database the slot lives in.
        database: String,
        /// Output plugin.
        plugin: String,
    },
}

impl SlotKind {
    /// `physical` or `logical`, as `pg_replication_slots.slot_type` says.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Physical => "physical",
            Self::Logical { .. } => "logical",
        }
    }
}
