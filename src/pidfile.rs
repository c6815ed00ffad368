//! The PID file: holds the daemon's PID under an exclusive `flock` for the
//! daemon's whole life. The lock, not the file's existence, is what says a
//! daemon runs, so a file left by a killed daemon is simply taken over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("another orchestration daemon is already running (pid {pid}, PID file {})", path.display())]
    Running { pid: String, path: PathBuf },
    #[error("cannot use PID file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

pub struct PidFile {
    path: PathBuf,
    /// The locked file's inode: only that file is removed at the end, not
    /// one a later `acquire` created at the same path (a re-created runtime
    /// dir).
    inode: u64,
    // Held only for its lock; released when dropped.
    _lock: Flock<File>,
}

impl PidFile {
    /// Takes the lock and writes our PID, or reports who holds it.
    pub fn acquire(path: &Path) -> Result<Self, PidFileError> {
        let io_error = |source| PidFileError::Io {
            path: path.to_owned(),
            source,
        };
        // Retry while the file we locked is not the one at `path`: a daemon
        // that was exiting may have unlinked it between our open and lock.
        loop {
            let file = open_lock_file(path).map_err(io_error)?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    // A daemon that has just won the lock has not written
                    // its PID yet: the kernel still knows who holds it.
                    let pid = match pid.trim() {
                        "" => lock_holder(path).map_or("unknown".into(), |p| p.to_string()),
                        pid => pid.to_owned(),
                    };
                    return Err(PidFileError::Running {
                        pid,
                        path: path.to_owned(),
                    });
                }
                Err((_, errno)) => return Err(io_error(errno.into())),
            };
            let locked_inode = lock.metadata().map_err(io_error)?.ino();
            match fs::metadata(path) {
                Ok(meta) if meta.ino() == locked_inode => {}
                _ => continue,
            }
            lock.set_len(0).map_err(io_error)?;
            lock.rewind().map_err(io_error)?;
            writeln!(lock, "{}", std::process::id()).map_err(io_error)?;
            lock.sync_all().map_err(io_error)?;
            return Ok(Self {
                path: path.to_owned(),
                inode: locked_inode,
                _lock: lock,
            });
        }
    }
}

/// Opens (creating it 0600, never truncating) a file that is only a lock,
/// or holds what its lock's owner writes.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Unlink while still holding the lock, so no one can lock the old file
        // and think they own the path (see the inode check in `acquire`).
        if fs::metadata(&self.path).is_ok_and(|meta| meta.ino() == self.inode) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether a daemon holds the PID file's lock, and its PID if it wrote one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Nobody,
    Daemon(Option<nix::unistd::Pid>),
}

pub fn holder(path: &Path) -> Holder {
    let Ok(file) = File::open(path) else {
        return Holder::Nobody;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim().parse::<i32>().ok().filter(|&p| p > 0);
            Holder::Daemon(pid.map(nix::unistd::Pid::from_raw))
        }
        _ => Holder::Nobody,
    }
}

/// The process holding an `flock` on `lock`, from `/proc/locks` (Linux;
/// `None` elsewhere or when nobody holds it).
pub fn lock_holder(lock: &Path) -> Option<u32> {
    let meta = fs::metadata(lock).ok()?;
    let dev = meta.dev();
    // The kernel writes the device as `major:minor` in two-digit hex.
    let file = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino()
    );
    let locks = fs::read_to_string("/proc/locks").ok()?;
    // `1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF`; a waiter's line has `->` second.
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&file.as_str()) {
            return None;
        }
        fields.get(4)?.parse().ok()
    })
}
