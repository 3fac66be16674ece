//! Names that make creation idempotent, as CronJob's are: creating the same
//! Sync twice answers AlreadyExists, which means it was done.

use jiff::Timestamp;

/// A scheduled Sync: `<mapping>-<unix minutes of the tick>`.
pub fn scheduled_sync(mapping: &str, tick: Timestamp) -> String {
    fit(&format!("{mapping}-{}", tick.as_second().div_euclid(60)), 253)
}

/// A requested Sync: `<mapping>-<short hash of the token>`.
pub fn requested_sync(mapping: &str, token: &str) -> String {
    fit(&format!("{mapping}-{}", short_hash(token)), 253)
}

/// A replay: `<sync>-replay-<short hash of the token>`.
pub fn replay_sync(sync: &str, token: &str) -> String {
    fit(&format!("{sync}-replay-{}", short_hash(token)), 253)
}

/// The Job of a Sync: the Sync's name, shortened to the 63 characters a
/// label value (`job-name`) allows, keeping it unique with a hash.
pub fn job_name(sync: &str) -> String {
    fit(sync, 63)
}

/// Eight hex digits of a stable hash.
pub fn short_hash(text: &str) -> String {
    format!("{:08x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as u32)
}

fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = short_hash(name);
    let keep = max - hash.len() - 1;
    let prefix: String = name.chars().take(keep).collect();
    format!("{}-{hash}", prefix.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_fit() {
        let tick: Timestamp = "2026-01-01T10:20:00Z".parse().unwrap();
        assert_eq!(scheduled_sync("users", tick), format!("users-{}", tick.as_second() / 60));
        assert_eq!(requested_sync("users", "t1"), requested_sync("users", "t1"));
        assert_ne!(requested_sync("users", "t1"), requested_sync("users", "t2"));
        let long = "a".repeat(80);
        assert_eq!(job_name(&long).len(), 63);
        assert_ne!(job_name(&format!("{long}x")), job_name(&format!("{long}y")));
        assert_eq!(job_name("short"), "short");
    }
}
