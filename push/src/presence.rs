//! What every push node shares through Redis about clients: revoked token ids and each
//! user's open connections.
//!
//! * Revocation: a token whose `jti` has a key `strikeflow:revoked:<topic prefix><jti>` is
//!   refused at connect and at in-band refresh (an operator sets the key, with an expiry
//!   at the token's own `exp`: [`Presence::revoke`]).
//! * Per-user connections: each session holds a lease in the sorted set
//!   `strikeflow:conns:<topic prefix><sub>` (member `<node>:<session>`, score the lease's
//!   expiry in Redis time). A connect first drops expired leases, then admits only under
//!   the limit, in one script so two nodes cannot both take the last place. Leases are
//!   renewed while the session lives and removed when it ends; a node that dies leaves
//!   leases that expire within [`LEASE`].
//!
//! Redis is not needed to serve: when it is down (or slow) a check gives up after
//! [`CHECK_TIMEOUT`], the node counts the user's connections on its own only, revocation
//! goes unchecked, and Redis is not asked again for [`RETRY_AFTER`] so connects stay fast.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::Claims;
use crate::hub::ClientId;
use crate::redis_link::{RedisLink, RedisLinkError};
use crate::stats;

/// Prefix of revoked-token keys.
pub const REVOKED_PREFIX: &str = "strikeflow:revoked:";
/// Prefix of the per-user connection sets.
pub const CONNECTIONS_PREFIX: &str = "strikeflow:conns:";
/// How long a connection lease lives without renewal.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often live sessions renew their leases.
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// Longest a connect or refresh waits for Redis before going on without it.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed check, how long Redis is left alone.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Most leases renewed in one script call.
const RENEW_BATCH: usize = 500;

/// Revoked? Then admit under the limit. Returns -1 (revoked), 0 (over the limit), 1.
const ADMIT: &str = r"
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// Renew leases: KEYS[i] holds member ARGV[i + 1]; ARGV[1] is the lease in ms.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
";

/// The outcome of admitting a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not revoked, under the user's limit; a lease is held until [`Presence::release`].
    Admitted,
    /// The token's `jti` is revoked.
    Revoked,
    /// The user already holds the limit across all nodes.
    OverLimit,
    /// Redis could not be asked; the node-local count alone applies, revocation unchecked.
    Unchecked,
}

/// Revocation and per-user leases on the shared Redis.
pub struct Presence {
    link: Arc<RedisLink>,
    namespace: String,
    node: String,
    /// Leases this node holds: member → user.
    leases: Mutex<HashMap<String, String>>,
    down_until: Mutex<Option<Instant>>,
}

impl Presence {
    /// Presence on `link` with keys under `namespace` (the topic prefix); this node gets a
    /// fresh id so its lease members never collide with another node's.
    pub fn new(link: Arc<RedisLink>, namespace: &str) -> Presence {
        Presence {
            link,
            namespace: namespace.to_owned(),
            node: format!("node-{}", crate::auth::fresh_jti()),
            leases: Mutex::new(HashMap::new()),
            down_until: Mutex::new(None),
        }
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The revocation key of `jti`.
    pub fn revoked_key(&self, jti: &str) -> String {
        format!("{REVOKED_PREFIX}{}{jti}", self.namespace)
    }

    /// The connection set of `user`.
    pub fn connections_key(&self, user: &str) -> String {
        format!("{CONNECTIONS_PREFIX}{}{user}", self.namespace)
    }

    fn member(&self, id: ClientId) -> String {
        format!("{}:{id}", self.node)
    }

    /// Whether Redis may be asked now (it has not failed within [`RETRY_AFTER`]).
    fn usable(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.is_none_or(|until| Instant::now() >= until)
    }

    fn failed(&self, check: &'static str, error: &dyn std::fmt::Display) {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + RETRY_AFTER);
        metrics::counter!(stats::REDIS_FALLBACKS, "check" => check).increment(1);
        tracing::warn!(%error, check, "redis unavailable: per-user limit counted on this node only, revocation unchecked");
    }

    /// Admit session `id` of `claims.sub`: refused if its `jti` is revoked or the user holds
    /// `limit` connections across all nodes.
    pub async fn admit(&self, id: ClientId, claims: &Claims, limit: usize) -> Admission {
        if !self.usable() {
            metrics::counter!(stats::REDIS_FALLBACKS, "check" => "connect").increment(1);
            return Admission::Unchecked;
        }
        let member = self.member(id);
        let revoked_key = claims
            .jti
            .as_deref()
            .map(|jti| self.revoked_key(jti))
            .unwrap_or_else(|| self.revoked_key(""));
        let check_revoked = if claims.jti.is_some() { "1" } else { "0" };
        let users_key = self.connections_key(&claims.sub);
        let lease_ms = LEASE.as_millis() as u64;
        let run = self.link.query(async |conn| {
            redis::cmd("EVAL")
                .arg(ADMIT)
                .arg(2)
                .arg(&revoked_key)
                .arg(&users_key)
                .arg(limit)
                .arg(&member)
                .arg(lease_ms)
                .arg(check_revoked)
                .query_async::<i64>(conn)
                .await
        });
        match tokio::time::timeout(CHECK_TIMEOUT, run).await {
            Ok(Ok(1)) => {
                self.leases().insert(member, claims.sub.clone());
                Admission::Admitted
            }
            Ok(Ok(0)) => Admission::OverLimit,
            Ok(Ok(_)) => Admission::Revoked,
            Ok(Err(err)) => {
                self.failed("connect", &err);
                Admission::Unchecked
            }
            Err(_) => {
                self.failed("connect", &"timed out");
                Admission::Unchecked
            }
        }
    }

    /// Whether `jti` is revoked; `None` when Redis cannot say (the caller goes on).
    pub async fn is_revoked(&self, jti: &str) -> Option<bool> {
        if !self.usable() {
            metrics::counter!(stats::REDIS_FALLBACKS, "check" => "refresh").increment(1);
            return None;
        }
        let key = self.revoked_key(jti);
        let run = self.link.query(async |conn| {
            redis::cmd("EXISTS")
                .arg(&key)
                .query_async::<i64>(conn)
                .await
        });
        match tokio::time::timeout(CHECK_TIMEOUT, run).await {
            Ok(Ok(n)) => Some(n > 0),
            Ok(Err(err)) => {
                self.failed("refresh", &err);
                None
            }
            Err(_) => {
                self.failed("refresh", &"timed out");
                None
            }
        }
    }

    /// Give back the lease of session `id` (if it holds one).
    pub async fn release(&self, id: ClientId) {
        let member = self.member(id);
        let Some(user) = self.leases().remove(&member) else {
            return;
        };
        let key = self.connections_key(&user);
        let run = self.link.query(async |conn| {
            redis::cmd("ZREM")
                .arg(&key)
                .arg(&member)
                .query_async::<i64>(conn)
                .await
        });
        if let Ok(Err(err)) = tokio::time::timeout(CHECK_TIMEOUT, run).await {
            // The lease expires by itself.
            tracing::debug!(error = %err, "releasing a connection lease failed");
        }
    }

    /// Mark `jti` revoked until `exp` (the token's own expiry; at least a minute from now).
    /// Exists for operators' tooling and tests; any Redis client can do the same with
    /// `SET strikeflow:revoked:<jti> 1 EXAT <exp>`.
    pub async fn revoke(&self, jti: &str, exp: u64) -> Result<(), RedisLinkError> {
        let key = self.revoked_key(jti);
        let at_least = crate::auth::now_secs().saturating_add(60);
        let until = exp.clamp(at_least, i64::MAX as u64 / 1000);
        self.link
            .query(async |conn| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("EXAT")
                    .arg(until)
                    .query_async::<()>(conn)
                    .await
            })
            .await
    }

    /// Renew this node's leases every [`RENEW_EVERY`] until `shutdown`.
    pub async fn run_renewer(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval_at(Instant::now() + RENEW_EVERY, RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.renew().await {
                tracing::warn!(error = %err, "renewing connection leases failed; retrying next round");
            }
        }
    }

    /// Renew every lease this node holds, now ([`Presence::run_renewer`] calls it every
    /// 20 s).
    pub async fn renew(&self) -> Result<(), RedisLinkError> {
        let leases: Vec<(String, String)> = self
            .leases()
            .iter()
            .map(|(member, user)| (self.connections_key(user), member.clone()))
            .collect();
        let lease_ms = LEASE.as_millis() as u64;
        for batch in leases.chunks(RENEW_BATCH) {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(RENEW).arg(batch.len());
            for (key, _) in batch {
                cmd.arg(key);
            }
            cmd.arg(lease_ms);
            for (_, member) in batch {
                cmd.arg(member);
            }
            self.link
                .query(async |conn| cmd.query_async::<i64>(conn).await)
                .await?;
        }
        Ok(())
    }
}
