//! Store benchmark: how long a daemon takes to restore 1000 agents × 100
//! messages, and what the per-message fsync costs. Prints figures; asserts
//! nothing about time.
//!
//! `cargo bench --bench store` runs it at full size. Under `cargo test
//! --all-targets` (no `--bench` argument) it runs at a tiny size, as a smoke
//! test that the code still works.

use std::time::Instant;

use orchestration::config::Config;
use orchestration::engine::Engine;
use orchestration::model::{AgentConfig, AgentName, Message, ProviderSpec};
use orchestration::providers::{Keys, ProviderSettings};
use orchestration::store::Store;
use serde_json::Map;
use uuid::Uuid;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (agents, messages, fsynced) = if full { (1000, 100, 500) } else { (10, 10, 10) };
    let dir = tempfile::tempdir().expect("tempdir");

    // fsync cost: the real write path, one transaction per message.
    let mut store = Store::open(dir.path()).expect("open");
    let probe = Uuid::new_v4();
    store
        .add_agent(probe, &config("probe"), "2026-01-01T00:00:00Z")
        .expect("agent");
    let started = Instant::now();
    for i in 0..fsynced {
        let message = Message::new(
            "human",
            format!("message {i} with some words in it"),
            Map::new(),
        );
        store.add_message(probe, &message, None).expect("write");
    }
    let per_write = started.elapsed() / fsynced;
    println!(
        "durable write (WAL, synchronous=FULL): {per_write:?} per message over {fsynced} writes"
    );

    // Fill the store in bulk (setup, not measured), through SQLite directly.
    drop(store);
    fill(dir.path(), agents, messages);

    // Restore: open the store and bring every agent back, as the daemon does.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let engine = runtime.block_on(async {
        let store = Store::open(dir.path()).expect("open");
        let settings = ProviderSettings::new(
            Config::default(),
            Keys::default(),
            std::time::Duration::ZERO,
        )
        .expect("settings");
        Engine::restore(settings, store).expect("restore")
    });
    let took = started.elapsed();
    let restored = engine.live_count();
    assert_eq!(restored, agents + 1);
    println!("restore of {agents} agents x {messages} messages: {took:?} ({restored} agents live)");
    let size = std::fs::metadata(dir.path().join("store.db")).map_or(0, |m| m.len());
    println!("store size: {:.1} MiB", size as f64 / 1048576.0);
}

fn config(name: &str) -> AgentConfig {
    AgentConfig {
        name: AgentName::parse(name).expect("name"),
        agent_type: "api".into(),
        instructions: Some("Be brief.".into()),
        provider: ProviderSpec {
            provider: Some("echo".into()),
            ..ProviderSpec::default()
        },
    }
}

fn fill(dir: &std::path::Path, agents: usize, messages: usize) {
    let store = Store::open(dir).expect("open");
    let ids: Vec<Uuid> = (0..agents)
        .map(|i| {
            let id = Uuid::new_v4();
            store
                .add_agent(id, &config(&format!("agent-{i}")), "2026-01-01T00:00:00Z")
                .expect("agent");
            id
        })
        .collect();
    drop(store);
    let mut db = rusqlite::Connection::open(dir.join("store.db")).expect("sqlite");
    let tx = db.transaction().expect("tx");
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO messages (agent_id, id, sender, content, message_type, timestamp, metadata)
                 VALUES (?1, ?2, ?3, ?4, 'chat', '2026-01-01T00:00:00Z', '{}')",
            )
            .expect("prepare");
        for id in &ids {
            for m in 0..messages {
                let sender = if m % 2 == 0 { "human" } else { "agent" };
                let content = format!(
                    "message {m}: a line of conversation of ordinary length, about sixty characters"
                );
                insert
                    .execute(rusqlite::params![
                        id.to_string(),
                        Uuid::new_v4().to_string(),
                        sender,
                        content
                    ])
                    .expect("insert");
            }
        }
    }
    tx.commit().expect("commit");
}
