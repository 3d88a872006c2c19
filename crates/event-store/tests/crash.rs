//! Crash safety: a child process appends durably and reports every acknowledged
//! event; it is killed with SIGKILL at a random moment; the store is reopened and
//! every acknowledged event must be there, unchanged, with the chain intact.
//! The child also saves a snapshot again and again (a megabyte each, so that
//! kills land inside a save); after the kill the snapshot must load, intact, at
//! or after the last save the child reported.
//!
//! The same runs in `Buffered` mode: a SIGKILL keeps the page cache, so nothing
//! acknowledged may be lost there either.
//!
//! `cargo test -p lighthouse-event-store --test crash` runs 20 durable and 10
//! buffered trials; the 200-trial soak is `cargo test -p lighthouse-event-store
//! --test crash -- --ignored crash_soak` (ten stores of 20 trials each, eight
//! durable and two buffered, about 3 minutes: every trial reopens,
//! verifies and reads back the whole store, so one store through 200 trials
//! takes time quadratic in the trials, over 20 minutes in a debug build).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lighthouse_event_store::{Durability, EventStore, Filter, NewEvent, Query, StoreOptions};
use serde_json::json;

const KEY: &[u8] = b"crash test key, 32 bytes long...";
const CHILD_ENV: &str = "LIGHTHOUSE_CRASH_CHILD_DIR";
/// `buffered` makes the child (and the reopening parent) use
/// `Durability::Buffered`: a SIGKILL keeps the page cache, so nothing
/// acknowledged may be lost there either, and every reopen recovers from the
/// buffered mode's synced mark, which usually lies below sled's anchor.
const CHILD_DURABILITY_ENV: &str = "LIGHTHOUSE_CRASH_CHILD_DURABILITY";

fn durability_named(name: &str) -> Durability {
    if name == "buffered" {
        Durability::Buffered
    } else {
        Durability::Durable
    }
}

/// The child: appends until killed (or for at most 30 s, so it always stops).
#[test]
#[ignore = "run by the crash tests as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let durability = durability_named(&std::env::var(CHILD_DURABILITY_ENV).unwrap_or_default());
    let store = EventStore::open(&dir, StoreOptions::new(KEY).durability(durability))
        .expect("child opens the store");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    rt.block_on(async {
        let mut tasks = Vec::new();
        let snapshots = store.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let seq = snapshots.head_seq();
                snapshots
                    .save_snapshot(SNAPSHOT, seq, snapshot_data(seq))
                    .await
                    .expect("save snapshot");
                println!("SNAP {seq}");
            }
        }));
        for w in 0..8u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    // Alternate single appends and small batches.
                    let n = if i.is_multiple_of(3) { 3 } else { 1 };
                    let batch = (0..n)
                        .map(|k| {
                            NewEvent::new(
                                format!("w{w}"),
                                "crash.appended",
                                json!({"w": w, "i": i + k}),
                            )
                        })
                        .collect();
                    let out = store.append(batch).await.expect("append");
                    for (k, a) in out.events.iter().enumerate() {
                        // One line per acknowledged event, written before the next append.
                        println!("ACK {} {} {} {}", a.seq, a.id, w, i + k as u64);
                    }
                    i += n;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

const SNAPSHOT: &str = "proj";

/// The bytes the child saves as the snapshot at `seq`.
fn snapshot_data(seq: u64) -> Vec<u8> {
    (0..1usize << 20)
        .map(|i| (seq as usize ^ i) as u8)
        .collect()
}

enum Line {
    Ack(Ack),
    Snap(u64),
}

struct Ack {
    seq: u64,
    id: String,
    w: u64,
    i: u64,
}

fn parse(line: &str) -> Option<Line> {
    if let Some(seq) = line.strip_prefix("SNAP ") {
        return Some(Line::Snap(seq.parse().ok()?));
    }
    let mut p = line.strip_prefix("ACK ")?.split(' ');
    Some(Line::Ack(Ack {
        seq: p.next()?.parse().ok()?,
        id: p.next()?.to_owned(),
        w: p.next()?.parse().ok()?,
        i: p.next()?.parse().ok()?,
    }))
}

/// A tiny deterministic generator for kill delays.
fn next_delay(state: &mut u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_millis(20 + *state % 200)
}

fn trials(n: usize, durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // Different kill delays in each run and in each of the soak's stores.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64 ^ (u64::from(nanos) << 20);
    let mut acked: Vec<Ack> = Vec::new();
    let mut last_snapshot: Option<u64> = None;
    for trial in 0..n {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(CHILD_DURABILITY_ENV, durability)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = parse(&line)
                    && tx.send(a).is_err()
                {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement so every trial kills a writing process.
        let mut lines = vec![
            rx.recv_timeout(Duration::from_secs(20))
                .expect("child acknowledged nothing"),
        ];
        std::thread::sleep(next_delay(&mut rng));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for line in lines {
            match line {
                Line::Ack(a) => acked.push(a),
                Line::Snap(seq) => last_snapshot = Some(last_snapshot.unwrap_or(0).max(seq)),
            }
        }

        let store = EventStore::open(
            dir.path(),
            StoreOptions::new(KEY).durability(durability_named(durability)),
        )
        .unwrap();
        let report = store.verify().unwrap();
        assert!(
            report.ok(),
            "trial {trial}: chain broken at {:?}",
            report.first_bad_seq
        );
        assert!(store.head_seq() >= acked.iter().map(|a| a.seq).max().unwrap_or(0));
        match (store.load_snapshot(SNAPSHOT), last_snapshot) {
            (Ok(Some(snap)), _) => {
                assert!(
                    snap.seq >= last_snapshot.unwrap_or(0) && snap.seq <= store.head_seq(),
                    "trial {trial}: snapshot at {} (last saved {last_snapshot:?}, head {})",
                    snap.seq,
                    store.head_seq()
                );
                assert!(
                    snap.data == snapshot_data(snap.seq),
                    "trial {trial}: snapshot bytes changed"
                );
            }
            (Ok(None), None) => {}
            (other, _) => panic!(
                "trial {trial}: snapshot lost or damaged: {:?} (last saved {last_snapshot:?})",
                other.map(|s| s.map(|s| s.seq))
            ),
        }
        // Every acknowledged event, of this trial and all before, read back in
        // one ascending pass (a `get` per event made the soak quadratic in
        // random reads).
        let mut want = acked.iter().map(|a| (a.seq, a)).collect::<Vec<_>>();
        want.sort_unstable_by_key(|(seq, _)| *seq);
        let mut want = want.into_iter().peekable();
        let mut q = Query {
            limit: Query::MAX_LIMIT,
            ..Query::new(Filter::all())
        };
        while want.peek().is_some() {
            let page = store.read(&q).unwrap();
            for e in &page.events {
                let Some(&(seq, a)) = want.peek() else { break };
                assert!(
                    seq >= e.seq,
                    "trial {trial}: acknowledged seq {seq} is lost"
                );
                if seq == e.seq {
                    assert_eq!(e.id, a.id, "trial {trial}: seq {seq} changed");
                    assert_eq!(
                        e.data,
                        json!({"w": a.w, "i": a.i}),
                        "trial {trial}: seq {seq} changed"
                    );
                    want.next();
                }
            }
            match page.next {
                Some(next) => q = q.resume(next),
                None => break,
            }
        }
        if let Some((seq, _)) = want.next() {
            panic!("trial {trial}: acknowledged seq {seq} is lost");
        }
    }
    assert!(acked.len() >= n, "every trial acknowledged something");
}

#[test]
fn acknowledged_events_survive_sigkill() {
    trials(20, "durable");
}

#[test]
fn acknowledged_events_survive_sigkill_in_buffered_mode() {
    trials(10, "buffered");
}

#[test]
#[ignore = "soak: 200 kill -9 trials, about 3 minutes"]
fn crash_soak() {
    for _ in 0..8 {
        trials(20, "durable");
    }
    for _ in 0..2 {
        trials(20, "buffered");
    }
}
