//! CPU per stage over one step, from `/proc`: the stages the bench started (by pid), the
//! bench's own threads by name (the feed's thread, librdkafka's, the runtime's workers that
//! run the clients), the broker and PostgreSQL found by name, and the machine as a whole.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::Result;

use super::feed::THREAD;
use crate::bench::procfs;

/// The processes measured, found once the stages run.
pub(super) struct Pids {
    pub(super) processor: u32,
    pub(super) sink: u32,
    pub(super) push: u32,
    /// The scratch database's name: its backends are told apart from the server's others
    /// by their command line (`postgres: user db host idle`).
    pub(super) database: String,
}

/// CPU ticks of everything measured, at one instant.
pub(super) struct Snapshot {
    at: Instant,
    stages: [u64; 3],
    bench: BTreeMap<String, u64>,
    kafka: HashMap<u32, u64>,
    postgres: HashMap<u32, u64>,
    postgres_bench: Vec<u32>,
    machine_busy: u64,
}

/// Cores used per stage over a window (CPU seconds per second).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cores {
    /// The feed thread: simulator, validation, Avro encoding, enqueueing.
    pub(super) feed: f64,
    /// The bench's librdkafka threads (the feed's producer, mostly).
    pub(super) producer: f64,
    /// The rest of the bench process: the WebSocket clients and the watchers.
    pub(super) clients: f64,
    pub(super) processor: f64,
    pub(super) sink: f64,
    pub(super) push: f64,
    /// Every process of the broker (a JVM running `kafka.Kafka`).
    pub(super) kafka: f64,
    /// Every PostgreSQL process (the server is shared with other work).
    pub(super) postgres: f64,
    /// Of which the backends connected to the scratch database (the sink's, the watcher's).
    pub(super) postgres_bench: f64,
    /// The whole machine (of 2 cores here).
    pub(super) machine: f64,
}

impl Cores {
    /// What the machine spent outside everything listed.
    pub(super) fn other(&self) -> f64 {
        self.machine
            - (self.feed
                + self.producer
                + self.clients
                + self.processor
                + self.sink
                + self.push
                + self.kafka
                + self.postgres)
    }
}

impl Snapshot {
    pub(super) fn take(pids: &Pids) -> Result<Self> {
        let kafka = procfs::pids_where(|comm, cmd| comm == "java" && cmd.contains("kafka.Kafka"));
        let postgres_all = procfs::pids_where(|comm, _| comm == "postgres");
        let postgres_bench = procfs::pids_where(|comm, cmd| {
            comm == "postgres" && cmd.split_whitespace().any(|w| w == pids.database)
        });
        let ticks = |list: &[u32]| -> HashMap<u32, u64> {
            list.iter()
                .filter_map(|&pid| Some((pid, procfs::cpu_ticks(pid).ok()?)))
                .collect()
        };
        Ok(Self {
            at: Instant::now(),
            stages: [
                procfs::cpu_ticks(pids.processor)?,
                procfs::cpu_ticks(pids.sink)?,
                procfs::cpu_ticks(pids.push)?,
            ],
            bench: procfs::threads_by_name(std::process::id())?,
            kafka: ticks(&kafka),
            postgres: ticks(&postgres_all),
            postgres_bench,
            machine_busy: procfs::machine_ticks()?.0,
        })
    }

    /// Cores used from `earlier` to this snapshot. A process that started in between
    /// counts from zero; one that ended in between is lost.
    pub(super) fn since(&self, earlier: &Snapshot) -> Cores {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-3);
        let cores = |ticks: u64| ticks as f64 / procfs::TICKS_PER_SEC / secs;
        let grew = |now: &HashMap<u32, u64>, then: &HashMap<u32, u64>, only: Option<&[u32]>| {
            now.iter()
                .filter(|(pid, _)| only.is_none_or(|o| o.contains(pid)))
                .map(|(pid, t)| t.saturating_sub(then.get(pid).copied().unwrap_or(0)))
                .sum::<u64>()
        };
        let mut feed = 0;
        let mut producer = 0;
        let mut clients = 0;
        for (name, t) in &self.bench {
            let used = t.saturating_sub(earlier.bench.get(name).copied().unwrap_or(0));
            if name == THREAD {
                feed += used;
            } else if name.starts_with("rdk:") {
                producer += used;
            } else {
                clients += used;
            }
        }
        let stage = |i: usize| cores(self.stages[i].saturating_sub(earlier.stages[i]));
        Cores {
            feed: cores(feed),
            producer: cores(producer),
            clients: cores(clients),
            processor: stage(0),
            sink: stage(1),
            push: stage(2),
            kafka: cores(grew(&self.kafka, &earlier.kafka, None)),
            postgres: cores(grew(&self.postgres, &earlier.postgres, None)),
            postgres_bench: cores(grew(
                &self.postgres,
                &earlier.postgres,
                Some(&self.postgres_bench),
            )),
            machine: cores(self.machine_busy.saturating_sub(earlier.machine_busy)),
        }
    }
}
