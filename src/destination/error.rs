//! Errors of destinations. Messages never carry secret values or URLs with
//! credentials.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DestinationError {
    #[error("Destination {destination}: {message}")]
    Config { destination: String, message: String },

    #[error("Destination {destination} is unavailable: {message}")]
    Unavailable { destination: String, message: String },

    #[error(
        "Secret {name:?} has no key {key:?} (or the Secret does not exist); create it, or in a local run set it in a Secret manifest or the environment"
    )]
    MissingSecret { name: String, key: String },
}
