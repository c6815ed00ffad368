//! Reload without a restart (SIGHUP, `POST /reload`, `serve --reload`,
//! `systemctl --user reload`): re-read the config file and the environment
//! file and put them in effect — provider settings, profiles, keys, limits,
//! the idle timeout and the log level — or, if either does not load, change
//! nothing and say why. Replies in flight finish with the settings they
//! started with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::Control;
use crate::config::Config;
use crate::engine::{Engine, lock};
use crate::providers::{Keys, ProviderSettings};
use crate::wire::{ConfigStatus, Reloaded};

use super::logging;
use super::server::{Host, ServeConfig};

pub struct Reloader {
    config_file: PathBuf,
    environment_file: PathBuf,
    /// The environment the environment file is laid over, as at start.
    environment: HashMap<String, String>,
    engine: Engine,
    echo_delay: Duration,
    host: Arc<dyn Host>,
    status: Mutex<ConfigStatus>,
    /// One reload at a time: a SIGHUP and a `serve --reload` do not interleave.
    running: Mutex<()>,
}

impl Reloader {
    pub fn new(config: &ServeConfig, engine: Engine, host: Arc<dyn Host>) -> Arc<Self> {
        let status = ConfigStatus {
            path: config.config_file.display().to_string(),
            loaded_at: engine.clock().now_rfc3339(),
            last_reload_error: None,
        };
        Arc::new(Self {
            config_file: config.config_file.clone(),
            environment_file: config.environment_file.clone(),
            environment: config.environment.clone(),
            engine,
            echo_delay: config.echo_delay,
            host,
            status: Mutex::new(status),
            running: Mutex::new(()),
        })
    }

    fn try_reload(&self) -> Result<Reloaded, String> {
        let config = Config::load(&self.config_file).map_err(|e| e.to_string())?;
        let keys =
            Keys::load(&self.environment, &self.environment_file).map_err(|e| e.to_string())?;
        let level =
            logging::directives(keys.setting("RUST_LOG"), config.daemon.log_level.as_deref());
        let settings =
            ProviderSettings::new(config, keys, self.echo_delay).map_err(|e| e.to_string())?;
        // Everything loaded: from here on the new settings are in effect.
        if let Err(error) = self.host.set_log_level(&level) {
            tracing::warn!(%error, "keeping the old log level");
        }
        let report = self.engine.reload(settings);
        let status = ConfigStatus {
            path: self.config_file.display().to_string(),
            loaded_at: self.engine.clock().now_rfc3339(),
            last_reload_error: None,
        };
        *lock(&self.status) = status.clone();
        Ok(Reloaded {
            status: "reloaded".into(),
            config: status,
            revived: report.revived,
            suspended: report.suspended.into_iter().collect(),
        })
    }
}

impl Control for Reloader {
    fn reload(&self) -> Result<Reloaded, String> {
        let _one_at_a_time = lock(&self.running);
        self.host.reloading();
        let result = self.try_reload();
        match &result {
            Ok(reloaded) => tracing::info!(
                config = %reloaded.config.path,
                revived = reloaded.revived.len(),
                suspended = reloaded.suspended.len(),
                "reloaded the config and environment files"
            ),
            Err(error) => {
                tracing::error!(%error, "reload failed; the old config stays in effect");
                lock(&self.status).last_reload_error = Some(error.clone());
            }
        }
        self.host.reloaded(self.engine.live_count());
        result
    }

    fn config_status(&self) -> ConfigStatus {
        lock(&self.status).clone()
    }
}
