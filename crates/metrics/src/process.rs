//! Process metrics read from `/proc/self` at each scrape (Linux).
//!
//! The figures follow the conventions of the official Prometheus clients:
//! CPU is user plus system time, resident and virtual memory come from
//! `/proc/self/stat`, open descriptors are the entries of `/proc/self/fd` (the
//! descriptor used to list them included, as the Go client counts), the
//! descriptor limit is the soft limit of `/proc/self/limits`, and the start
//! time is the boot time plus the process's start in clock ticks.

use crate::catalogue::{self, MetricSpec};
use crate::error::{Error, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Soft limit on open file descriptors (`None` when unlimited).
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Threads.
    pub threads: u64,
}

const STAT: &str = "/proc/self/stat";
const FD_DIR: &str = "/proc/self/fd";
const LIMITS: &str = "/proc/self/limits";
const SYSTEM_STAT: &str = "/proc/stat";

fn read(path: &'static str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Process {
        path,
        reason: e.to_string(),
    })
}

fn bad(path: &'static str, reason: &str) -> Error {
    Error::Process {
        path,
        reason: reason.to_string(),
    }
}

/// `sysconf(name)` as a positive number.
fn sysconf(name: libc::c_int, what: &'static str) -> Result<u64> {
    // SAFETY: sysconf only reads a configuration value; it has no memory
    // preconditions and is thread-safe.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| bad(what, "sysconf returned no value"))
}

/// The fields of `/proc/self/stat` after the command name, which may itself
/// contain spaces and parentheses, hence the split at the last `)`.
fn stat_fields(stat: &str) -> Result<Vec<&str>> {
    let close = stat
        .rfind(')')
        .ok_or_else(|| bad(STAT, "no closing parenthesis"))?;
    Ok(stat[close + 1..].split_whitespace().collect())
}

/// Field `n` (1-based, as numbered in proc(5)) of `/proc/self/stat`.
fn stat_field(fields: &[&str], n: usize) -> Result<u64> {
    // The fields after the name start at number 3.
    fields
        .get(n - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| bad(STAT, "missing or non-numeric field"))
}

fn parse_btime(system_stat: &str) -> Result<u64> {
    system_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad(SYSTEM_STAT, "no btime line"))
}

fn parse_max_fds(limits: &str) -> Result<Option<u64>> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| bad(LIMITS, "no Max open files line"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .ok_or_else(|| bad(LIMITS, "no soft limit"))?;
    if soft == "unlimited" {
        return Ok(None);
    }
    soft.parse()
        .map(Some)
        .map_err(|_| bad(LIMITS, "non-numeric soft limit"))
}

impl ProcessStats {
    /// Reads the current figures from `/proc`.
    pub fn read() -> Result<Self> {
        let ticks = sysconf(libc::_SC_CLK_TCK, "sysconf(_SC_CLK_TCK)")? as f64;
        let page_size = sysconf(libc::_SC_PAGESIZE, "sysconf(_SC_PAGESIZE)")?;
        let stat = read(STAT)?;
        let fields = stat_fields(&stat)?;
        let utime = stat_field(&fields, 14)?;
        let stime = stat_field(&fields, 15)?;
        let threads = stat_field(&fields, 20)?;
        let start_ticks = stat_field(&fields, 22)?;
        let vsize = stat_field(&fields, 23)?;
        let rss_pages = stat_field(&fields, 24)?;
        let btime = parse_btime(&read(SYSTEM_STAT)?)?;
        let open_fds = std::fs::read_dir(FD_DIR)
            .map_err(|e| Error::Process {
                path: FD_DIR,
                reason: e.to_string(),
            })?
            .count() as u64;
        Ok(Self {
            cpu_seconds: (utime + stime) as f64 / ticks,
            resident_memory_bytes: rss_pages.saturating_mul(page_size),
            virtual_memory_bytes: vsize,
            open_fds,
            max_fds: parse_max_fds(&read(LIMITS)?)?,
            start_time_seconds: btime as f64 + start_ticks as f64 / ticks,
            threads,
        })
    }
}

/// The collector registered with the exposition registry.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// The help text as the registry writes it for registered metrics.
fn help(spec: &MetricSpec) -> String {
    format!("{}.", spec.help)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    spec: &MetricSpec,
    value: f64,
) -> std::result::Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let m = encoder.encode_descriptor(spec.registry_name(), &help(spec), None, g.metric_type())?;
    g.encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        let stats = match ProcessStats::read() {
            Ok(s) => s,
            Err(e) => {
                // A scrape without process metrics beats a failed scrape.
                tracing::warn!(error = %e, "process metrics unavailable");
                return Ok(());
            }
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        let spec = &catalogue::PROCESS_CPU;
        let m = encoder.encode_descriptor(
            spec.registry_name(),
            &help(spec),
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(m)?;
        let e = &mut encoder;
        gauge(
            e,
            &catalogue::PROCESS_RESIDENT_MEMORY,
            stats.resident_memory_bytes as f64,
        )?;
        gauge(
            e,
            &catalogue::PROCESS_VIRTUAL_MEMORY,
            stats.virtual_memory_bytes as f64,
        )?;
        gauge(e, &catalogue::PROCESS_OPEN_FDS, stats.open_fds as f64)?;
        let max_fds = stats.max_fds.map_or(f64::INFINITY, |v| v as f64);
        gauge(e, &catalogue::PROCESS_MAX_FDS, max_fds)?;
        gauge(e, &catalogue::PROCESS_START_TIME, stats.start_time_seconds)?;
        gauge(e, &catalogue::PROCESS_THREADS, stats.threads as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let f = stat_fields(stat).unwrap();
        assert_eq!(stat_field(&f, 14).unwrap(), 250);
        assert_eq!(stat_field(&f, 15).unwrap(), 50);
        assert_eq!(stat_field(&f, 20).unwrap(), 7);
        assert_eq!(stat_field(&f, 22).unwrap(), 12345);
        assert_eq!(stat_field(&f, 23).unwrap(), 104_857_600);
        assert_eq!(stat_field(&f, 24).unwrap(), 2560);
        assert!(stat_field(&f, 60).is_err());
    }

    #[test]
    fn limits_and_btime_parsing() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 1048576              files\n";
        assert_eq!(parse_max_fds(limits).unwrap(), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited).unwrap(), None);
        assert!(parse_max_fds("nothing").is_err());
        assert_eq!(
            parse_btime("cpu  1 2 3\nbtime 1790000000\nprocesses 5\n").unwrap(),
            1_790_000_000
        );
        assert!(parse_btime("cpu 1").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reading_this_process_gives_plausible_figures() {
        let before = ProcessStats::read().unwrap();
        // Burn some CPU and open a descriptor, and see both.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = ProcessStats::read().unwrap();
        drop(file);
        assert!(
            after.cpu_seconds > before.cpu_seconds,
            "{before:?} {after:?}"
        );
        // stdin, stdout, stderr and `file` at least.
        assert!(after.open_fds >= 4, "{after:?}");
        assert!(after.max_fds.is_none_or(|m| m >= after.open_fds));
        assert!(after.resident_memory_bytes > 1 << 20);
        assert!(after.virtual_memory_bytes >= after.resident_memory_bytes);
        assert!(after.threads >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started within the last day, not in the future (2 s of tick rounding).
        assert!(after.start_time_seconds <= now + 2.0, "{after:?}");
        assert!(after.start_time_seconds > now - 86_400.0, "{after:?}");
    }
}
