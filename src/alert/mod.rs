//! Alerts about the outcomes of Syncs (the `SyncAlert` kind): how one alert
//! message reaches one channel. [`slack`] posts to a Slack incoming webhook,
//! [`email`] sends through an SMTP server, and [`delivery`] holds what both
//! share: the retry policy and the error a failed delivery ends with, whose
//! reason and message become a condition on the SyncAlert.

pub mod delivery;
pub mod email;
pub mod slack;
