//! The data directory `Bridge::open` creates holds the store, the nonce
//! journal and the flags: it is readable by its owner only, whatever the umask.

use std::os::unix::fs::PermissionsExt;

use lighthouse_core::{Bridge, BridgeConfig};
use lighthouse_security::MasterKey;

#[tokio::test]
async fn a_data_directory_the_bridge_creates_is_the_owners_only() {
    // Under a umask that lets group and others read (under 077 the mode comes
    // out right without the bridge doing anything). The umask is the
    // process's; this binary holds this test only.
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bridge = Bridge::open(BridgeConfig::new(&data, MasterKey::generate().unwrap()))
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("store")), 0o700);
    bridge.shutdown().await.unwrap();
}
