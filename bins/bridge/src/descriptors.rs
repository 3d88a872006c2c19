//! The open-file limit (`RLIMIT_NOFILE`) against `max_connections`. Every
//! connection is a file descriptor, and so is every segment, snapshot and log
//! file the store opens. Under a soft limit of 1,024 (a common default) and the
//! default `max_connections` of 16,384, about a thousand connections used every
//! descriptor, and the store's next segment rotation failed, which stops its
//! appends until a restart. `serve` therefore raises the soft limit as far as
//! it needs and the hard limit allows, and holds fewer connections when that
//! is still not enough.

/// Descriptors kept free for everything but client connections: the store's
/// segments and index, snapshot files, the listener, logs, the runtime.
pub const RESERVED: u64 = 256;

/// The soft limit `serve` asks for: enough for `max_connections` and
/// [`RESERVED`], never above `hard`, never below `soft` (a limit is only raised).
pub fn wanted_soft_limit(max_connections: usize, soft: u64, hard: u64) -> u64 {
    let needed = (max_connections as u64).saturating_add(RESERVED);
    needed.min(hard).max(soft)
}

/// How many connections fit under a soft limit of `soft` with [`RESERVED`]
/// descriptors kept free: `max_connections`, or fewer. `None` when the limit
/// leaves room for none.
pub fn connections_within(max_connections: usize, soft: u64) -> Option<usize> {
    let room = soft.saturating_sub(RESERVED);
    let fit = usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(max_connections);
    (fit > 0).then_some(fit)
}

/// Raises the soft open-file limit toward what `max_connections` needs and
/// returns how many connections to hold open: `max_connections` when they fit,
/// else fewer, with a warning that says how to raise the limit. Refuses a
/// limit that leaves no room for any connection.
pub fn fit_connections(max_connections: usize) -> Result<usize, String> {
    let (soft, hard) = match limits::get() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE); not checking max_connections against it");
            return Ok(max_connections);
        }
    };
    let wanted = wanted_soft_limit(max_connections, soft, hard);
    let soft = if wanted > soft {
        match limits::set_soft(wanted, hard) {
            Ok(()) => {
                tracing::info!(
                    from = soft,
                    to = wanted,
                    "raised the open-file limit (RLIMIT_NOFILE)"
                );
                wanted
            }
            Err(e) => {
                tracing::warn!(error = %e, soft, wanted, "cannot raise the open-file limit (RLIMIT_NOFILE)");
                soft
            }
        }
    } else {
        soft
    };
    let needed = (max_connections as u64).saturating_add(RESERVED);
    let raise = format!(
        "raise the open-file limit to at least {needed} (`ulimit -n {needed}` before starting, \
         LimitNOFILE={needed} in a systemd unit, `--ulimit nofile={needed}` for docker)"
    );
    match connections_within(max_connections, soft) {
        Some(n) if n == max_connections => Ok(n),
        Some(n) => {
            tracing::warn!(
                configured = max_connections,
                serving = n,
                soft_limit = soft,
                hard_limit = hard,
                reserved = RESERVED,
                "max_connections is {max_connections}, but the open-file limit (RLIMIT_NOFILE) is \
                 {soft} (hard limit {hard}) and {RESERVED} descriptors are kept for the store, \
                 snapshots and logs: holding at most {n} connections open. To allow \
                 {max_connections}, {raise}, or lower max_connections (LIGHTHOUSE_MAX_CONNECTIONS)"
            );
            Ok(n)
        }
        None => Err(format!(
            "the open-file limit (RLIMIT_NOFILE) is {soft} (hard limit {hard}), which leaves no \
             descriptor for a connection once {RESERVED} are kept for the store, snapshots and \
             logs; {raise}"
        )),
    }
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
        assert_eq!(wanted_soft_limit(16_384, 1024, 524_288), 16_384 + RESERVED);
        // A hard limit below the need: as far as it goes.
        assert_eq!(wanted_soft_limit(16_384, 1024, 4096), 4096);
        // An unlimited hard limit (RLIM_INFINITY).
        assert_eq!(
            wanted_soft_limit(100, 1024, u64::MAX),
            1024,
            "never lowered"
        );
        assert_eq!(wanted_soft_limit(16_384, 1024, u64::MAX), 16_384 + RESERVED);
        // Already enough: unchanged.
        assert_eq!(wanted_soft_limit(100, 65_536, 65_536), 65_536);
    }

    #[test]
    fn connections_are_lowered_to_leave_the_reserve_free() {
        assert_eq!(connections_within(16_384, 1024), Some(1024 - 256));
        assert_eq!(connections_within(16_384, 16_384 + 256), Some(16_384));
        assert_eq!(connections_within(16_384, 16_384 + 255), Some(16_383));
        assert_eq!(connections_within(16_384, u64::MAX), Some(16_384));
        assert_eq!(connections_within(100, 1024), Some(100));
        assert_eq!(connections_within(100, 257), Some(1));
        assert_eq!(connections_within(100, 256), None);
        assert_eq!(connections_within(100, 0), None);
    }
}
