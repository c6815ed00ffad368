//! Readiness and status for the service manager (`sd_notify(3)`): `READY=1`
//! once serving, `STATUS=` with the live agent count kept current,
//! `STOPPING=1` on the way out, and watchdog pings. Without `NOTIFY_SOCKET`
//! every call is a no-op, so the daemon calls them unconditionally.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

/// The `STATUS=` line for `systemctl status` and `systemctl show -p StatusText`.
pub fn status_text(live: usize) -> String {
    match live {
        1 => "serving 1 live agent".to_owned(),
        n => format!("serving {n} live agents"),
    }
}

pub fn ready(live: usize) {
    send(&[NotifyState::Ready, NotifyState::Status(&status_text(live))]);
}

/// Around a reload, as systemd documents for `Type=notify`: `RELOADING=1`
/// first, then `READY=1` when the new config is in effect (or was refused).
pub fn reloading() {
    send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Keeps `STATUS=` current as agents come and go, and pings the watchdog at
/// half its interval when the manager set one, until `stop`.
pub fn spawn_reporters(engine: &Engine, stop: &CancellationToken) {
    let mut live = engine.watch_live();
    let until = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = until.cancelled() => return,
                changed = live.changed() => if changed.is_err() { return },
            }
            let count = *live.borrow_and_update();
            send(&[NotifyState::Status(&status_text(count))]);
        }
    });
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(ping_watchdog(interval / 2, stop.clone()));
    }
}

/// The pings come from a runtime task, so a wedged runtime stops them and
/// the manager restarts the daemon.
async fn ping_watchdog(every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}
