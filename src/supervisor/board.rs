//! What each supervised stage is doing right now, for `/readyz` and the
//! `strikeflow_stage_state` gauge.
//!
//! The supervisor is the only writer; the health listener reads. A state change writes the
//! gauge in the same call, so the metric and `/readyz` never disagree. This is the binary's
//! metrics module: `strikeflow_stage_state` and `strikeflow_stage_restarts_total` are named
//! here only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// A supervised stage's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub(crate) enum StageState {
    /// Started and not failed since.
    Running {
        /// Restarts so far in this process.
        restarts: u64,
    },
    /// Failed and waiting to be restarted.
    Degraded {
        /// The error it failed with.
        reason: String,
        /// Restarts so far in this process.
        restarts: u64,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// Ended: finished, shut down, or given up on (the reason says which).
    Stopped {
        /// Why.
        reason: String,
    },
}

impl StageState {
    /// The state's label on `strikeflow_stage_state`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            StageState::Running { .. } => "running",
            StageState::Degraded { .. } => "degraded",
            StageState::Stopped { .. } => "stopped",
        }
    }
}

/// Every label `strikeflow_stage_state` can carry, so the gauge of the states a stage is
/// not in reads 0 rather than going missing.
const LABELS: [&str; 3] = ["running", "degraded", "stopped"];

/// The states of a process's supervised stages; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub(crate) struct StageBoard {
    stages: Arc<Mutex<BTreeMap<&'static str, StageState>>>,
}

impl StageBoard {
    /// Records `stage`'s new state and sets its gauge.
    pub(crate) fn set(&self, stage: &'static str, state: StageState) {
        for label in LABELS {
            let value = if label == state.label() { 1.0 } else { 0.0 };
            metrics::gauge!("strikeflow_stage_state", "stage" => stage, "state" => label)
                .set(value);
        }
        self.stages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stage, state);
    }

    /// Counts one restart of `stage` (`strikeflow_stage_restarts_total`).
    pub(crate) fn restarted(&self, stage: &'static str) {
        metrics::counter!("strikeflow_stage_restarts_total", "stage" => stage).increment(1);
    }

    /// Every stage's state, by stage name.
    pub(crate) fn snapshot(&self) -> BTreeMap<&'static str, StageState> {
        self.stages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ready when at least one stage is registered and every stage runs, or ended by
    /// finishing its work (a simulator that played its session) rather than by failing.
    pub(crate) fn ready(&self) -> bool {
        let stages = self.snapshot();
        !stages.is_empty()
            && stages.values().all(|state| match state {
                StageState::Running { .. } => true,
                StageState::Degraded { .. } => false,
                StageState::Stopped { reason } => reason == FINISHED,
            })
    }
}

/// The `Stopped` reason of a stage that returned without an error while the process was
/// not shutting down: its work is done (a simulation played to its end).
pub(crate) const FINISHED: &str = "finished";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_every_stage_runs_or_finished() {
        let board = StageBoard::default();
        assert!(!board.ready(), "no stage yet");
        board.set("sink", StageState::Running { restarts: 0 });
        board.set("simulator", StageState::Running { restarts: 0 });
        assert!(board.ready());
        board.set(
            "simulator",
            StageState::Stopped {
                reason: FINISHED.into(),
            },
        );
        assert!(board.ready());
        board.set(
            "sink",
            StageState::Degraded {
                reason: "postgres: connection refused".into(),
                restarts: 1,
                retry_in_ms: 500,
            },
        );
        assert!(!board.ready());
        board.set(
            "sink",
            StageState::Stopped {
                reason: "gave up".into(),
            },
        );
        assert!(!board.ready());
        assert_eq!(board.snapshot()["sink"].label(), "stopped");
    }

    #[test]
    fn states_serialize_with_their_label() {
        let json = serde_json::to_value(StageState::Degraded {
            reason: "r".into(),
            restarts: 2,
            retry_in_ms: 1500,
        })
        .unwrap();
        assert_eq!(json["state"], "degraded");
        assert_eq!(json["reason"], "r");
        assert_eq!(json["restarts"], 2);
    }
}
