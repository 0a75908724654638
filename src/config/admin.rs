//! `[admin]`: where the admin API listens, its token and its state file; the serde
//! mirror, the runtime type and the validation. Read at startup only.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::settings::Ctx;

const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// `[admin]`; absent, the API listens on the loopback default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    pub enabled: Option<bool>,
    pub listen: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub state_file: Option<Spanned<String>>,
}

/// The admin API's listener. Read at startup only: a reload does not move it.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None` when `admin.enabled = false`.
    pub listen: Option<SocketAddr>,
    /// Bearer token every admin request must carry, when set. Required for a
    /// non-loopback `listen`.
    pub token: Option<String>,
    /// Where endpoints registered through the API are kept across restarts; relative paths
    /// resolve against the config file's directory. `None`: kept in memory only.
    pub state_file: Option<std::path::PathBuf>,
}

/// `[admin]`: a token of at least 16 characters, and one whenever `listen` is not a
/// loopback address (the API can change what is served).
pub(crate) fn build(ctx: &mut Ctx, admin: Option<FileAdmin>) -> Option<AdminConfig> {
    let Some(admin) = admin else {
        let listen = DEFAULT_ADMIN_LISTEN.parse().ok();
        return Some(AdminConfig {
            listen,
            token: None,
            state_file: None,
        });
    };
    let token = admin.token.as_ref().map(|t| t.get_ref().clone());
    if let Some(t) = &admin.token {
        if t.get_ref().len() < 16 {
            ctx.error(t.span(), "admin.token", "must be at least 16 characters");
        }
    }
    let listen = match (&admin.enabled, &admin.listen) {
        (Some(false), _) => None,
        (_, None) => DEFAULT_ADMIN_LISTEN.parse().ok(),
        (_, Some(addr)) => {
            let parsed = ctx.socket_addr(addr, "admin.listen")?;
            if !parsed.ip().is_loopback() && token.is_none() {
                ctx.error(
                    addr.span(),
                    "admin.listen",
                    format!("\"{parsed}\" is not a loopback address: set admin.token to expose the admin API"),
                );
            }
            Some(parsed)
        }
    };
    let state_file = admin
        .state_file
        .as_ref()
        .map(|f| ctx.relative_path(f.get_ref()));
    Some(AdminConfig {
        listen,
        token,
        state_file,
    })
}
