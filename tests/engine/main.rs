//! The engine suite: every case in `cases.rs`, `safety.rs`, `limits.rs`, `record_log.rs`, `segment.rs`, `state_layout.rs` and `test_record.rs` against every warehouse
//! fixture in `fixture.rs`, through the public API.

mod cases;
mod fixture;
mod limits;
mod record_log;
mod safety;
mod segment;
mod state_layout;
mod support;
mod test_record;

/// Every case, from the files that hold them.
mod all {
    pub use super::cases::*;
    pub use super::limits::*;
    pub use super::record_log::*;
    pub use super::safety::*;
    pub use super::segment::*;
    pub use super::state_layout::*;
    pub use super::test_record::*;
}

macro_rules! suite {
    ($dialect:ident: $($case:ident),* $(,)?) => {
        mod $dialect {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::all::$case(super::fixture::$dialect().await).await
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($dialect:ident) => {
        suite!($dialect:
            first_sync_sends_everything_then_nothing,
            updates_deletes_and_inserts_are_found,
            send_choice_skips_and_moves_on,
            rejected_records_are_retried_with_current_values,
            retried_record_deleted_from_model_is_not_upserted,
            failures_expire_after_the_retry_window,
            every_record_rejected_is_a_failed_sync,
            unreachable_destination_fails_and_nothing_is_lost,
            throttling_and_server_errors_are_retried_inside_the_run,
            a_stalled_destination_times_out,
            reset_sends_everything_again,
            replay_resends_a_past_sync_with_current_values,
            guards_stop_a_sync_before_anything_is_sent,
            bad_sql_and_bad_mappings_fail_with_a_clear_message,
            bad_rows_are_failed_records_not_a_crash,
            a_killed_worker_loses_nothing,
            cancel_stops_at_a_batch_boundary,
            cancel_stops_batches_already_mapped,
            concurrency_and_rate_limit_are_bounded,
            values_json_cannot_carry_fail_that_record,
            replies_without_results_accept_or_reject_the_whole_batch,
            replay_and_reset_obey_the_guards,
            overlapping_syncs_send_each_record_once,
            records_in_flight_at_a_kill_get_their_deletes,
            a_killed_sync_shows_what_it_delivered,
            secrets_never_echo,
            replies_that_cannot_be_read_are_not_success,
            runaway_templates_and_bad_values_fail_one_record,
            the_largest_settings_neither_abort_nor_hang,
            state_writes_cancelled_at_any_moment_leave_no_transaction_behind,
            every_failed_record_is_in_the_record_log_page_by_page,
            segment_messages_from_every_warehouse,
            the_record_log_view_shows_every_record,
            a_kill_between_acknowledgement_and_merge_loses_and_resends_nothing,
            layout_1_state_is_upgraded_in_place,
            a_test_record_sends_one_row_and_changes_no_sync_state,
            state_prepared_by_runs_starting_together_is_whole,
        );
    };
}

all_cases!(sqlite);
all_cases!(postgres);
all_cases!(mysql);

/// Cases of one warehouse only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_snapshot_holding_a_key_twice_is_mended() {
    state_layout::a_snapshot_holding_a_key_twice_is_mended(fixture::postgres().await).await
}
