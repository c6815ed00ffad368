//! The store's one writer: a thread that owns the write connection and
//! commits whatever writes are queued in one transaction, with one fsync
//! (group commit). Each write's sender hears back only once the transaction
//! holding it is on disk, so "commit before acknowledge" holds per write
//! while concurrent writers share the cost of the fsync.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::{Cause, StoreError, StoredConfig, sql_write_error, write_error};
use crate::model::{AgentConfig, AgentName, Message, Usage, UsageRecord};

/// At most this many writes share one transaction, so that one batch's
/// work (and the wait of the first write in it) stays short.
const MAX_BATCH: usize = 256;

/// One change to the store, its data owned so it can cross to the writer.
pub struct Write(Change);

enum Change {
    AddAgent {
        id: String,
        name: String,
        config: String,
        created_at: String,
    },
    EndAgent(String),
    /// A coding agent's session id, kept in its stored config.
    SetSession {
        id: String,
        session: String,
    },
    AddMessage {
        agent: String,
        row: MessageRow,
        usage: Option<Usage>,
        /// Retention: keep only this many of the incarnation's newest
        /// messages (0 keeps all); trimmed in the same transaction.
        keep: usize,
        /// The provider call this message is the reply of, for the ledger:
        /// written in the same transaction (boxed: most messages have none).
        call: Option<Box<UsageRecord>>,
    },
    ClearHistory(String),
    /// Deletes ended incarnations, then gives the space back: VACUUM
    /// cannot run inside a transaction, so this one runs on its own.
    Prune(Vec<String>),
}

struct MessageRow {
    id: String,
    sender: String,
    content: String,
    message_type: String,
    timestamp: String,
    metadata: String,
}

impl Write {
    /// Records a newly spawned incarnation.
    pub fn add_agent(id: Uuid, config: &AgentConfig, created_at: &str) -> Result<Self, StoreError> {
        let stored = serde_json::to_string(&StoredConfig::from(config)).map_err(write_error)?;
        Ok(Self(Change::AddAgent {
            id: id.to_string(),
            name: config.name.to_string(),
            config: stored,
            created_at: created_at.to_owned(),
        }))
    }

    /// Marks an incarnation shut down; its messages stay.
    pub fn end_agent(id: Uuid) -> Self {
        Self(Change::EndAgent(id.to_string()))
    }

    /// Stores the session id a coding agent reported, so a restart resumes it.
    pub fn set_session(id: Uuid, session: &str) -> Self {
        Self(Change::SetSession {
            id: id.to_string(),
            session: session.to_owned(),
        })
    }

    /// Appends a message to an incarnation and adds `usage` to its totals;
    /// with `keep` > 0, deletes its oldest messages beyond the newest `keep`.
    pub fn add_message(
        agent: Uuid,
        message: &Message,
        usage: Option<Usage>,
        keep: usize,
    ) -> Result<Self, StoreError> {
        let metadata = serde_json::to_string(&message.metadata).map_err(write_error)?;
        Ok(Self(Change::AddMessage {
            agent: agent.to_string(),
            row: MessageRow {
                id: message.id.to_string(),
                sender: message.sender.clone(),
                content: message.content.clone(),
                message_type: message.message_type.clone(),
                timestamp: message.timestamp.clone(),
                metadata,
            },
            usage,
            keep,
            call: None,
        }))
    }

    /// Adds the ledger row of the provider call a message is the reply of,
    /// so that the reply and what it cost commit together.
    pub fn with_call(mut self, record: UsageRecord) -> Self {
        if let Change::AddMessage { call, .. } = &mut self.0 {
            *call = Some(Box::new(record));
        }
        self
    }

    /// Deletes every message of every incarnation of `name`.
    pub fn clear_history(name: &AgentName) -> Self {
        Self(Change::ClearHistory(name.to_string()))
    }

    /// Deletes these ended incarnations (messages, index entries, rows).
    pub fn prune(ids: &[Uuid]) -> Self {
        Self(Change::Prune(ids.iter().map(Uuid::to_string).collect()))
    }
}

type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Job {
    change: Change,
    done: Done,
}

/// The handle to the writer thread; dropping it lets the thread finish
/// what is queued and waits for it.
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// `path` is the store file the connection writes, watched so that
    /// writes into a file someone deleted are refused, not acknowledged.
    pub fn start(connection: Connection, path: PathBuf) -> std::io::Result<Self> {
        let file = Watched::open(path)?;
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(connection, file, queue))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues a write; `done` is called with its outcome once it is
    /// committed (or has failed).
    pub fn submit(&self, write: Write, done: Done) {
        let job = Job {
            change: write.0,
            done,
        };
        let refused = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = refused {
            (job.done)(Err(stopped()));
        }
    }

    /// Waits, without blocking a runtime thread, until the write is on disk.
    pub async fn write(&self, write: Write) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            write,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Blocks the calling thread until the write is on disk. The writer is
    /// its own thread, so this is safe on any thread, a runtime's included
    /// (where it stalls only that thread's tasks).
    pub fn write_blocking(&self, write: Write) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(
            write,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Write("the store's writer has stopped".to_owned().into())
}

/// The store file, held open to tell whether it is still linked: SQLite
/// goes on writing into an unlinked file, and every write would be
/// acknowledged and then lost with the process.
struct Watched {
    file: std::fs::File,
    path: PathBuf,
    /// Whether its deletion was logged (once is enough).
    reported: bool,
}

impl Watched {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open(&path)?,
            path,
            reported: false,
        })
    }

    /// Whether the file was deleted; logs it the first time.
    fn deleted(&mut self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let gone = self.file.metadata().is_ok_and(|meta| meta.nlink() == 0);
        if gone && !self.reported {
            self.reported = true;
            tracing::error!(
                store = %self.path.display(),
                "the store file was deleted while the daemon runs: every write is refused from now on; \
                 restart the daemon (`orchestration serve --stop`) to begin a new store"
            );
        }
        gone
    }

    fn refused(&self) -> StoreError {
        StoreError::Deleted {
            path: self.path.clone(),
        }
    }
}

/// The writer thread: takes the first waiting write, then everything queued
/// behind it, and commits them together — unless the store file was
/// deleted, when each is refused.
fn run(mut connection: Connection, mut file: Watched, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(job) = queue.try_recv()
        {
            batch.push(job);
        }
        if file.deleted() {
            for job in batch {
                (job.done)(Err(file.refused()));
            }
            continue;
        }
        let mut pending = Vec::with_capacity(batch.len());
        for job in batch {
            if let Change::Prune(ids) = &job.change {
                commit(&mut connection, std::mem::take(&mut pending));
                let outcome = prune(&mut connection, ids);
                (job.done)(outcome);
            } else {
                pending.push(job);
            }
        }
        commit(&mut connection, pending);
    }
}

/// Applies `jobs` in order in one transaction and commits it (one fsync),
/// then tells each job its outcome. A write that fails alone (its savepoint
/// rolled back) fails alone; if the transaction itself is lost (a full
/// disk, an I/O error) every write in it fails, and none is acknowledged.
fn commit(connection: &mut Connection, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let mut outcomes: Vec<Result<(), StoreError>> = Vec::with_capacity(jobs.len());
    let committed = (|| {
        let mut transaction = connection.transaction()?;
        for job in &jobs {
            let outcome = isolated(&mut transaction, &job.change);
            outcomes.push(outcome.map_err(sql_write_error));
            // SQLite rolls the whole transaction back on some errors.
            if transaction.is_autocommit() {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some("the transaction was rolled back".into()),
                ));
            }
        }
        transaction.commit()
    })()
    .map_err(Cause::from);
    let mut outcomes = outcomes.into_iter();
    for job in jobs {
        let own = outcomes.next();
        let outcome = match (&committed, own) {
            (Ok(()), Some(own)) => own,
            (Err(_), Some(Err(own))) => Err(own),
            (Err(cause), _) => Err(StoreError::Write(cause.clone())),
            (Ok(()), None) => Err(stopped()),
        };
        (job.done)(outcome);
    }
}

/// One write inside the batch's transaction, under its own savepoint.
fn isolated(transaction: &mut rusqlite::Transaction, change: &Change) -> rusqlite::Result<()> {
    let savepoint = transaction.savepoint()?;
    apply(&savepoint, change)?;
    savepoint.commit()
}

fn apply(connection: &Connection, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::AddAgent {
            id,
            name,
            config,
            created_at,
        } => connection
            .prepare_cached(
                "INSERT INTO agents (id, name, spawned, config, created_at, live)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(spawned), 0) + 1 FROM agents), ?3, ?4, 1)",
            )?
            .execute(params![id, name, config, created_at])
            .map(drop),
        Change::EndAgent(id) => connection
            .prepare_cached("UPDATE agents SET live = 0 WHERE id = ?1")?
            .execute(params![id])
            .map(drop),
        Change::SetSession { id, session } => connection
            .prepare_cached(
                "UPDATE agents SET config = json_set(config, '$.session', ?2) WHERE id = ?1",
            )?
            .execute(params![id, session])
            .map(drop),
        Change::AddMessage {
            agent,
            row,
            usage,
            keep,
            call,
        } => {
            add_message(connection, agent, row, *usage, *keep)?;
            call.as_deref()
                .map_or(Ok(()), |record| add_call(connection, record))
        }
        Change::ClearHistory(name) => {
            connection
                .prepare_cached(
                    "DELETE FROM messages WHERE agent_id IN (SELECT id FROM agents WHERE name = ?1)",
                )?
                .execute(params![name])?;
            connection
                .prepare_cached(
                    "UPDATE agents SET message_count = 0, first_at = NULL, last_at = NULL
                     WHERE name = ?1",
                )?
                .execute(params![name])
                .map(drop)
        }
        // Run on its own by `run`; never part of a batch.
        Change::Prune(_) => Ok(()),
    }
}

/// The message, the incarnation's totals (count, first and last time,
/// tokens: what a restore reads instead of every message), and retention.
fn add_message(
    connection: &Connection,
    agent: &str,
    row: &MessageRow,
    usage: Option<Usage>,
    keep: usize,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO messages (agent_id, id, sender, content, message_type, timestamp, metadata)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            agent,
            row.id,
            row.sender,
            row.content,
            row.message_type,
            row.timestamp,
            row.metadata
        ])?;
    let usage = usage.unwrap_or_default();
    let count: i64 = connection
        .prepare_cached(
            "UPDATE agents SET message_count = message_count + 1,
                first_at = COALESCE(first_at, ?2), last_at = ?2,
                input_tokens = input_tokens + ?3, output_tokens = output_tokens + ?4,
                cache_read_tokens = cache_read_tokens + ?5,
                cache_write_tokens = cache_write_tokens + ?6,
                reasoning_tokens = reasoning_tokens + ?7
             WHERE id = ?1 RETURNING message_count",
        )?
        .query_row(
            params![
                agent,
                row.timestamp,
                tokens(usage.input_tokens),
                tokens(usage.output_tokens),
                tokens(usage.cache_read_tokens),
                tokens(usage.cache_write_tokens),
                tokens(usage.reasoning_tokens)
            ],
            |r| r.get(0),
        )?;
    if keep == 0 || count <= keep as i64 {
        return Ok(());
    }
    connection
        .prepare_cached(
            "DELETE FROM messages WHERE agent_id = ?1 AND seq NOT IN
               (SELECT seq FROM messages WHERE agent_id = ?1 ORDER BY seq DESC LIMIT ?2)",
        )?
        .execute(params![agent, keep as i64])?;
    connection
        .prepare_cached(
            "UPDATE agents SET message_count = ?2,
                first_at = (SELECT timestamp FROM messages WHERE agent_id = ?1 ORDER BY seq LIMIT 1)
             WHERE id = ?1",
        )?
        .execute(params![agent, keep as i64])
        .map(drop)
}

/// A token count as SQLite's integer (a count past `i64::MAX` is capped).
fn tokens(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// One row of the usage ledger.
fn add_call(connection: &Connection, record: &UsageRecord) -> rusqlite::Result<()> {
    let usage = &record.usage;
    connection
        .prepare_cached(
            "INSERT INTO usage (at, agent_name, agent_id, provider, profile, model,
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                reasoning_tokens, cost_usd, price_source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            record.at,
            record.agent,
            record.agent_id.to_string(),
            record.provider,
            record.profile,
            record.model,
            tokens(usage.input_tokens),
            tokens(usage.output_tokens),
            tokens(usage.cache_read_tokens),
            tokens(usage.cache_write_tokens),
            tokens(usage.reasoning_tokens),
            record.cost_usd,
            record.price_source.as_str()
        ])
        .map(drop)
}

/// Deletes ended incarnations in one transaction, then gives the space
/// back. A store created before pruning existed is converted to
/// incremental vacuum once, here (a full VACUUM: a one-time cost).
fn prune(connection: &mut Connection, ids: &[String]) -> Result<(), StoreError> {
    let transaction = connection.transaction().map_err(sql_write_error)?;
    for id in ids {
        transaction
            .execute("DELETE FROM messages WHERE agent_id = ?1", params![id])
            .map_err(sql_write_error)?;
        transaction
            .execute("DELETE FROM agents WHERE id = ?1 AND live = 0", params![id])
            .map_err(sql_write_error)?;
    }
    transaction.commit().map_err(sql_write_error)?;
    let mode: i64 = connection
        .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
        .map_err(sql_write_error)?;
    if mode == 2 {
        vacuum_incrementally(connection)?;
    } else {
        connection
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
            .map_err(sql_write_error)?;
    }
    // Fold the log into the file and empty it, so the space is really back.
    connection
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(sql_write_error)
}

/// Gives every free page back to the file system. `incremental_vacuum`
/// frees one page per step of its statement, so it runs until it has no
/// more rows; run through `execute_batch` it would step once and free one
/// page.
fn vacuum_incrementally(connection: &Connection) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare("PRAGMA incremental_vacuum")
        .map_err(sql_write_error)?;
    let mut rows = statement.query([]).map_err(sql_write_error)?;
    while rows.next().map_err(sql_write_error)?.is_some() {}
    Ok(())
}
