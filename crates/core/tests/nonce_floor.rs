//! The nonce journal's floor (requests signed before it are stale, see
//! docs/SECURITY.md) is set from what the deployment can have accepted: a new
//! deployment has nothing to have lost, so clients whose clocks lag are not
//! refused at its first start; a deployment whose journal is missing (lost, or
//! a store restored onto a new machine without it) refuses what was signed
//! before the open, which the old instance may have accepted.

use lighthouse_core::setup::initialize;
use lighthouse_core::{Bridge, BridgeConfig};
use lighthouse_security::MasterKey;

fn floor(data: &std::path::Path) -> String {
    std::fs::read_to_string(data.join("nonces").join("replay-floor"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_new_deployment_starts_without_a_floor_and_a_lost_journal_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = MasterKey::generate().unwrap();
    let bridge = Bridge::open(BridgeConfig::new(&data, key.clone()))
        .await
        .unwrap();
    initialize(&bridge, &dir.path().join("creds"), true)
        .await
        .unwrap();
    assert_eq!(floor(&data), i64::MIN.to_string());
    bridge.shutdown().await.unwrap();
    drop(bridge);

    // The journal lost (the store restored elsewhere without it): the agents
    // in the log may have had requests accepted, so the open time is a floor.
    std::fs::remove_dir_all(data.join("nonces")).unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // The store's lock goes with the last of its threads, a moment after the drop.
    let mut reopened = None;
    for _ in 0..400 {
        match Bridge::open(BridgeConfig::new(&data, key.clone())).await {
            Ok(b) => {
                reopened = Some(b);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
        }
    }
    let bridge = reopened.expect("the bridge reopens");
    let f: i64 = floor(&data).parse().unwrap();
    assert!(f >= before, "{f} < {before}");
    drop(bridge);
}
