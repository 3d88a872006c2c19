//! The open-file limit (`RLIMIT_NOFILE`) against `max_connections`. Every
//! connection is a file descriptor, and so is every segment, snapshot and log
//! file the store opens. Under a soft limit of 1,024 (a common default) and the
//! default `max_connections` of 16,384, about a thousand connections used every
//! descriptor, and the store's next segment rotation failed, which stops its
//! appends until a restart. `serve` therefore raises the soft limit as far as
//! it needs and the hard limit allows, and holds fewer connections when that
//! is still not enough.

/// Descriptors kept free for everything but client connections and the
/// store's segment files: sled's files, snapshot files, the listener, logs, the
/// runtime, and segments the store creates after the start (64 more is 4 GiB
/// of log; the reserve is counted again at every start).
pub const RESERVED: u64 = 256;

/// Descriptors the store in `store_dir` holds open for its whole life: one per
/// segment file (each is kept open for reads). 0 for a store not created yet.
pub fn store_files(store_dir: &std::path::Path) -> u64 {
    std::fs::read_dir(store_dir.join("segments")).map_or(0, |d| d.count() as u64)
}

/// The soft limit `serve` asks for: enough for `max_connections` and
/// `reserved`, never above `hard`, never below `soft` (a limit is only raised).
pub fn wanted_soft_limit(max_connections: usize, reserved: u64, soft: u64, hard: u64) -> u64 {
    let needed = (max_connections as u64).saturating_add(reserved);
    needed.min(hard).max(soft)
}

/// How many connections fit under a soft limit of `soft` with `reserved`
/// descriptors kept free: `max_connections`, or fewer. `None` when the limit
/// leaves room for none.
pub fn connections_within(max_connections: usize, reserved: u64, soft: u64) -> Option<usize> {
    let room = soft.saturating_sub(reserved);
    let fit = usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(max_connections);
    (fit > 0).then_some(fit)
}

/// Raises the soft open-file limit toward what `max_connections` and the
/// store's `segments` files need and returns how many connections to hold
/// open: `max_connections` when they fit, else fewer, with a warning that says
/// how to raise the limit. Refuses a limit that leaves no room for any
/// connection.
pub fn fit_connections(max_connections: usize, segments: u64) -> Result<usize, String> {
    let reserved = RESERVED.saturating_add(segments);
    let (soft, hard) = match limits::get() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE); not checking max_connections against it");
            return Ok(max_connections);
        }
    };
    let wanted = wanted_soft_limit(max_connections, reserved, soft, hard);
    let soft = raise(soft, wanted, hard);
    let needed = (max_connections as u64).saturating_add(reserved);
    let raise = format!(
        "raise the open-file limit to at least {needed} (`ulimit -n {needed}` before starting, \
         LimitNOFILE={needed} in a systemd unit, `--ulimit nofile={needed}` for docker)"
    );
    match connections_within(max_connections, reserved, soft) {
        Some(n) if n == max_connections => Ok(n),
        Some(n) => {
            tracing::warn!(
                configured = max_connections,
                serving = n,
                soft_limit = soft,
                hard_limit = hard,
                reserved,
                "max_connections is {max_connections}, but the open-file limit (RLIMIT_NOFILE) is \
                 {soft} (hard limit {hard}) and {reserved} descriptors are kept for the store \
                 ({segments} segment files), snapshots and logs: holding at most {n} connections open. To allow \
                 {max_connections}, {raise}, or lower max_connections (LIGHTHOUSE_MAX_CONNECTIONS)"
            );
            Ok(n)
        }
        None => Err(format!(
            "the open-file limit (RLIMIT_NOFILE) is {soft} (hard limit {hard}), which leaves no \
             descriptor for a connection once {reserved} are kept for the store ({segments} \
             segment files), snapshots and logs; {raise}"
        )),
    }
}

/// Raises the soft open-file limit so that a command serving no connections
/// (`init`, the offline `agents` and `store` commands) can open every segment
/// file of the store in `store_dir` (one per 64 MiB of log, each held open):
/// under the common soft limit of 1,024 a store of some 50 GiB failed to open
/// with "too many open files" although the hard limit allowed far more. `serve` raises it in
/// [`fit_connections`]; here it is a no-op then.
pub fn fit_store(store_dir: &std::path::Path) {
    let Ok((soft, hard)) = limits::get() else {
        return;
    };
    let wanted = wanted_soft_limit(
        0,
        RESERVED.saturating_add(store_files(store_dir)),
        soft,
        hard,
    );
    raise(soft, wanted, hard);
}

/// Raises the soft limit from `soft` toward `wanted` and returns the limit in
/// force.
fn raise(soft: u64, wanted: u64, hard: u64) -> u64 {
    let got = raise_with(soft, wanted, |ask| limits::set_soft(ask, hard));
    if got > soft {
        tracing::info!(
            from = soft,
            to = got,
            "raised the open-file limit (RLIMIT_NOFILE)"
        );
    }
    if got < wanted {
        tracing::warn!(
            soft = got,
            wanted,
            "cannot raise the open-file limit (RLIMIT_NOFILE) as far as wanted"
        );
    }
    got
}

/// The highest limit from `soft` to `wanted` that `set` accepts, set last. A
/// system may refuse more than a per-process ceiling below the hard limit
/// (macOS: `kern.maxfilesperproc`, often 10,240, with an unlimited hard limit),
/// so after a refusal of `wanted` the ceiling is found by bisection (about 14
/// calls for 16,640).
fn raise_with(soft: u64, wanted: u64, mut set: impl FnMut(u64) -> std::io::Result<()>) -> u64 {
    if wanted <= soft {
        return soft;
    }
    if set(wanted).is_ok() {
        return wanted;
    }
    // `lo` is accepted (in force), `hi` refused.
    let (mut lo, mut hi) = (soft, wanted);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match set(mid) {
            Ok(()) => lo = mid,
            Err(_) => hi = mid,
        }
    }
    lo
}

#[cfg(unix)]
mod limits {
    /// The soft and hard `RLIMIT_NOFILE`.
    pub fn get() -> std::io::Result<(u64, u64)> {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((r.rlim_cur, r.rlim_max))
    }

    /// Sets the soft `RLIMIT_NOFILE` to `soft`, keeping the hard one.
    pub fn set_soft(soft: u64, hard: u64) -> std::io::Result<()> {
        let r = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod limits {
    pub fn get() -> std::io::Result<(u64, u64)> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
    pub fn set_soft(_: u64, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_what_is_needed_within_the_hard_limit() {
        // Default max_connections under the usual 1024 / 524288.
        assert_eq!(
            wanted_soft_limit(16_384, RESERVED, 1024, 524_288),
            16_384 + RESERVED
        );
        // A hard limit below the need: as far as it goes.
        assert_eq!(wanted_soft_limit(16_384, RESERVED, 1024, 4096), 4096);
        // An unlimited hard limit (RLIM_INFINITY).
        assert_eq!(
            wanted_soft_limit(100, RESERVED, 1024, u64::MAX),
            1024,
            "never lowered"
        );
        assert_eq!(
            wanted_soft_limit(16_384, RESERVED, 1024, u64::MAX),
            16_384 + RESERVED
        );
        // Already enough: unchanged.
        assert_eq!(wanted_soft_limit(100, RESERVED, 65_536, 65_536), 65_536);
    }

    #[test]
    fn connections_are_lowered_to_leave_the_reserve_free() {
        assert_eq!(connections_within(16_384, RESERVED, 1024), Some(1024 - 256));
        assert_eq!(
            connections_within(16_384, RESERVED, 16_384 + 256),
            Some(16_384)
        );
        assert_eq!(
            connections_within(16_384, RESERVED, 16_384 + 255),
            Some(16_383)
        );
        assert_eq!(connections_within(16_384, RESERVED, u64::MAX), Some(16_384));
        assert_eq!(connections_within(100, RESERVED, 1024), Some(100));
        assert_eq!(connections_within(100, RESERVED, 257), Some(1));
        assert_eq!(connections_within(100, RESERVED, 256), None);
        assert_eq!(connections_within(100, RESERVED, 0), None);
    }

    #[test]
    fn a_refused_raise_finds_the_highest_limit_the_system_accepts() {
        // macOS: kern.maxfilesperproc 10,240 below an unlimited hard limit.
        let mut in_force = 256;
        let mut calls = 0;
        let got = raise_with(256, 16_640, |ask| {
            calls += 1;
            if ask <= 10_240 {
                in_force = ask;
                Ok(())
            } else {
                Err(std::io::Error::from_raw_os_error(22))
            }
        });
        assert_eq!((got, in_force), (10_240, 10_240));
        assert!(calls <= 16, "{calls}");
        // Accepted at once; nothing to raise; nothing accepted.
        assert_eq!(raise_with(1024, 16_640, |_| Ok(())), 16_640);
        assert_eq!(raise_with(65_536, 16_640, |_| unreachable!()), 65_536);
        let refused = |_| Err(std::io::Error::from_raw_os_error(1));
        assert_eq!(raise_with(1024, 16_640, refused), 1024);
        assert_eq!(raise_with(1024, 1025, refused), 1024);
    }

    #[test]
    fn the_store_s_segment_files_are_kept_out_of_the_connections() {
        let reserved = RESERVED + 300;
        assert_eq!(
            wanted_soft_limit(16_384, reserved, 1024, u64::MAX),
            16_384 + 556
        );
        assert_eq!(connections_within(16_384, reserved, 1024), Some(1024 - 556));
        let d = tempfile::tempdir().unwrap();
        assert_eq!(store_files(d.path()), 0);
        std::fs::create_dir(d.path().join("segments")).unwrap();
        for n in 0..3 {
            std::fs::write(d.path().join("segments").join(format!("{n:010}")), b"").unwrap();
        }
        assert_eq!(store_files(d.path()), 3);
    }
}
