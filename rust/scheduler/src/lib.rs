//! The scheduler shared by the serving engine and the simulator: every iteration it decides
//! which requests run and with how many tokens, and keeps the paged KV-cache accounting.
//!
//! Two calls, plain data both ways: [`Scheduler::schedule`] returns a [`Batch`];
//! [`Scheduler::update`] applies what running it produced.

mod batch;
mod block_manager;
mod config;
mod error;
mod evictable_blocks;
mod policy;
mod prefix_hash;
mod request;
mod scheduler;

pub use batch::{Batch, Preempted, ScheduledRequest};
pub use block_manager::BlockManager;
pub use config::{
    DynamicChunking, Order, Policy, SchedulerConfig, SchedulerKnobs, DEFAULT_CHUNK_SIZE,
};
pub use error::{Result, SchedulerError};
pub use request::{
    BlockId, FinishReason, FinishedRequest, NewRequest, RequestId, RequestView, TokenId,
};
pub use scheduler::{BatchOutputs, PrefixCacheStats, Scheduler};
