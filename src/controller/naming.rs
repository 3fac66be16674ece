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

/// The most a label value may hold.
pub const LABEL_VALUE_MAX: usize = 63;

/// A label value naming `name` (a Mapping, Model or Destination): the name
/// itself when it is a valid label value (at most 63 characters), otherwise
/// a prefix of it and a hash of the whole name, so that it stays unique.
/// Always a valid label value: at most 63 characters of `[A-Za-z0-9._-]`
/// that start and end with a letter or digit. Selecting by label uses this
/// same value (`retl.dev/mapping=<label_value(name)>`).
pub fn label_value(name: &str) -> String {
    if is_label_value(name) {
        return name.to_string();
    }
    let hash = short_hash(name);
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let cleaned: String = name.chars().map(|c| if allowed(c) { c } else { '-' }).collect();
    let prefix = cleaned.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let prefix: String = prefix.chars().take(LABEL_VALUE_MAX - hash.len() - 1).collect();
    let prefix = prefix.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.is_empty() { hash } else { format!("{prefix}-{hash}") }
}

/// Whether Kubernetes accepts `value` as a label value: empty, or at most
/// 63 characters of `[A-Za-z0-9._-]` starting and ending with a letter or digit.
pub fn is_label_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.is_empty()
        || (value.len() <= LABEL_VALUE_MAX
            && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && edge(value.chars().next())
            && edge(value.chars().last()))
}

/// Eight hex digits of a stable hash.
pub fn short_hash(text: &str) -> String {
    format!("{:08x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as u32)
}

/// `name`, shortened with a hash to at most `max` characters.
pub fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = short_hash(name);
    let keep = max - hash.len() - 1;
    let prefix: String = name.chars().take(keep).collect();
    // A name's parts end with a letter or digit: `a.-hash` would not be a name.
    format!("{}-{hash}", prefix.trim_end_matches(['-', '.']))
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

    /// A DNS subdomain (what a Kubernetes object name is): at most 253
    /// characters, dot-separated parts of `[a-z0-9-]` that start and end
    /// with a letter or digit.
    fn is_subdomain(name: &str, max: usize) -> bool {
        name.len() <= max
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    }

    /// Names of 253 characters, the longest Kubernetes allows, some with
    /// dots where a cut could fall.
    fn longest_names() -> Vec<String> {
        let mut names = vec!["m".repeat(253), format!("{}-{}", "a".repeat(100), "b".repeat(152))];
        for cut in [40, 53, 54, 55, 62, 63, 200, 243, 244, 252] {
            let mut n: Vec<char> = "x".repeat(253).chars().collect();
            n[cut - 1] = '.';
            names.push(n.into_iter().collect());
            let mut n: Vec<char> = "y".repeat(253).chars().collect();
            n[cut - 1] = '-';
            n[cut] = '-';
            names.push(n.into_iter().collect());
        }
        names.iter().filter(|n| is_subdomain(n, 253)).cloned().collect()
    }

    #[test]
    fn names_from_the_longest_mapping_name_fit() {
        let tick: Timestamp = "2026-01-01T10:20:00Z".parse().unwrap();
        for mapping in longest_names() {
            for sync in [scheduled_sync(&mapping, tick), requested_sync(&mapping, "t1"), replay_sync(&mapping, "t1")] {
                assert!(is_subdomain(&sync, 253), "Sync name {sync:?} of {mapping:?}");
                let job = job_name(&sync);
                assert!(is_subdomain(&job, 63), "Job name {job:?}");
                assert!(is_label_value(&job), "job-name label {job:?}");
                assert!(is_label_value(&label_value(&sync)));
            }
            let replay = replay_sync(&requested_sync(&mapping, "t1"), "t2");
            assert!(is_subdomain(&replay, 253), "{replay:?}");
            assert!(is_subdomain(&job_name(&replay), 63));
            assert_ne!(requested_sync(&mapping, "t1"), requested_sync(&mapping, "t2"));
            assert_ne!(job_name(&requested_sync(&mapping, "t1")), job_name(&requested_sync(&mapping, "t2")));
        }
    }

    #[test]
    fn label_values_are_valid_unique_and_stable() {
        assert_eq!(label_value("users-api"), "users-api");
        let exactly = "a".repeat(63);
        assert_eq!(label_value(&exactly), exactly);
        let names = longest_names();
        let values: Vec<String> = names.iter().map(|n| label_value(n)).collect();
        for (n, v) in names.iter().zip(&values) {
            assert!(is_label_value(v), "{v:?} of {n:?}");
            assert!(v.len() <= 63 && v.len() > 9, "{v:?}");
            assert!(v.ends_with(&short_hash(n)), "{v:?}");
            assert_eq!(label_value(n), *v, "stable");
            assert_eq!(label_value(v), *v, "a label value is its own label value");
        }
        let mut unique = values.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), values.len(), "{values:?}");
        // Two long names that share the first 63 characters differ.
        let a = format!("{}a", "p".repeat(100));
        let b = format!("{}b", "p".repeat(100));
        assert_ne!(label_value(&a), label_value(&b));
        assert!(label_value(&a).starts_with(&"p".repeat(54)));
        // Whatever a reference holds, the value is valid.
        for odd in ["-leading-and-trailing-", "Has Spaces/and:colons", "..", "é".repeat(40).as_str(), &"x.".repeat(40)] {
            assert!(is_label_value(&label_value(odd)), "{odd:?} -> {:?}", label_value(odd));
        }
        assert!(is_label_value(""));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value("a."));
        assert!(!is_label_value("a b"));
    }
}
