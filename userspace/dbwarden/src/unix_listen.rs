//! The daemon's Unix listener for agents: the resolver socket every intercepted Unix connect
//! is rewritten to (`<runtime_dir>/agents/resolver.sock`), and the settings the kernel side
//! and the resolver get from the configuration.
//!
//! The socket file is mode 0666 in 0755 directories: the kernel resolves the rewritten path
//! with the *agent's* credentials, so an unprivileged agent must be able to connect. Anyone
//! else who connects directly gets nothing: without a kernel record (written only for
//! sockets of controlled cgroups) a connection is refused, as on TCP.

use std::{
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::PathBuf,
};

use anyhow::{Context, Result};

use crate::{
    config::Settings,
    intercept::unix::{UnixMode, UnixSettings},
    unix_resolve::ResolveSettings,
};

/// Path of the resolver listener.
pub fn resolver_path(settings: &Settings) -> PathBuf {
    settings.runtime_dir.join("agents").join("resolver.sock")
}

/// The control socket, which no controlled process may reach.
pub fn control_path(settings: &Settings) -> PathBuf {
    settings
        .runtime_dir
        .join(dbwarden_approvals::control::SOCKET_FILE)
}

/// Binds the resolver listener (none when Unix interception is off).
///
/// # Errors
/// The directory or the socket cannot be created.
pub fn bind(settings: &Settings) -> Result<Option<tokio::net::UnixListener>> {
    if settings.unix.mode == UnixMode::Off {
        return Ok(None);
    }
    let path = resolver_path(settings);
    let dir = path.parent().expect("resolver path has a parent");
    for d in [settings.runtime_dir.as_path(), dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", d.display()))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        if !m.file_type().is_socket() {
            anyhow::bail!("{} exists and is not a socket", path.display());
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale listener {}", path.display()))?;
    }
    let l = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding the agent listener {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("chmod 0666 {}", path.display()))?;
    Ok(Some(l))
}

/// What the kernel side needs.
pub fn kernel_settings(settings: &Settings) -> UnixSettings {
    let mut deny: Vec<PathBuf> = settings
        .unix
        .sockets
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    deny.push(control_path(settings));
    UnixSettings {
        mode: settings.unix.mode,
        resolver: resolver_path(settings),
        deny,
        deny_db_patterns: settings.unix.deny_db_patterns,
    }
}

/// What the resolver needs.
pub fn resolve_settings(settings: &Settings) -> ResolveSettings {
    ResolveSettings {
        databases: settings.unix.sockets.clone(),
        forbidden: vec![control_path(settings), resolver_path(settings)],
        db_patterns: settings.unix.deny_db_patterns,
    }
}
