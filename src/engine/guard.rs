//! Guards: stop a sync before anything is sent when it would delete too much,
//! or when the model suddenly returns nothing. They apply to every sync
//! alike, whatever started it (a schedule, a person, a reset, a replay): a
//! replay of an old sync while the model is broken would otherwise send a
//! delete for every record it names.

use crate::api::{ChangeKind, Guards};
use crate::warehouse::DiffCounts;

/// `Err` says which guard tripped and how to proceed.
pub fn check(guards: &Guards, send: &[ChangeKind], counts: &DiffCounts) -> Result<(), String> {
    if counts.model_rows == 0 && counts.snapshot_rows > 0 && !guards.allow_empty_model {
        return Err(format!(
            "the model returned no rows although {} records were delivered before; nothing was sent. If the model is \
             really empty now, set spec.guards.allowEmptyModel: true on the Mapping and sync again",
            counts.snapshot_rows
        ));
    }
    if !send.contains(&ChangeKind::Deleted) || counts.deleted == 0 {
        return Ok(());
    }
    if let Some(max) = guards.max_deletes
        && counts.deleted > max
    {
        return Err(format!(
            "this sync would delete {} records, more than spec.guards.maxDeletes ({max}); nothing was sent. Check the \
             model; if the deletes are intended, raise maxDeletes and sync again",
            counts.deleted
        ));
    }
    if let Some(pct) = guards.max_delete_percent
        && counts.snapshot_rows > 0
    {
        let share = counts.deleted as f64 * 100.0 / counts.snapshot_rows as f64;
        if share > pct {
            return Err(format!(
                "this sync would delete {share:.1}% of the {} delivered records, more than spec.guards.maxDeletePercent \
                 ({pct}%); nothing was sent. Check the model; if the deletes are intended, raise maxDeletePercent and \
                 sync again",
                counts.snapshot_rows
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(model_rows: u64, snapshot_rows: u64, deleted: u64) -> DiffCounts {
        DiffCounts { model_rows, snapshot_rows, deleted, ..Default::default() }
    }

    #[test]
    fn empty_model_and_delete_limits_trip() {
        let all = [ChangeKind::Added, ChangeKind::Updated, ChangeKind::Deleted];
        let g = Guards::default();
        assert!(check(&g, &all, &counts(0, 5, 5)).unwrap_err().contains("allowEmptyModel"));
        assert!(check(&g, &all, &counts(0, 0, 0)).is_ok());
        assert!(check(&Guards { allow_empty_model: true, ..g.clone() }, &all, &counts(0, 5, 5)).is_ok());
        let g = Guards { max_deletes: Some(2), ..Default::default() };
        assert!(check(&g, &all, &counts(7, 10, 3)).unwrap_err().contains("maxDeletes"));
        assert!(check(&g, &[ChangeKind::Added], &counts(7, 10, 3)).is_ok());
        let g = Guards { max_delete_percent: Some(20.0), ..Default::default() };
        assert!(check(&g, &all, &counts(7, 10, 3)).unwrap_err().contains("30.0%"));
        assert!(check(&g, &all, &counts(8, 10, 2)).is_ok());
    }
}
