//! Alerts: who hears about failed and partially successful syncs, and
//! about the recovery after them, by Slack, e-mail and Kubernetes Events.
//!
//! The operator's SyncAlert controller and `retl run` share all of it:
//! [`ledger`] decides when to alert (once per Sync, throttled by
//! `repeatInterval`, a Recovered notice closing the episode), [`book`]
//! keeps the record of claims and deliveries, [`message`] says the same on
//! every channel, and [`slack`] and [`email`] deliver. Nothing here knows
//! SQL or Kubernetes clients.

pub mod book;
pub mod channels;
pub mod delivery;
pub mod dispatch;
pub mod email;
pub mod ledger;
pub mod message;
pub mod slack;
