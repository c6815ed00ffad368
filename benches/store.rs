//! Store benchmark: how long a daemon takes to restore 1000 agents × 100
//! messages, and what one durable write costs alone. Prints figures; asserts
//! nothing about time.
//!
//! `cargo bench --bench store` runs it at full size. Under `cargo test
//! --all-targets` (no `--bench` argument) it runs at a tiny size, as a smoke
//! test that the code still works.

use std::time::Instant;

use orchestration::config::Config;
use orchestration::engine::Engine;
use orchestration::model::{AgentConfig, AgentName, Message, ProviderSpec, Workspace};
use orchestration::providers::{Keys, ProviderSettings};
use orchestration::store::{Store, Write};
use serde_json::Map;
use uuid::Uuid;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (agents, messages, fsynced) = if full { (1000, 100, 500) } else { (10, 10, 10) };
    let dir = tempfile::tempdir().expect("tempdir");

    // fsync cost: the real write path, one write at a time (nothing to
    // group it with).
    let store = Store::open(dir.path()).expect("open");
    let probe = Uuid::new_v4();
    let agent = Write::add_agent(probe, &config("probe"), "2026-01-01T00:00:00Z").expect("agent");
    store.write_blocking(agent).expect("agent");
    let started = Instant::now();
    for i in 0..fsynced {
        let message = Message::new(
            "human",
            format!("message {i} with some words in it"),
            Map::new(),
        );
        let write = Write::add_message(probe, &message, None, 0).expect("message");
        store.write_blocking(write).expect("write");
    }
    let per_write = started.elapsed() / fsynced;
    println!(
        "durable write (WAL, synchronous=FULL): {per_write:?} per message over {fsynced} writes"
    );

    // Fill the store in bulk (setup, not measured), through the store's
    // writer, many writes to a transaction.
    fill(&store, agents, messages);
    drop(store);

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
        Engine::restore(settings, store, orchestration::model::Clock::system()).expect("restore")
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
        workspace: Workspace::default(),
        budget: None,
    }
}

fn fill(store: &Store, agents: usize, messages: usize) {
    let ids: Vec<Uuid> = (0..agents).map(|_| Uuid::new_v4()).collect();
    let spawns = ids.iter().enumerate().map(|(i, id)| {
        let config = config(&format!("agent-{i}"));
        Write::add_agent(*id, &config, "2026-01-01T00:00:00Z").expect("agent")
    });
    store.write_all(spawns).expect("agents");
    let writes = ids.iter().flat_map(|id| {
        (0..messages).map(move |m| {
            let sender = if m % 2 == 0 { "human" } else { "agent" };
            let content = format!(
                "message {m}: a line of conversation of ordinary length, about sixty characters"
            );
            let message = Message::new(sender, content, Map::new());
            Write::add_message(*id, &message, None, 0).expect("message")
        })
    });
    store.write_all(writes).expect("messages");
}
