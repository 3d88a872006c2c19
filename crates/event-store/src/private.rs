//! Files and directories of a store: readable by their owner only.
//!
//! A store holds the whole log, as a backup does (which is written 0600), so
//! the directories it creates are 0700 and its segment and snapshot files
//! 0600, whatever the umask. sled's own files (`db`, `conf`, `blobs/`,
//! `snap.*`) cannot be given a mode (sled 0.34 has no setting for it): they get
//! the umask's, and the store directory's 0700 is what keeps them private.
//! Directories that already exist keep their mode: a store created before
//! this was in place is made private with `chmod -R go= DIR`.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;

/// Mode of the directories a store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of the segment and snapshot files a store creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` with [`DIR_MODE`] unless it is a directory already; missing
/// parents are created as `std::fs::create_dir_all` would (they are not the
/// store's).
pub(crate) fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    match b.create(dir) {
        // Made by someone else meanwhile: theirs, as an existing one is.
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        r => r,
    }
}

/// Creates `dir` (mode 0700, missing parents as `create_dir_all` makes
/// them) unless it is a directory already, which keeps its mode: for a
/// directory that holds a store or what a store holds (a bridge's data
/// directory).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    create_dir(dir)
}

/// The permission bits of `dir` other than its owner's, when any is set.
pub(crate) fn shared_bits(dir: &Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let bits = std::fs::metadata(dir)?.permissions().mode() & 0o077;
        Ok((bits != 0).then_some(bits))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(None)
    }
}

/// Logs a warning when `dir` (a store's directory) is open to its group or
/// to everyone: a store created before its directories were made private
/// keeps its old modes.
pub(crate) fn warn_if_shared(dir: &Path) {
    if let Ok(Some(bits)) = shared_bits(dir) {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", bits),
            "event store: the store directory is open to its group or to others (it holds \
             the whole log); make it private with `chmod -R go= {}`",
            dir.display()
        );
    }
}

/// Options that create a file with [`FILE_MODE`] (the mode applies only to a
/// file these options create).
pub(crate) fn file_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, FILE_MODE);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_the_owners_only_existing_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a").join("store");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        create_dir(&dir).unwrap();
        let f = dir.join("f");
        file_options()
            .write(true)
            .create_new(true)
            .open(&f)
            .unwrap();
        assert_eq!(mode(&f), FILE_MODE);
        let other = d.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_dir(&other).unwrap();
        assert_eq!(mode(&other), 0o750);
        // The one kept open to its group is found, for the warning.
        assert_eq!(shared_bits(&other).unwrap(), Some(0o050));
        assert_eq!(shared_bits(&dir).unwrap(), None);
    }
}
