//! What every benchmark reads from the machine: a runtime, the load average, and
//! CPU time from `/proc`.

use std::collections::BTreeMap;
use std::time::Duration;

/// The multi-threaded Tokio runtime the scenarios run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    runtime_with(None)
}

/// The multi-threaded Tokio runtime with `workers` worker threads (`None`:
/// Tokio's default, one per core or `TOKIO_WORKER_THREADS`).
pub fn runtime_with(workers: Option<usize>) -> Result<tokio::runtime::Runtime, String> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build().map_err(|e| e.to_string())
}

/// The machine's 1-minute load average (other work competing for the cores).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second of `/proc/*/stat` times.
fn ticks_per_s() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&h| h > 0)
}

/// The command name and the user and system CPU time of a `/proc/*/stat` line.
fn stat_times(stat: &str, hz: u64) -> Option<(&str, Duration, Duration)> {
    // The command name is in parentheses and may hold spaces.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Option<Duration> {
        let t: u64 = f.get(i)?.parse().ok()?;
        Some(Duration::from_micros(t * 1_000_000 / hz))
    };
    Some((name, ticks(11)?, ticks(12)?))
}

/// CPU time (user + system) of process `pid` (`"self"` for this one).
pub fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, user, system) = stat_times(&stat, ticks_per_s()?)?;
    Some(user + system)
}

/// CPU time (user, system) of each thread group of process `pid`, keyed by thread
/// name with a trailing `-<n>` removed (`sled-io-3` counts under `sled-io`), read
/// from `/proc/<pid>/task/*/stat`. Threads that ended are not counted.
pub fn thread_cpu(pid: u32) -> BTreeMap<String, (Duration, Duration)> {
    let mut out = BTreeMap::new();
    let (Ok(tasks), Some(hz)) = (
        std::fs::read_dir(format!("/proc/{pid}/task")),
        ticks_per_s(),
    ) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let Some((name, user, system)) = stat_times(&stat, hz) else {
            continue;
        };
        let group = match name.rsplit_once('-') {
            Some((g, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => g,
            _ => name,
        };
        let e = out
            .entry(group.to_owned())
            .or_insert((Duration::ZERO, Duration::ZERO));
        e.0 += user;
        e.1 += system;
    }
    out
}

/// Asks the kernel to wake this thread from its sleeps at most `slack` late
/// (Linux's default timer slack for an ordinary thread is 50 µs, which a
/// clock thread's every wake-up would add to the latency it measures).
/// Returns whether the kernel took it; elsewhere than Linux it does nothing.
pub fn tighten_timer_slack(slack: Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        let ns = libc::c_ulong::try_from(slack.as_nanos().max(1)).unwrap_or(libc::c_ulong::MAX);
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches
        // only the calling thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = slack;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_times() {
        let line = "42 (sled io (x)) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0";
        let (name, user, system) = stat_times(line, 100).unwrap();
        assert_eq!(name, "sled io (x)");
        assert_eq!(
            (user, system),
            (Duration::from_millis(2500), Duration::from_millis(300))
        );
        assert!(stat_times("42 (short) S 1", 100).is_none());
    }

    #[test]
    fn this_process_has_used_cpu() {
        assert!(process_cpu("self").is_some());
        assert!(thread_cpu(std::process::id()).values().count() >= 1);
    }
}
