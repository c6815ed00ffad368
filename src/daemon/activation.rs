//! Sockets a service manager opened for us: systemd socket activation
//! (`LISTEN_FDS`, via `listenfd`) or, on macOS, launchd's `Sockets`. Each is
//! told apart by its address family. They must be taken before any thread
//! exists, because taking them edits the environment.

use std::io;
use std::os::unix::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error(
        "socket activation passed fd {index} (of {count}), which is neither a Unix nor a TCP stream socket"
    )]
    Unknown { index: usize, count: usize },
    #[error("socket activation passed more than one {0} socket; orchestration serves one of each")]
    Duplicate(&'static str),
    #[error("cannot use the socket passed by the service manager: {0}")]
    Io(#[from] io::Error),
}

/// The listeners a service manager handed over; at least one is set.
#[derive(Debug)]
pub struct Inherited {
    pub unix: Option<UnixListener>,
    pub tcp: Option<std::net::TcpListener>,
}

/// Takes the sockets passed to this process, if it was socket-activated.
/// They are made non-blocking here, as tokio requires. Call this before the
/// runtime starts: `listenfd` removes `LISTEN_PID`/`LISTEN_FDS`, and
/// `LISTEN_FDNAMES` goes too, so nothing the daemon might start sees them.
pub fn take() -> Result<Option<Inherited>, ActivationError> {
    let mut fds = listenfd::ListenFd::from_env();
    // SAFETY: called from `daemon::serve` before the runtime (or any other
    // thread) exists, so nothing can read the environment concurrently.
    unsafe { std::env::remove_var("LISTEN_FDNAMES") };
    if let Some(inherited) = launchd::take()? {
        return Ok(Some(inherited));
    }
    let count = fds.len();
    if count == 0 {
        return Ok(None);
    }
    let mut inherited = Inherited {
        unix: None,
        tcp: None,
    };
    for index in 0..count {
        if let Ok(Some(listener)) = fds.take_unix_listener(index) {
            set_once(&mut inherited.unix, listener, "Unix")?;
        } else if let Ok(Some(listener)) = fds.take_tcp_listener(index) {
            set_once(&mut inherited.tcp, listener, "TCP")?;
        } else {
            return Err(ActivationError::Unknown { index, count });
        }
    }
    inherited.make_nonblocking()?;
    Ok(Some(inherited))
}

fn set_once<T>(slot: &mut Option<T>, value: T, kind: &'static str) -> Result<(), ActivationError> {
    if slot.replace(value).is_some() {
        return Err(ActivationError::Duplicate(kind));
    }
    Ok(())
}

impl Inherited {
    fn make_nonblocking(&self) -> io::Result<()> {
        if let Some(unix) = &self.unix {
            unix.set_nonblocking(true)?;
        }
        if let Some(tcp) = &self.tcp {
            tcp.set_nonblocking(true)?;
        }
        Ok(())
    }
}

/// Everywhere but macOS there is no launchd to ask.
#[cfg(not(target_os = "macos"))]
mod launchd {
    use super::{ActivationError, Inherited};

    pub fn take() -> Result<Option<Inherited>, ActivationError> {
        Ok(None)
    }
}

/// launchd passes the sockets named in the plist's `Sockets` dictionary
/// (`packaging/launchd/…plist`: `Unix` and `Tcp`) through
/// `launch_activate_socket(3)`. Not built or tested on this project's Linux
/// CI; kept to the one documented call.
#[cfg(target_os = "macos")]
mod launchd {
    use std::ffi::CStr;
    use std::os::fd::FromRawFd;
    use std::os::raw::{c_char, c_int};

    use nix::libc;

    use super::{ActivationError, Inherited};

    unsafe extern "C" {
        fn launch_activate_socket(
            name: *const c_char,
            fds: *mut *mut c_int,
            count: *mut libc::size_t,
        ) -> c_int;
    }

    pub fn take() -> Result<Option<Inherited>, ActivationError> {
        let unix = first_fd(c"Unix")?
            .map(|fd| unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) });
        let tcp = first_fd(c"Tcp")?.map(|fd| unsafe { std::net::TcpListener::from_raw_fd(fd) });
        if unix.is_none() && tcp.is_none() {
            return Ok(None);
        }
        let inherited = Inherited { unix, tcp };
        inherited.make_nonblocking()?;
        Ok(Some(inherited))
    }

    /// The first fd launchd holds under `name`; `None` when not launched
    /// by launchd (ESRCH) or the plist has no such socket (ENOENT).
    fn first_fd(name: &CStr) -> Result<Option<c_int>, ActivationError> {
        let mut fds: *mut c_int = std::ptr::null_mut();
        let mut count: libc::size_t = 0;
        // SAFETY: launchd allocates `fds` with malloc; we read `count`
        // entries and free it once.
        let error = unsafe { launch_activate_socket(name.as_ptr(), &mut fds, &mut count) };
        if error == libc::ESRCH || error == libc::ENOENT {
            return Ok(None);
        }
        if error != 0 {
            return Err(std::io::Error::from_raw_os_error(error).into());
        }
        let first = (count > 0 && !fds.is_null()).then(|| unsafe { *fds });
        unsafe { libc::free(fds.cast()) };
        Ok(first)
    }
}
