//! Background work: the dispatcher (pacing and dialling), the lifecycle event applier and
//! periodic maintenance.

pub mod dispatcher;
pub mod events;
pub mod maintenance;
