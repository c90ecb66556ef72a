//! The building blocks the executor is made of, each usable on its own: the adaptive
//! concurrency limit ([`admission`]), the sharded result cache with single flight
//! ([`cache`]) and the three-level priority queues ([`queue`]).
//!
//! A host that runs graphs needs none of them by name: [`Executor`](crate::Executor) and
//! [`config`](crate::config) set them up, and [`report`](crate::report) reads them. They
//! are public for hosts that want one of them alone (a bounded cache with single flight, an
//! AIMD limiter), and for the benches that compare them with their peers.
pub mod admission;
pub mod cache;
pub mod queue;
