//! The durable store: every agent incarnation (config, key included) and
//! every message, in one SQLite file `S/store.db` (mode 0600) in WAL mode.
//!
//! Durability: each write is its own transaction with `synchronous = FULL`,
//! so it is on disk (fsync'd) before the call returns. The engine writes a
//! human message before calling the provider and a reply before
//! acknowledging it, so nothing acknowledged is lost to a crash or `kill -9`.
//!
//! The daemon is the only writer: `S/store.lock` is held under `flock` for
//! the daemon's life, so a second daemon on the same state dir is refused.
//! The schema is versioned with `PRAGMA user_version`; a store from a newer
//! version, or a corrupt one, is an error naming the file, never replaced.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::model::{
    AgentConfig, AgentName, Message, ProviderSpec, SearchFilter, SearchHit, Secret, Usage,
};
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OpenFlags, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
];

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
        "cannot open the store {}: {message}; check that the state dir is writable by you",
        path.display()
    )]
    Open { path: PathBuf, message: String },
    #[error(
        "the store {} is damaged ({message}); it was left untouched: move it aside (mv {} {}.damaged) and restart to begin with an empty one",
        path.display(), path.display(), path.display()
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "the store {} has schema version {found}, newer than this orchestration understands ({SCHEMA_VERSION}); run a newer orchestration, or move the file aside",
        path.display()
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("cannot save to the store: {0}")]
    Write(String),
    /// A search query the full-text index cannot read (the client's mistake).
    #[error("the search query is not valid: {0}")]
    Query(String),
    #[error("cannot read the store: {0}")]
    Read(String),
}

/// An ended conversation a prune would remove.
#[derive(Debug, Clone)]
pub struct Prunable {
    pub id: Uuid,
    pub name: String,
    pub last_at: String,
    pub message_count: usize,
}

/// An incarnation as stored: its config (key included) and totals.
#[derive(Debug, Clone)]
pub struct StoredAgent {
    pub id: Uuid,
    pub config: AgentConfig,
    pub created_at: String,
    pub live: bool,
    pub usage: Usage,
    pub messages: Vec<Message>,
}

/// The open store and the lock that makes this daemon its only writer.
pub struct Store {
    connection: Connection,
    path: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    /// Opens (creating if need be) `dir/store.db`, migrating it to the
    /// current schema, after taking the state dir's lock.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let lock = lock_dir(dir)?;
        let path = dir.join("store.db");
        let open_error = |message: String| StoreError::Open {
            path: path.clone(),
            message,
        };
        let created = !path.exists();
        if created {
            // Create it 0600 ourselves, whatever the umask, before SQLite opens it.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| open_error(e.to_string()))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection =
            Connection::open_with_flags(&path, flags).map_err(|e| open_error(e.to_string()))?;
        // SQLite quietly opens a write-protected file read-only; we must write.
        if connection
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| open_error(e.to_string()))?
        {
            return Err(open_error("it is read-only".into()));
        }
        let mut store = Self {
            connection,
            path,
            _lock: lock,
        };
        store.prepare()?;
        // WAL and shared-memory files get the main file's mode from SQLite;
        // make sure of the main file too, in case it pre-existed.
        let _ = std::fs::set_permissions(&store.path, std::fs::Permissions::from_mode(0o600));
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn prepare(&mut self) -> Result<(), StoreError> {
        let corrupt = |error: rusqlite::Error| StoreError::Corrupt {
            path: self.path.clone(),
            message: error.to_string(),
        };
        let check: String = self
            .connection
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                message: check,
            });
        }
        let version: i64 = self
            .connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(corrupt)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        // A new store gives pruned space back to the file system
        // incrementally; this only takes before the first table exists.
        if version == 0 {
            self.connection
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
                .map_err(|e| self.open_error(e))?;
        }
        let setup =
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";
        self.connection
            .execute_batch(setup)
            .map_err(|e| self.open_error(e))?;
        for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let to = from + 1;
            let sql = format!("BEGIN; {migration}; PRAGMA user_version = {to}; COMMIT;");
            self.connection
                .execute_batch(&sql)
                .map_err(|e| self.open_error(e))?;
            tracing::info!(store = %self.path.display(), from, to, "store schema migrated");
        }
        Ok(())
    }

    fn open_error(&self, error: rusqlite::Error) -> StoreError {
        StoreError::Open {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }

    /// Records a newly spawned incarnation.
    pub fn add_agent(
        &self,
        id: Uuid,
        config: &AgentConfig,
        created_at: &str,
    ) -> Result<(), StoreError> {
        let stored = serde_json::to_string(&StoredConfig::from(config)).map_err(write_error)?;
        self.connection
            .execute(
                "INSERT INTO agents (id, name, spawned, config, created_at, live)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(spawned), 0) + 1 FROM agents), ?3, ?4, 1)",
                params![id.to_string(), config.name.as_str(), stored, created_at],
            )
            .map_err(sql_write_error)?;
        Ok(())
    }

    /// Marks an incarnation shut down; its messages stay.
    pub fn end_agent(&self, id: Uuid) -> Result<(), StoreError> {
        self.connection
            .execute(
                "UPDATE agents SET live = 0 WHERE id = ?1",
                params![id.to_string()],
            )
            .map_err(sql_write_error)?;
        Ok(())
    }

    /// Appends a message to an incarnation and adds `usage` to its totals, in
    /// one transaction.
    pub fn add_message(
        &mut self,
        agent: Uuid,
        message: &Message,
        usage: Option<Usage>,
    ) -> Result<(), StoreError> {
        let metadata = serde_json::to_string(&message.metadata).map_err(write_error)?;
        let transaction = self.connection.transaction().map_err(sql_write_error)?;
        transaction
            .execute(
                "INSERT INTO messages (agent_id, id, sender, content, message_type, timestamp, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    agent.to_string(),
                    message.id.to_string(),
                    message.sender,
                    message.content,
                    message.message_type,
                    message.timestamp,
                    metadata
                ],
            )
            .map_err(sql_write_error)?;
        if let Some(usage) = usage {
            transaction
                .execute(
                    "UPDATE agents SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3 WHERE id = ?1",
                    params![agent.to_string(), usage.input_tokens as i64, usage.output_tokens as i64],
                )
                .map_err(sql_write_error)?;
        }
        transaction.commit().map_err(sql_write_error)
    }

    /// Deletes every message of every incarnation of `name`.
    pub fn clear_history(&self, name: &AgentName) -> Result<(), StoreError> {
        self.connection
            .execute(
                "DELETE FROM messages WHERE agent_id IN (SELECT id FROM agents WHERE name = ?1)",
                params![name.as_str()],
            )
            .map_err(sql_write_error)?;
        Ok(())
    }

    /// Ended conversations whose last message (or, with none, whose start)
    /// is older than `cutoff` (RFC 3339, UTC): what a prune removes. A live
    /// agent's conversation, suspended or not, is never among them.
    pub fn prunable(&self, cutoff: &str) -> Result<Vec<Prunable>, StoreError> {
        let read = |error: rusqlite::Error| StoreError::Read(error.to_string());
        let mut statement = self
            .connection
            .prepare(
                "SELECT a.id, a.name, COALESCE(MAX(m.timestamp), a.created_at) AS last, COUNT(m.seq)
                 FROM agents a LEFT JOIN messages m ON m.agent_id = a.id
                 WHERE a.live = 0
                 GROUP BY a.id
                 HAVING last < ?1
                 ORDER BY a.spawned",
            )
            .map_err(read)?;
        let rows = statement
            .query_map(params![cutoff], |row| {
                let id: String = row.get(0)?;
                Ok(Prunable {
                    id: Uuid::parse_str(&id).unwrap_or_else(|_| Uuid::nil()),
                    name: row.get(1)?,
                    last_at: row.get(2)?,
                    message_count: row.get::<_, i64>(3)?.max(0) as usize,
                })
            })
            .map_err(read)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(read)
    }

    /// Deletes these ended conversations (their messages, their index
    /// entries and their rows) in one transaction, then gives the space back.
    /// A store created before pruning existed is converted to incremental
    /// vacuum once, here (a full VACUUM: a one-time cost).
    pub fn prune(&mut self, ids: &[Uuid]) -> Result<(), StoreError> {
        let transaction = self.connection.transaction().map_err(sql_write_error)?;
        for id in ids {
            let id = id.to_string();
            transaction
                .execute("DELETE FROM messages WHERE agent_id = ?1", params![id])
                .map_err(sql_write_error)?;
            transaction
                .execute("DELETE FROM agents WHERE id = ?1 AND live = 0", params![id])
                .map_err(sql_write_error)?;
        }
        transaction.commit().map_err(sql_write_error)?;
        let mode: i64 = self
            .connection
            .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
            .map_err(sql_write_error)?;
        let reclaim = if mode == 2 {
            "PRAGMA incremental_vacuum;"
        } else {
            "PRAGMA auto_vacuum = INCREMENTAL; VACUUM;"
        };
        self.connection
            .execute_batch(reclaim)
            .map_err(sql_write_error)?;
        // Fold the log into the file and empty it, so the space is really back.
        self.connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql_write_error)
    }

    /// The bytes the store takes on disk: the file and its write-ahead log.
    pub fn size(&self) -> u64 {
        let len = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        len(&self.path) + len(Path::new(&wal))
    }

    /// Deletes the oldest messages of an incarnation beyond the newest `keep`.
    pub fn trim(&self, agent: Uuid, keep: usize) -> Result<(), StoreError> {
        self.connection
            .execute(
                "DELETE FROM messages WHERE agent_id = ?1 AND seq NOT IN
                   (SELECT seq FROM messages WHERE agent_id = ?1 ORDER BY seq DESC LIMIT ?2)",
                params![agent.to_string(), keep as i64],
            )
            .map_err(sql_write_error)?;
        Ok(())
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
                StoreError::Query(error.to_string())
            }
            _ => StoreError::Read(error.to_string()),
        };
        let mut statement = self
            .connection
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
                    filter.query,
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

    /// Every incarnation, in spawn order, with its messages in order.
    pub fn load(&self) -> Result<Vec<StoredAgent>, StoreError> {
        let read = |error: rusqlite::Error| StoreError::Corrupt {
            path: self.path.clone(),
            message: error.to_string(),
        };
        let mut agents: Vec<StoredAgent> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut rows = self
            .connection
            .prepare(
                "SELECT id, config, created_at, live, input_tokens, output_tokens FROM agents ORDER BY spawned",
            )
            .map_err(read)?;
        let mut cursor = rows.query([]).map_err(read)?;
        while let Some(row) = cursor.next().map_err(read)? {
            let id: String = row.get(0).map_err(read)?;
            let config: String = row.get(1).map_err(read)?;
            let stored: StoredConfig =
                serde_json::from_str(&config).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    message: format!("agent {id}: {e}"),
                })?;
            let uuid = Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                message: format!("agent id {id:?}: {e}"),
            })?;
            let config = stored
                .into_config()
                .map_err(|message| StoreError::Corrupt {
                    path: self.path.clone(),
                    message,
                })?;
            index.insert(id, agents.len());
            agents.push(StoredAgent {
                id: uuid,
                config,
                created_at: row.get(2).map_err(read)?,
                live: row.get::<_, i64>(3).map_err(read)? != 0,
                usage: Usage {
                    input_tokens: row.get::<_, i64>(4).map_err(read)?.max(0) as u64,
                    output_tokens: row.get::<_, i64>(5).map_err(read)?.max(0) as u64,
                },
                messages: Vec::new(),
            });
        }
        let mut rows = self
            .connection
            .prepare(
                "SELECT agent_id, id, sender, content, message_type, timestamp, metadata FROM messages ORDER BY seq",
            )
            .map_err(read)?;
        let mut cursor = rows.query([]).map_err(read)?;
        while let Some(row) = cursor.next().map_err(read)? {
            let agent_id: String = row.get(0).map_err(read)?;
            let Some(&slot) = index.get(&agent_id) else {
                continue;
            };
            let id: String = row.get(1).map_err(read)?;
            let metadata: String = row.get(6).map_err(read)?;
            agents[slot].messages.push(Message {
                id: Uuid::parse_str(&id).unwrap_or_else(|_| Uuid::nil()),
                sender: row.get(2).map_err(read)?,
                content: row.get(3).map_err(read)?,
                message_type: row.get(4).map_err(read)?,
                timestamp: row.get(5).map_err(read)?,
                metadata: serde_json::from_str(&metadata).unwrap_or_default(),
            });
        }
        Ok(agents)
    }
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
            message: e.to_string(),
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| StoreError::InUse {
        dir: dir.to_owned(),
        lock: path,
    })
}

fn write_error(error: serde_json::Error) -> StoreError {
    StoreError::Write(error.to_string())
}

fn sql_write_error(error: rusqlite::Error) -> StoreError {
    // SQLITE_FULL reads "database or disk is full", which says it all.
    StoreError::Write(error.to_string())
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut store = Store::open(dir.path()).unwrap();
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
        store
            .add_message(hits[0].conversation, &message, None)
            .unwrap();
        assert_eq!(find(&store, "brown").len(), 2);
        store.clear_history(&name).unwrap();
        assert!(find(&store, "brown").is_empty());
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
