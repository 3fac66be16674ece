//! Reasons a record is skipped (not sent, on purpose or because the sync
//! stopped): each skipped record counts under one of them.

pub const NOT_SELECTED: &str = "NotSelected";
pub const RETRY_WINDOW_EXPIRED: &str = "RetryWindowExpired";
pub const CANCELED: &str = "Canceled";
pub const NOT_PROCESSED: &str = "NotProcessed";
pub const GUARD_TRIPPED: &str = "GuardTripped";
pub const DELETES_NOT_SUPPORTED: &str = "DeletesNotSupported";

pub fn message(reason: &str) -> &'static str {
    match reason {
        NOT_SELECTED => "the change kind is not in the Mapping's spec.send",
        RETRY_WINDOW_EXPIRED => "the record kept failing for the whole retry window and was dropped",
        CANCELED => "the sync was canceled before the record was sent; the next sync sends it",
        GUARD_TRIPPED => "a guard stopped the sync before anything was sent",
        DELETES_NOT_SUPPORTED => {
            "the destination type does not delete (segment: deletes go through Segment's regulations API, not the tracking API; see docs/destinations.md)"
        }
        _ => "the sync stopped before the record was sent; the next sync sends it",
    }
}
