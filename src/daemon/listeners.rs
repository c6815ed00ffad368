//! The daemon's listeners: the Unix control socket and the loopback TCP
//! listener, and the per-connection HTTP service on top of them.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use crate::api::{self, ApiContext, Transport};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "another daemon is already answering on {}; stop it first (orchestration serve --stop) or use another --socket",
        .0.display()
    )]
    SocketInUse(PathBuf),
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot listen on {}: {source}", path.display())]
    Unix { path: PathBuf, source: io::Error },
    #[error(
        "cannot listen on {addr}: {source}; pick another with --port or --listen, or pass --no-tcp"
    )]
    Tcp { addr: SocketAddr, source: io::Error },
}

/// The Unix socket this daemon created; the file is removed when dropped.
pub struct UnixSocket {
    pub listener: UnixListener,
    path: PathBuf,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket (mode 0600), first clearing a stale socket file
/// left by a daemon that died. A socket someone still answers on is left alone.
pub fn bind_unix(path: &Path) -> Result<UnixSocket, ListenError> {
    clear_stale_socket(path)?;
    let unix_error = |source| ListenError::Unix {
        path: path.to_owned(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(unix_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(unix_error)?;
    Ok(UnixSocket {
        listener,
        path: path.to_owned(),
    })
}

fn clear_stale_socket(path: &Path) -> Result<(), ListenError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenError::SocketInUse(path.to_owned())),
        Err(_) => {
            tracing::info!(socket = %path.display(), "removing stale socket file");
            std::fs::remove_file(path).map_err(|source| ListenError::Unix {
                path: path.to_owned(),
                source,
            })
        }
    }
}

pub async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Tcp { addr, source })
}

/// Serves one connection with the API until it closes, registered with
/// `graceful` so shutdown can drain it.
pub fn serve_connection<S>(
    ctx: Arc<ApiContext>,
    transport: Transport,
    stream: S,
    graceful: &GracefulShutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(api::handle(ctx, transport, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "connection ended with an error");
        }
    });
}
