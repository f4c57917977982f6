//! `verdict demo`: Verdict at work on processes of its own, printed step by step.
//!
//! - [`transfers`]: the default scenario — money moved between two banks, one transfer
//!   overdrawing and aborted; or the same through a deployment already running.
//! - [`food_order`]: one food order placed atomically across four services with stores of their
//!   own, through a sold-out dish, no courier free, and two processes SIGKILLed mid-protocol.

pub mod food_order;
pub mod transfers;

pub use food_order::FoodOrderOptions;
pub use transfers::Running;
