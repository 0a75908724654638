//! Session tickets shared by every worker and every TLS listener, so that a client resumes
//! on whichever core the kernel hands its next connection to. The keys rotate every
//! [`ROTATION`] on a thread of their own (no worker ever generates keys); a ticket stays
//! good for one rotation after the one that issued it. The keys live in memory only: a
//! restart starts fresh ones, and clients fall back to a full handshake once.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

/// How long one ticket key issues tickets.
pub const ROTATION: Duration = Duration::from_secs(60 * 60);
/// Sessions the server-side cache keeps (TLS 1.2 clients that do not take tickets).
pub const SESSION_CACHE_ENTRIES: usize = 20 * 1024;

/// The current ticket key and the one before it.
struct Keys {
    current: Arc<dyn ProducesTickets>,
    previous: Option<Arc<dyn ProducesTickets>>,
}

struct RotatingTickets {
    keys: ArcSwap<Keys>,
}

impl std::fmt::Debug for RotatingTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotatingTickets")
    }
}

impl ProducesTickets for RotatingTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        (2 * ROTATION.as_secs()) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys.load().current.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        keys.current
            .decrypt(cipher)
            .or_else(|| keys.previous.as_ref()?.decrypt(cipher))
    }
}

/// The process's ticket keys, created (with their rotation thread) on first use. `None`
/// when the system cannot give random bytes for a key: tickets are then off.
pub fn ticketer() -> Option<Arc<dyn ProducesTickets>> {
    static TICKETS: OnceLock<Option<Arc<RotatingTickets>>> = OnceLock::new();
    let tickets = TICKETS.get_or_init(|| {
        let current = new_key()?;
        let tickets = Arc::new(RotatingTickets {
            keys: ArcSwap::from_pointee(Keys {
                current,
                previous: None,
            }),
        });
        let rotated = tickets.clone();
        let spawned = std::thread::Builder::new()
            .name("strait-tickets".into())
            .spawn(move || loop {
                std::thread::sleep(ROTATION);
                if let Some(next) = new_key() {
                    let previous = rotated.keys.load().current.clone();
                    rotated.keys.store(Arc::new(Keys {
                        current: next,
                        previous: Some(previous),
                    }));
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "ticket keys will not rotate: no thread for it");
        }
        Some(tickets)
    });
    tickets.clone().map(|t| t as Arc<dyn ProducesTickets>)
}

fn new_key() -> Option<Arc<dyn ProducesTickets>> {
    match rustls::crypto::aws_lc_rs::Ticketer::new() {
        Ok(key) => Some(key),
        Err(error) => {
            tracing::error!(%error, "no session ticket key");
            None
        }
    }
}

/// The server-side session cache every listener that enables it shares.
pub fn session_cache() -> Arc<dyn StoresServerSessions> {
    static CACHE: OnceLock<Arc<ServerSessionMemoryCache>> = OnceLock::new();
    CACHE
        .get_or_init(|| ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_outlives_one_rotation_but_not_two() {
        let first = new_key().unwrap();
        let tickets = RotatingTickets {
            keys: ArcSwap::from_pointee(Keys {
                current: first.clone(),
                previous: None,
            }),
        };
        let ticket = tickets.encrypt(b"session").unwrap();
        assert_eq!(tickets.decrypt(&ticket).as_deref(), Some(&b"session"[..]));
        let rotate = |t: &RotatingTickets| {
            let previous = t.keys.load().current.clone();
            t.keys.store(Arc::new(Keys {
                current: new_key().unwrap(),
                previous: Some(previous),
            }));
        };
        rotate(&tickets);
        assert_eq!(tickets.decrypt(&ticket).as_deref(), Some(&b"session"[..]));
        rotate(&tickets);
        assert_eq!(tickets.decrypt(&ticket), None);
    }
}
