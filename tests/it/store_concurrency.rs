//! The store under concurrency: writes from many agents at once are
//! committed together, yet every acknowledged message survives `kill -9`;
//! and a spawn waiting on the disk holds up neither `/health` nor `list`,
//! while its name stays taken until it is published.

mod common;

use common::{Daemon, Env, eventually, transcript};
use serde_json::json;

const AGENTS: usize = 6;
const MESSAGES_EACH: usize = 8;

#[test]
fn concurrent_acknowledged_messages_all_survive_kill_9() {
    let daemon = Daemon::start_in(Env::new(), &["--no-tcp", "--echo-delay", "0ms"], None);
    for a in 0..AGENTS {
        let spawn = json!({"name": format!("w{a}"), "provider": "echo"});
        assert_eq!(daemon.json("POST", "/agents", Some(spawn)).status, 200);
    }
    // Every agent's messages from its own thread, all agents at once, so
    // the writer has concurrent writes to commit together.
    let acknowledged: Vec<Vec<String>> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..AGENTS)
            .map(|a| {
                let daemon = &daemon;
                scope.spawn(move || {
                    (0..MESSAGES_EACH)
                        .map(|m| {
                            let content = format!("agent {a} message {m}");
                            let body = json!({ "content": content });
                            let path = format!("/agents/w{a}/message");
                            let response = daemon.json("POST", &path, Some(body));
                            assert_eq!(response.status, 200, "{}", response.text());
                            content
                        })
                        .collect()
                })
            })
            .collect();
        senders
            .into_iter()
            .map(|s| s.join().expect("sender"))
            .collect()
    });
    let mut daemon = daemon;
    daemon.child.kill().expect("kill -9");
    daemon.child.wait().expect("reap");

    let daemon = Daemon::start_in(daemon.env.clone(), &["--no-tcp"], None);
    for (a, sent) in acknowledged.iter().enumerate() {
        let history = daemon
            .json("GET", &format!("/agents/w{a}/history"), None)
            .json();
        let expected: Vec<(String, String)> = sent
            .iter()
            .flat_map(|content| {
                [
                    ("human".to_owned(), content.clone()),
                    (format!("w{a}"), content.clone()),
                ]
            })
            .collect();
        assert_eq!(transcript(&history), expected);
        // The totals a restore reads (not the messages) agree.
        let info = daemon.json("GET", &format!("/agents/w{a}"), None).json();
        assert_eq!(info["message_count"], 2 * MESSAGES_EACH);
    }
}

#[test]
fn a_spawn_waiting_on_the_disk_holds_up_neither_health_nor_list() {
    let daemon = Daemon::start(&[]);
    let store = daemon.env.dir.path().join("state/store.db");
    // Another connection takes the store's write lock: the daemon's next
    // write waits for it.
    let blocker = rusqlite::Connection::open(&store).expect("open the store");
    blocker
        .execute_batch("BEGIN IMMEDIATE;")
        .expect("take the write lock");

    let spawned = std::thread::scope(|scope| {
        let spawn = scope.spawn(|| {
            daemon.json(
                "POST",
                "/agents",
                Some(json!({"name": "held", "provider": "echo"})),
            )
        });
        // The name is taken as soon as the spawn has reserved it, before
        // its write; a spawn with an unknown provider is refused without
        // reserving, so probing cannot take the name itself.
        eventually("the spawn to reserve its name", || {
            let probe = json!({"name": "held", "provider": "no-such-provider"});
            daemon.json("POST", "/agents", Some(probe)).status == 409
        });
        // The spawn is now waiting for the lock, so it cannot have finished;
        // meanwhile the daemon answers, and does not list it yet.
        assert_eq!(daemon.json("GET", "/health", None).status, 200);
        let list = daemon.json("GET", "/agents", None);
        assert_eq!(list.status, 200);
        assert_eq!(list.json(), json!([]));
        assert_eq!(daemon.json("GET", "/agents/held", None).status, 404);
        assert!(!spawn.is_finished());
        blocker
            .execute_batch("COMMIT;")
            .expect("let go of the lock");
        spawn.join().expect("spawn")
    });
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    assert_eq!(daemon.json("GET", "/agents/held", None).status, 200);
}
