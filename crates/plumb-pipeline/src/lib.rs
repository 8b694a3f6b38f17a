//! The pipeline: reads the queue in order, turns hits into sessions and flags
//! ([`sessionizer`]), and commits rows together with the queue position ([`worker`]).

pub mod handover;
pub mod inbox;
pub mod sessionizer;
pub mod worker;

pub use handover::Handover;
pub use inbox::ImportInbox;
pub use sessionizer::Sessionizer;
pub use worker::{Pipeline, PipelineConfig, PipelineError, PipelineHandle};
