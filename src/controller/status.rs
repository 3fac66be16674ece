//! Status helpers shared by the controllers.

use jiff::Timestamp;


/// Sets a condition, keeping its transition time when its status did not
/// change; returns whether anything changed.
pub fn set_condition(
    list: &mut Vec<crate::api::Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let mut new = crate::api::condition(type_, status, reason, message, generation, now);
    match list.iter_mut().find(|c| c.type_ == type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            let changed = *old != new;
            *old = new;
            changed
        }
        None => {
            list.push(new);
            true
        }
    }
}

