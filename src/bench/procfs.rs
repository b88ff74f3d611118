//! The few `/proc` figures the benchmarks report: a process's resident memory and CPU time,
//! its threads' CPU time by name, the machine's busy time and load, and which processes run a
//! service (the broker, PostgreSQL) so their share can be read beside ours.

use anyhow::{Context, Result};

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux.
pub(super) const TICKS_PER_SEC: f64 = 100.0;

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(super) fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// User + system CPU time of `pid` (every thread) in ticks.
pub(super) fn cpu_ticks(pid: u32) -> Result<u64> {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// CPU ticks of each thread of `pid`, by thread name (`comm`), summed over threads that
/// share a name: how a process's time splits between, say, librdkafka's `rdk:` threads and
/// the runtime's workers.
pub(super) fn threads_by_name(pid: u32) -> Result<std::collections::BTreeMap<String, u64>> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task?.path();
        // A thread may end between the listing and the read: it is skipped.
        let (Ok(name), Ok(ticks)) = (
            std::fs::read_to_string(path.join("comm")),
            stat_ticks(&path.join("stat").to_string_lossy()),
        ) else {
            continue;
        };
        *by_name.entry(name.trim().to_owned()).or_default() += ticks;
    }
    Ok(by_name)
}

/// Busy and total CPU ticks of the whole machine since boot (the `cpu` line of
/// `/proc/stat`; idle and iowait count as not busy).
pub(super) fn machine_ticks() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Ok((total.saturating_sub(idle), total))
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them.
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

/// Processes whose name (`comm`) and command line satisfy `wanted`: how the bench finds the
/// broker and PostgreSQL it measures beside the stages it started.
pub(super) fn pids_where(wanted: impl Fn(&str, &str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            wanted(comm.trim(), &cmdline)
        })
        .collect()
}

/// User + system ticks from a `stat` file of `/proc` (a process's or a thread's).
fn stat_ticks(path: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected {path}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let parse = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no field {} in {path}", i + 3))
    };
    Ok(parse(11)? + parse(12)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        let busy = (0..5_000_000u64).fold(0u64, |a, b| a.wrapping_add(b * b));
        std::hint::black_box(busy);
        assert!(cpu_ticks(std::process::id()).is_ok());
        assert!(!threads_by_name(std::process::id()).unwrap().is_empty());
        let (busy, total) = machine_ticks().unwrap();
        assert!(busy <= total && total > 0);
        assert!(pids_where(|_, _| true).contains(&std::process::id()));
    }
}
