//! Dev-only test kit for retl: real servers that play what a user has.
//! [`sink::Sink`] plays an HTTP destination, [`segment::SegmentServer`]
//! Segment's batch tracking API, [`slack::SlackWebhook`] a
//! Slack incoming webhook and [`smtp::SmtpServer`] an SMTP server (Python's
//! aiosmtpd). Tests, benchmarks and end-to-end runs use them.

pub mod seed;
pub mod segment;
pub mod sink;
pub mod slack;
pub mod smtp;
