//! The claims push reads from a verified token, and channel-pattern matching.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The claims push uses from a verified token. `iss`, `aud`, `nbf` and `iat` are checked
/// during verification and not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the client is: logged, limited in connections, and the same across in-band
    /// refreshes.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// The token's id, by which it can be revoked; tokens without one cannot be.
    #[serde(default)]
    pub jti: Option<String>,
    /// Channel patterns the client may subscribe to, e.g. `"bars.*"`, `"ticks.NIFTY*"`,
    /// `"*"`. `*` matches any run of characters. Absent or empty means no channel at all.
    #[serde(default)]
    pub channels: Vec<String>,
}

impl Claims {
    /// Whether these claims allow subscribing to `channel`.
    pub fn allows(&self, channel: &str) -> bool {
        self.channels
            .iter()
            .any(|pattern| pattern_matches(pattern, channel))
    }

    /// How long until the token expires (zero if it already has). Never overflows: an `exp`
    /// far in the future gives a long duration, which callers cap before adding it to an
    /// instant.
    pub fn remaining(&self) -> Duration {
        Duration::from_secs(self.exp.saturating_sub(now_secs()))
    }
}

/// Glob match where `*` matches any (possibly empty) run of characters and everything else
/// matches itself.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0usize, 0usize);
    // Position of the last `*` seen and the text position it is currently absorbing up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token id unique to this process and moment (time, process id and a counter); good
/// enough for development tokens, whose only use of it is revocation.
pub(crate) fn fresh_jti() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
