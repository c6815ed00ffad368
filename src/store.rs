//! The durable store: every agent incarnation (config, key included) and
//! every message, in one SQLite file `S/store.db` (mode 0600) in WAL mode.
//!
//! Durability: every write goes through one writer thread ([`Write`]), which
//! commits whatever writes are queued in one transaction with `synchronous =
//! FULL` (group commit: one fsync for all of them) and answers each write
//! only once that transaction is on disk. The engine writes a human message
//! before calling the provider and a reply before acknowledging it, so
//! nothing acknowledged is lost to a crash or `kill -9`. Reads use a second
//! connection (WAL lets it read while the writer writes); they see every
//! write that has been answered.
//!
//! The daemon is the only writer: `S/store.lock` is held under `flock` for
//! the daemon's life, so a second daemon on the same state dir is refused.
//! The schema is versioned with `PRAGMA user_version`; a store from a newer
//! version, or a corrupt one, is an error naming the file, never replaced.

mod query;
mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::model::{
    AgentConfig, AgentName, ApprovalMode, Message, PriceSource, ProviderSpec, PrunedConversation,
    SearchFilter, SearchHit, Secret, SpendScope, Usage, UsageBy, UsageFilter, UsageGroup,
    Workspace,
};
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OpenFlags, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use writer::Write;
use writer::Writer;

/// Migrations, in order: entry N takes the schema from version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: agents (one row per incarnation) and their messages.
    "CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        spawned INTEGER NOT NULL,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL,
        live INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX agents_by_name ON agents (name, spawned);
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_id TEXT NOT NULL REFERENCES agents (id),
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        content TEXT NOT NULL,
        message_type TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        metadata TEXT NOT NULL
    );
    CREATE INDEX messages_by_agent ON messages (agent_id, seq);",
    // 1 -> 2: a full-text index over every message, kept by triggers inside
    // the transaction of each message write and delete, and built once from
    // the messages already there.
    "CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content = 'messages', content_rowid = 'seq', tokenize = 'unicode61'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.seq, old.content);
    END;
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');",
    // 2 -> 3: each incarnation's message count and first and last message
    // times, kept by the writer in the transaction of each message write and
    // delete, so that a restore reads agent rows only, never every message.
    "ALTER TABLE agents ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agents ADD COLUMN first_at TEXT;
    ALTER TABLE agents ADD COLUMN last_at TEXT;
    UPDATE agents SET
        message_count = (SELECT COUNT(*) FROM messages WHERE agent_id = agents.id),
        first_at = (SELECT timestamp FROM messages WHERE agent_id = agents.id ORDER BY seq LIMIT 1),
        last_at = (SELECT timestamp FROM messages WHERE agent_id = agents.id ORDER BY seq DESC LIMIT 1);",
    // 3 -> 4: the usage ledger, one row per provider call, written in the
    // transaction of the reply it paid for. No foreign key: pruning a
    // conversation keeps what it cost. And the finer token totals per
    // incarnation.
    "CREATE TABLE usage (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        profile TEXT,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_usd REAL,
        price_source TEXT NOT NULL
    );
    CREATE INDEX usage_by_time ON usage (at);
    ALTER TABLE agents ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agents ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agents ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;",
];

/// A conversation's newest messages as (sender, content), oldest first.
#[derive(Debug)]
pub struct Turns {
    pub turns: Vec<(String, String)>,
    /// Every message of the conversation is there.
    pub whole: bool,
}

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another daemon is using the state dir {}: {} is locked; stop it first",
        dir.display(), lock.display()
    )]
    InUse { dir: PathBuf, lock: PathBuf },
    #[error(
        "cannot open the store {}: {cause}; check that the state dir is writable by you",
        path.display()
    )]
    Open {
        path: PathBuf,
        #[source]
        cause: Cause,
    },
    #[error(
        "the store {} is damaged ({cause}); it was left untouched: move it aside (mv {} {}.damaged) and restart to begin with an empty one",
        path.display(), path.display(), path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        cause: Cause,
    },
    #[error(
        "the store {} has schema version {found}, newer than this orchestration understands ({SCHEMA_VERSION}); run a newer orchestration, or move the file aside",
        path.display()
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("cannot save to the store: {0}")]
    Write(#[source] Cause),
    /// The file was deleted under the running daemon: a write would go
    /// into a file no one can read again.
    #[error(
        "cannot save to the store: {} was deleted while the daemon runs; restart the daemon (`orchestration serve --stop`, then any command) to begin a new store",
        path.display()
    )]
    Deleted { path: PathBuf },
    /// A search query the full-text index cannot read (the client's mistake).
    #[error("the search query is not valid: {0}")]
    Query(#[source] Cause),
    #[error("cannot read the store: {0}")]
    Read(#[source] Cause),
}

/// What went wrong beneath a [`StoreError`], kept whole as its `source`.
/// Shared (`Arc`), because one failed batch fails every write in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Sql(Arc<rusqlite::Error>),
    #[error(transparent)]
    Io(Arc<std::io::Error>),
    #[error(transparent)]
    Json(Arc<serde_json::Error>),
    /// No error value beneath, only what was found.
    #[error("{0}")]
    Found(String),
}

impl From<rusqlite::Error> for Cause {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(Arc::new(error))
    }
}

impl From<std::io::Error> for Cause {
    fn from(error: std::io::Error) -> Self {
        Self::Io(Arc::new(error))
    }
}

impl From<serde_json::Error> for Cause {
    fn from(error: serde_json::Error) -> Self {
        Self::Json(Arc::new(error))
    }
}

impl From<String> for Cause {
    fn from(found: String) -> Self {
        Self::Found(found)
    }
}

/// An incarnation as stored: its config (key included) and totals, not
/// its messages.
#[derive(Debug, Clone)]
pub struct StoredAgent {
    pub id: Uuid,
    pub config: AgentConfig,
    pub created_at: String,
    pub live: bool,
    pub usage: Usage,
    pub message_count: usize,
    /// When its first and last messages were written (none: no messages).
    pub first_at: Option<String>,
    pub last_at: Option<String>,
}

/// The open store: its writer thread, a connection for reads, and the lock
/// that makes this daemon its only writer. Fields drop in order: the writer
/// finishes what is queued before the lock is let go.
pub struct Store {
    writer: Writer,
    reader: Mutex<Connection>,
    path: PathBuf,
    _lock: Flock<File>,
}

/// How long a connection waits for the other's lock (a checkpoint waiting
/// for a read to finish) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// The state dir the store file is in.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// Opens (creating if need be) `dir/store.db`, migrating it to the
    /// current schema, after taking the state dir's lock.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let lock = lock_dir(dir)?;
        let path = dir.join("store.db");
        let open_error = |cause: Cause| StoreError::Open {
            path: path.clone(),
            cause,
        };
        let created = !path.exists();
        if created {
            // Create it 0600 ourselves, whatever the umask, before SQLite opens it.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| open_error(e.into()))?;
        }
        note_leftover_wal(&path);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection =
            Connection::open_with_flags(&path, flags).map_err(|e| open_error(e.into()))?;
        // SQLite quietly opens a write-protected file read-only; we must write.
        if connection
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| open_error(e.into()))?
        {
            return Err(open_error("it is read-only".to_owned().into()));
        }
        prepare(&connection, &path)?;
        // Opened after the migrations, so it never sees an older schema.
        let reader = Connection::open_with_flags(&path, flags).map_err(|e| open_error(e.into()))?;
        reader
            .execute_batch("PRAGMA query_only = ON;")
            .and_then(|()| reader.busy_timeout(BUSY_TIMEOUT))
            .map_err(|e| open_error(e.into()))?;
        // WAL and shared-memory files get the main file's mode from SQLite;
        // make sure of the main file too, in case it pre-existed.
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        let writer = Writer::start(connection, path.clone()).map_err(|e| open_error(e.into()))?;
        check_in_background(&path);
        Ok(Self {
            writer,
            reader: Mutex::new(reader),
            path,
            _lock: lock,
        })
    }

    /// Queues a write and waits, without blocking a runtime thread, until
    /// it is on disk.
    pub async fn write(&self, write: Write) -> Result<(), StoreError> {
        self.writer.write(write).await
    }

    /// Queues a write and blocks the calling thread until it is on disk.
    pub fn write_blocking(&self, write: Write) -> Result<(), StoreError> {
        self.writer.write_blocking(write)
    }

    /// Queues every write without waiting for each, so that they commit in
    /// large batches, and returns once all are on disk, or with the first
    /// failure. For filling a store quickly (benchmarks).
    #[doc(hidden)]
    pub fn write_all(&self, writes: impl IntoIterator<Item = Write>) -> Result<(), StoreError> {
        let failure: std::sync::Arc<Mutex<Option<StoreError>>> = Default::default();
        let mut writes = writes.into_iter().peekable();
        let mut queued = 0usize;
        while let Some(write) = writes.next() {
            queued += 1;
            // Waiting on every 4096th write keeps the queue (and memory) bounded.
            if queued.is_multiple_of(4096) || writes.peek().is_none() {
                self.writer.write_blocking(write)?;
                continue;
            }
            let failure = failure.clone();
            self.writer.submit(
                write,
                Box::new(move |outcome| {
                    if let Err(error) = outcome {
                        lock(&failure).get_or_insert(error);
                    }
                }),
            );
        }
        lock(&failure).take().map_or(Ok(()), Err)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        lock(&self.reader)
    }

    /// The last `limit` messages (all with `None`) of one incarnation,
    /// oldest first.
    pub fn messages(&self, agent: Uuid, limit: Option<usize>) -> Result<Vec<Message>, StoreError> {
        let read = |error: rusqlite::Error| StoreError::Read(error.into());
        let reader = self.reader();
        let mut statement = reader
            .prepare_cached(
                "SELECT id, sender, content, message_type, timestamp, metadata FROM messages
                 WHERE agent_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(read)?;
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = statement
            .query_map(params![agent.to_string(), limit], |row| {
                let id: String = row.get(0)?;
                let metadata: String = row.get(5)?;
                Ok(Message {
                    id: Uuid::parse_str(&id).unwrap_or_else(|_| Uuid::nil()),
                    sender: row.get(1)?,
                    content: row.get(2)?,
                    message_type: row.get(3)?,
                    timestamp: row.get(4)?,
                    metadata: serde_json::from_str(&metadata).unwrap_or_default(),
                })
            })
            .map_err(read)?;
        let mut messages = rows.collect::<Result<Vec<_>, _>>().map_err(read)?;
        messages.reverse();
        Ok(messages)
    }

    /// The newest messages of one incarnation whose contents fit in
    /// `budget` bytes together (the newest always, whatever its size), as
    /// (sender, content), oldest first: what a provider call is given as
    /// context. Read newest first through the `(agent_id, seq)` index and
    /// stopped at the first that does not fit, so the cost is the window's,
    /// not the history's. The flag says whether the whole conversation fit.
    /// Tool calls and results are left out: an API agent's tool rounds are
    /// not replayed as text, the reply that ended their turn stands for them.
    pub fn turns(&self, agent: Uuid, budget: usize) -> Result<Turns, StoreError> {
        let read = |error: rusqlite::Error| StoreError::Read(error.into());
        let reader = self.reader();
        let agent = agent.to_string();
        // Sizes first (`octet_length` reads no text), then only the text that fits.
        let mut sizes = reader
            .prepare_cached(
                "SELECT seq, octet_length(content) FROM messages WHERE agent_id = ?1
                 AND message_type NOT IN ('tool_call', 'tool_result') ORDER BY seq DESC",
            )
            .map_err(read)?;
        let mut rows = sizes.query(params![agent]).map_err(read)?;
        let mut from = None;
        let mut used = 0u64;
        let mut whole = true;
        while let Some(row) = rows.next().map_err(read)? {
            let seq: i64 = row.get(0).map_err(read)?;
            let size: i64 = row.get(1).map_err(read)?;
            used = used.saturating_add(size.unsigned_abs());
            if used > budget as u64 && from.is_some() {
                whole = false;
                break;
            }
            from = Some(seq);
        }
        drop(rows);
        let Some(from) = from else {
            return Ok(Turns {
                turns: Vec::new(),
                whole,
            });
        };
        let mut statement = reader
            .prepare_cached(
                "SELECT sender, content FROM messages WHERE agent_id = ?1 AND seq >= ?2
                 AND message_type NOT IN ('tool_call', 'tool_result') ORDER BY seq",
            )
            .map_err(read)?;
        let turns = statement
            .query_map(params![agent, from], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(read)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read)?;
        Ok(Turns { turns, whole })
    }

    /// When an incarnation's oldest remaining message was written.
    pub fn first_at(&self, agent: Uuid) -> Result<Option<String>, StoreError> {
        self.reader()
            .prepare_cached("SELECT first_at FROM agents WHERE id = ?1")
            .and_then(|mut s| s.query_row(params![agent.to_string()], |row| row.get(0)))
            .map_err(|error| StoreError::Read(error.into()))
    }

    /// Ended conversations whose last message (or, with none, whose start)
    /// is older than `cutoff` (RFC 3339, UTC): what a prune removes. A live
    /// agent's conversation, suspended or not, is never among them.
    /// Reads the totals each agent row keeps (schema 3), never the messages.
    pub fn prunable(&self, cutoff: &str) -> Result<Vec<PrunedConversation>, StoreError> {
        let read = |error: rusqlite::Error| StoreError::Read(error.into());
        let reader = self.reader();
        let mut statement = reader
            .prepare(
                "SELECT id, name, COALESCE(last_at, created_at) AS last, message_count
                 FROM agents
                 WHERE live = 0 AND last < ?1
                 ORDER BY spawned",
            )
            .map_err(read)?;
        let rows = statement
            .query_map(params![cutoff], |row| {
                let id: String = row.get(0)?;
                Ok(PrunedConversation {
                    id: Uuid::parse_str(&id).unwrap_or_else(|_| Uuid::nil()),
                    name: row.get(1)?,
                    last_at: row.get(2)?,
                    message_count: row.get::<_, i64>(3)?.max(0) as usize,
                })
            })
            .map_err(read)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(read)
    }

    /// The bytes the store takes on disk: the file and its write-ahead log.
    pub fn size(&self) -> u64 {
        let len = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        len(&self.path) + len(&wal_path(&self.path))
    }

    /// Messages matching a full-text query, most relevant first, from every
    /// conversation ever held (live or ended).
    pub fn search(&self, filter: &SearchFilter) -> Result<Vec<SearchHit>, StoreError> {
        // The statement is fixed and valid, so a plain SQLITE_ERROR can only
        // come from the caller's MATCH expression; anything else (I/O,
        // corruption, a busy file) is the store's.
        let read = |error: rusqlite::Error| match &error {
            rusqlite::Error::SqliteFailure(failure, _)
                if failure.code == rusqlite::ErrorCode::Unknown =>
            {
                StoreError::Query(error.into())
            }
            _ => StoreError::Read(error.into()),
        };
        let reader = self.reader();
        let mut statement = reader
            .prepare_cached(
                "SELECT a.name, a.id, m.id, m.timestamp, m.sender,
                        snippet(messages_fts, 0, '**', '**', '…', 16), bm25(messages_fts)
                 FROM messages_fts
                 JOIN messages m ON m.seq = messages_fts.rowid
                 JOIN agents a ON a.id = m.agent_id
                 WHERE messages_fts MATCH ?1
                   AND (?2 IS NULL OR a.name = ?2)
                   AND (?3 IS NULL OR m.timestamp >= ?3)
                 ORDER BY bm25(messages_fts), m.seq DESC
                 LIMIT ?4",
            )
            .map_err(read)?;
        let rows = statement
            .query_map(
                params![
                    query::fts_query(filter.query),
                    filter.agent.map(AgentName::as_str),
                    filter.since,
                    filter.limit as i64
                ],
                |row| {
                    let uuid =
                        |text: String| Uuid::parse_str(&text).unwrap_or_else(|_| Uuid::nil());
                    Ok(SearchHit {
                        agent: row.get(0)?,
                        conversation: uuid(row.get(1)?),
                        message_id: uuid(row.get(2)?),
                        timestamp: row.get(3)?,
                        sender: row.get(4)?,
                        snippet: row.get(5)?,
                        rank: row.get(6)?,
                    })
                },
            )
            .map_err(read)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(read)
    }

    /// Every incarnation, in spawn order, with its totals: agent rows only,
    /// however many messages there are.
    pub fn load(&self) -> Result<Vec<StoredAgent>, StoreError> {
        let read = |error: rusqlite::Error| StoreError::Corrupt {
            path: self.path.clone(),
            cause: error.into(),
        };
        let reader = self.reader();
        let mut rows = reader
            .prepare(
                "SELECT id, config, created_at, live, input_tokens, output_tokens,
                        message_count, first_at, last_at,
                        cache_read_tokens, cache_write_tokens, reasoning_tokens
                 FROM agents ORDER BY spawned",
            )
            .map_err(read)?;
        let mut cursor = rows.query([]).map_err(read)?;
        let mut agents = Vec::new();
        while let Some(row) = cursor.next().map_err(read)? {
            let id: String = row.get(0).map_err(read)?;
            let config: String = row.get(1).map_err(read)?;
            agents.push(StoredAgent {
                id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    cause: format!("agent id {id:?}: {e}").into(),
                })?,
                config: self.config(&id, &config)?,
                created_at: row.get(2).map_err(read)?,
                live: row.get::<_, i64>(3).map_err(read)? != 0,
                usage: Usage {
                    input_tokens: row.get::<_, i64>(4).map_err(read)?.max(0) as u64,
                    output_tokens: row.get::<_, i64>(5).map_err(read)?.max(0) as u64,
                    cache_read_tokens: row.get::<_, i64>(9).map_err(read)?.max(0) as u64,
                    cache_write_tokens: row.get::<_, i64>(10).map_err(read)?.max(0) as u64,
                    reasoning_tokens: row.get::<_, i64>(11).map_err(read)?.max(0) as u64,
                },
                message_count: row.get::<_, i64>(6).map_err(read)?.max(0) as usize,
                first_at: row.get(7).map_err(read)?,
                last_at: row.get(8).map_err(read)?,
            });
        }
        Ok(agents)
    }

    /// Sums the ledger's calls the filter covers, per group when it asks
    /// for groups, as (group key, where the price came from, calls, sums,
    /// cost): one row per key and price source.
    pub fn usage(
        &self,
        filter: &UsageFilter,
    ) -> Result<Vec<(Option<String>, UsageGroup)>, StoreError> {
        let read = |error: rusqlite::Error| StoreError::Read(error.into());
        // Fixed expressions, chosen by the typed grouping: nothing of the
        // request's text reaches the statement but its bound parameters.
        let key = match filter.by {
            None => "NULL",
            Some(UsageBy::Agent) => "agent_name",
            Some(UsageBy::Profile) => "COALESCE(profile, provider)",
            Some(UsageBy::Model) => "model",
            Some(UsageBy::Day) => "substr(at, 1, 10)",
        };
        let sql = format!(
            "SELECT {key} AS k, price_source, COUNT(*), SUM(input_tokens), SUM(output_tokens),
                    SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens),
                    SUM(cost_usd)
             FROM usage
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR agent_name = ?2)
             GROUP BY k, price_source ORDER BY k"
        );
        let reader = self.reader();
        let mut statement = reader.prepare_cached(&sql).map_err(read)?;
        let rows = statement
            .query_map(params![filter.since, filter.agent], |row| {
                let count = |i| {
                    row.get::<_, Option<i64>>(i)
                        .map(|n| n.unwrap_or(0).max(0) as u64)
                };
                let source: String = row.get(1)?;
                let mut group = UsageGroup::default();
                group.add(
                    count(2)?,
                    Usage {
                        input_tokens: count(3)?,
                        output_tokens: count(4)?,
                        cache_read_tokens: count(5)?,
                        cache_write_tokens: count(6)?,
                        reasoning_tokens: count(7)?,
                    },
                    row.get(8)?,
                    PriceSource::parse(&source).unwrap_or(PriceSource::Unknown),
                );
                Ok((row.get(0)?, group))
            })
            .map_err(read)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(read)
    }

    /// What the ledger's calls at or after `since` (RFC 3339; None: all
    /// time) of `scope` spent: input plus output tokens, and USD (the
    /// priced calls' cost), for seeding a budget.
    pub fn spent(&self, scope: &SpendScope, since: Option<&str>) -> Result<(u64, f64), StoreError> {
        let read = |error: rusqlite::Error| StoreError::Read(error.into());
        // Fixed expressions, chosen by the typed scope; the name is bound.
        let (column, value) = match scope {
            SpendScope::All => ("NULL", None),
            SpendScope::AgentName(name) => ("agent_name", Some(name.clone())),
            SpendScope::AgentId(id) => ("agent_id", Some(id.to_string())),
            SpendScope::Profile(name) => ("COALESCE(profile, provider)", Some(name.clone())),
        };
        let sql = format!(
            "SELECT SUM(input_tokens) + SUM(output_tokens), SUM(cost_usd) FROM usage
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR {column} = ?2)"
        );
        let reader = self.reader();
        let mut statement = reader.prepare_cached(&sql).map_err(read)?;
        statement
            .query_row(params![since, value], |row| {
                let tokens = row.get::<_, Option<i64>>(0)?.unwrap_or(0).max(0) as u64;
                let usd = row.get::<_, Option<f64>>(1)?.unwrap_or(0.0).max(0.0);
                Ok((tokens, usd))
            })
            .map_err(read)
    }

    /// An agent row's config, as the spawn gave it.
    fn config(&self, id: &str, json: &str) -> Result<AgentConfig, StoreError> {
        let corrupt = |found: String| StoreError::Corrupt {
            path: self.path.clone(),
            cause: found.into(),
        };
        let stored: StoredConfig =
            serde_json::from_str(json).map_err(|e| corrupt(format!("agent {id}: {e}")))?;
        stored.into_config().map_err(corrupt)
    }
}

/// Checks the file, refuses a newer schema, sets the connection up
/// (WAL, full sync) and migrates the schema to the current version.
///
/// The check at open covers what a start reads, the agents table: a check
/// of every page would cost a start time in proportion to all history ever
/// held. The whole file is checked after the start, by [`check_in_background`].
fn prepare(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let corrupt = |error: rusqlite::Error| StoreError::Corrupt {
        path: path.to_owned(),
        cause: error.into(),
    };
    // A file that is not a database at all fails here.
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(corrupt)?;
    if version > 0 {
        let check: String = connection
            .query_row("PRAGMA quick_check(agents)", [], |row| row.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                cause: check.into(),
            });
        }
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
        });
    }
    let open_error = |error: rusqlite::Error| StoreError::Open {
        path: path.to_owned(),
        cause: error.into(),
    };
    // A new store gives pruned space back to the file system
    // incrementally; this only takes before the first table exists.
    if version == 0 {
        connection
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(open_error)?;
    }
    let setup = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";
    connection.execute_batch(setup).map_err(open_error)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = from + 1;
        let sql = format!("BEGIN; {migration}; PRAGMA user_version = {to}; COMMIT;");
        connection.execute_batch(&sql).map_err(open_error)?;
    }
    // One line for the whole climb, however many steps it took.
    let to = MIGRATIONS.len();
    if (version as usize) < to {
        let what = if version == 0 {
            "store created"
        } else {
            "store schema migrated"
        };
        tracing::info!(store = %path.display(), from = version, to, "{what}");
    }
    Ok(())
}

/// The write-ahead log beside a store file.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.to_owned().into_os_string();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Leaves a trace of a write-ahead log found at open. The last connection
/// of a clean stop folds it into the file and deletes it, so one that is
/// there (we hold the state dir's lock: no one else has the store open)
/// was left by an unclean stop. SQLite replays it silently and stops at
/// the first damaged frame, dropping any after it; its size in the log is
/// what a user needs to tell whether something could have been lost.
fn note_leftover_wal(path: &Path) {
    let wal = wal_path(path);
    let Ok(meta) = std::fs::metadata(&wal) else {
        return;
    };
    if meta.len() == 0 {
        return;
    }
    tracing::warn!(
        store = %path.display(),
        wal_bytes = meta.len(),
        "the store was not closed cleanly: replaying the {} bytes of its write-ahead log {} (SQLite stops at the first damaged frame and drops any after it)",
        meta.len(),
        wal.display()
    );
}

/// Checks every page of the store on a thread of its own, with a
/// connection of its own and a small page cache, and logs damage as an
/// error naming the file. Reads of damaged pages fail on their own anyway;
/// this says so early, without holding up the start.
fn check_in_background(path: &Path) {
    let path = path.to_owned();
    let check = move || {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let result = Connection::open_with_flags(&path, flags).and_then(|connection| {
            connection.execute_batch("PRAGMA cache_size = 16;")?;
            connection.query_row("PRAGMA quick_check", [], |row| row.get::<_, String>(0))
        });
        match result {
            Ok(check) if check == "ok" => {}
            Ok(message) => {
                tracing::error!(store = %path.display(), %message, "the store is damaged; move it aside and restart to begin with an empty one")
            }
            Err(error) => {
                tracing::error!(store = %path.display(), %error, "cannot check the store")
            }
        }
    };
    if let Err(error) = std::thread::Builder::new()
        .name("store-check".into())
        .spawn(check)
    {
        tracing::warn!(%error, "cannot start the store check");
    }
}

/// Locks the reader, shrugging off poisoning: a read that panicked leaves
/// the connection as usable as before.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock_dir(dir: &Path) -> Result<Flock<File>, StoreError> {
    let path = dir.join("store.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StoreError::Open {
            path: path.clone(),
            cause: e.into(),
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| StoreError::InUse {
        dir: dir.to_owned(),
        lock: path,
    })
}

fn write_error(error: serde_json::Error) -> StoreError {
    StoreError::Write(error.into())
}

fn sql_write_error(error: rusqlite::Error) -> StoreError {
    // SQLITE_FULL reads "database or disk is full", which says it all.
    StoreError::Write(error.into())
}

/// An agent config as stored. The key is stored in the clear: the file is
/// 0600 in a 0700 dir, which is the boundary SPEC §4 names for it.
#[derive(Serialize, Deserialize)]
struct StoredConfig {
    name: String,
    agent_type: String,
    instructions: Option<String>,
    provider: Option<String>,
    profile: Option<String>,
    model: Option<String>,
    base_url: Option<String>,
    api_key: Option<String>,
    // Rows written before 0.2 may carry `api_key_env`; it is ignored: the
    // daemon no longer reads variables a request names.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    // A coding agent's workspace; absent from rows written before there
    // were coding agents, and from API agents'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    approval: ApprovalMode,
    /// Updated in place by [`Write::set_session`] when the agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    /// An API agent's tools; absent from rows written before there were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tools: Vec<String>,
    /// The agent's own budget as `spawn --budget` gave it (`2usd/day`);
    /// absent from rows written before there were budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget: Option<String>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl From<&AgentConfig> for StoredConfig {
    fn from(config: &AgentConfig) -> Self {
        let spec = &config.provider;
        Self {
            name: config.name.to_string(),
            agent_type: config.agent_type.clone(),
            instructions: config.instructions.clone(),
            provider: spec.provider.clone(),
            profile: spec.profile.clone(),
            model: spec.model.clone(),
            base_url: spec.base_url.clone(),
            api_key: spec.api_key.as_ref().map(|k| k.expose().to_owned()),
            headers: spec.headers.clone(),
            cwd: config.workspace.cwd.clone(),
            allow: config.workspace.allow.clone(),
            approval: config.workspace.approval,
            session: config.workspace.session.clone(),
            tools: config.workspace.tools.clone(),
            budget: config.budget.map(|budget| budget.to_string()),
        }
    }
}

impl StoredConfig {
    fn into_config(self) -> Result<AgentConfig, String> {
        let name = AgentName::parse(&self.name).map_err(|e| format!("agent name: {e}"))?;
        Ok(AgentConfig {
            name,
            agent_type: self.agent_type,
            instructions: self.instructions,
            provider: ProviderSpec {
                provider: self.provider,
                profile: self.profile,
                model: self.model,
                base_url: self.base_url,
                api_key: self.api_key.map(Secret::new),
                headers: self.headers,
            },
            workspace: Workspace {
                cwd: self.cwd,
                allow: self.allow,
                approval: self.approval,
                session: self.session,
                tools: self.tools,
            },
            budget: self
                .budget
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| format!("agent {}: {e}", self.name))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_keeps_what_caused_it() {
        use std::error::Error;
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").unwrap();
        let Err(error) = Store::open(&not_a_dir) else {
            panic!("a file is not a state dir");
        };
        let cause = error.source().expect("the cause is kept");
        assert!(error.to_string().contains(&cause.to_string()), "{error}");
        assert!(matches!(cause.downcast_ref::<Cause>(), Some(Cause::Io(_))));
    }

    #[test]
    fn a_coding_agents_workspace_and_session_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        {
            let store = Store::open(dir.path()).unwrap();
            let config = AgentConfig {
                name: AgentName::parse("coder").unwrap(),
                agent_type: "sdk".into(),
                instructions: None,
                provider: ProviderSpec {
                    provider: Some("claude-code".into()),
                    ..ProviderSpec::default()
                },
                workspace: Workspace {
                    cwd: Some("/src/proj".into()),
                    allow: vec!["Bash(git status:*)".into()],
                    approval: ApprovalMode::Never,
                    session: None,
                    tools: Vec::new(),
                },
                budget: Some("2usd/day".parse().unwrap()),
            };
            store
                .write_blocking(Write::add_agent(id, &config, "2026-01-01T00:00:00Z").unwrap())
                .unwrap();
            store
                .write_blocking(Write::set_session(id, "4b1c0d9e-session"))
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let loaded = store.load().unwrap();
        let workspace = &loaded[0].config.workspace;
        assert_eq!(workspace.cwd.as_deref(), Some("/src/proj"));
        assert_eq!(workspace.allow, vec!["Bash(git status:*)".to_owned()]);
        assert_eq!(workspace.approval, ApprovalMode::Never);
        assert_eq!(workspace.session.as_deref(), Some("4b1c0d9e-session"));
        let budget = loaded[0].config.budget.map(|b| b.to_string());
        assert_eq!(budget.as_deref(), Some("2usd/day"));
    }

    #[test]
    fn the_context_read_stops_at_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let config = AgentConfig {
            name: AgentName::parse("w").unwrap(),
            agent_type: "api".into(),
            instructions: None,
            provider: ProviderSpec::default(),
            workspace: Workspace::default(),
            budget: None,
        };
        store
            .write_blocking(Write::add_agent(id, &config, "2026-01-01T00:00:00Z").unwrap())
            .unwrap();
        let empty = store.turns(id, 100).unwrap();
        assert!(empty.turns.is_empty() && empty.whole);
        for text in ["aaaa", "bb", "cccccc", "dd"] {
            let message = Message::new("human", text.into(), serde_json::Map::new());
            let write = Write::add_message(id, &message, None, 0).unwrap();
            store.write_blocking(write).unwrap();
        }
        let texts = |budget| {
            let read = store.turns(id, budget).unwrap();
            let texts: Vec<String> = read.turns.into_iter().map(|(_, text)| text).collect();
            (texts, read.whole)
        };
        assert_eq!(texts(8), (vec!["cccccc".into(), "dd".into()], false));
        assert_eq!(texts(9), (vec!["cccccc".into(), "dd".into()], false));
        assert_eq!(
            texts(10),
            (vec!["bb".into(), "cccccc".into(), "dd".into()], false)
        );
        assert_eq!(texts(14).0.len(), 4);
        assert!(texts(14).1, "all of it fits");
        // The newest is sent whatever its size.
        assert_eq!(texts(1), (vec!["dd".into()], false));
    }

    #[test]
    fn a_store_from_before_search_is_indexed_once_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            // A version-1 store, as the previous release wrote it.
            let old = Connection::open(&path).unwrap();
            old.execute_batch(MIGRATIONS[0]).unwrap();
            old.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO agents (id, name, spawned, config, created_at, live)
                   VALUES ('00000000-0000-0000-0000-000000000001', 'old', 1,
                     '{\"name\":\"old\",\"agent_type\":\"api\",\"instructions\":null,\"provider\":\"echo\",\"profile\":null,\"model\":null,\"base_url\":null,\"api_key\":null}',
                     '2026-01-01T00:00:00Z', 0);
                 INSERT INTO messages (agent_id, id, sender, content, message_type, timestamp, metadata)
                   VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000aa',
                     'human', 'the quick brown fox', 'chat', '2026-01-01T00:00:01Z', '{}');",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let find = |store: &Store, query: &str| {
            store
                .search(&SearchFilter {
                    query,
                    limit: 10,
                    ..SearchFilter::default()
                })
                .unwrap()
        };
        let hits = find(&store, "brown");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].agent, "old");
        assert_eq!(hits[0].snippet, "the quick **brown** fox");
        // New writes are indexed in their own transaction, deletes too.
        let name = AgentName::parse("old").unwrap();
        let message = Message::new("old", "a brown dog".into(), serde_json::Map::new());
        let conversation = hits[0].conversation;
        let write = Write::add_message(conversation, &message, None, 0).unwrap();
        store.write_blocking(write).unwrap();
        assert_eq!(find(&store, "brown").len(), 2);
        // The migration to version 3 counted the old message; writes keep count.
        let agents = store.load().unwrap();
        assert_eq!(agents[0].message_count, 2);
        assert_eq!(agents[0].first_at.as_deref(), Some("2026-01-01T00:00:01Z"));
        assert_eq!(agents[0].last_at, Some(message.timestamp.clone()));
        store.write_blocking(Write::clear_history(&name)).unwrap();
        assert!(find(&store, "brown").is_empty());
        assert_eq!(store.load().unwrap()[0].message_count, 0);
        // Syntax the index cannot read is the caller's mistake.
        let error = store
            .search(&SearchFilter {
                query: "\"unbalanced",
                limit: 10,
                ..SearchFilter::default()
            })
            .unwrap_err();
        assert!(matches!(error, StoreError::Query(_)), "{error}");
    }
}
