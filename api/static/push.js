// The push WebSocket client (docs/protocol.md): first-message authentication, channel
// subscriptions remembered across reconnects, and resumption with `since` {epoch, seq} so a
// dropped connection continues exactly where it stopped (or from a fresh snapshot when push
// no longer holds the missed messages, `"recovered": false`).
//
// Authentication is the protocol's first-message form: the socket offers `strikeflow.v1`
// and no token, then sends {"op":"auth","token":…}. Unlike a token in the subprotocol
// (`bearer.<jwt>`), whose refusal is an HTTP 401 a browser reports only as "closed (1006)",
// a refused first message closes the socket with 4003/4005 and the reason (token expired,
// invalid signature, revoked), which the sign-in form shows; and the token stays out of
// URLs and request headers.

/** Close codes after which reconnecting with the same token cannot help. */
const AUTH_CLOSES = new Set([4001, 4003, 4005]);
/** Longest wait between reconnection attempts. */
const MAX_BACKOFF_MS = 10_000;
/** An application-level ping this often; no message at all for STALE_MS means a dead link. */
const PING_MS = 10_000;
const STALE_MS = 25_000;

export class PushClient {
  /**
   * @param {object} o
   * @param {string} o.url     ws:// or wss:// URL of push's /ws
   * @param {string} o.token   the JWT
   * @param {(state: string, detail: string) => void} o.onStatus
   * @param {(list: object) => void} o.onList      the `list` catalogue
   * @param {(message: string) => void} [o.onError] `error` replies
   */
  constructor({ url, token, onStatus, onList, onError }) {
    this.url = url;
    this.token = token;
    this.onStatus = onStatus;
    this.onList = onList;
    this.onError = onError || (() => {});
    /** channel → {handler, pos: {epoch, seq} | null} */
    this.channels = new Map();
    /** channel → the last `subscribed` reply (tests and the status tooltip read it). */
    this.subscribed = new Map();
    this.ws = null;
    this.state = "offline";
    this.attempt = 0;
    this.stopped = true;
    this.everLive = false;
    this.timers = { retry: 0, ping: 0 };
    this.lastMessageAt = 0;
    this.received = 0;
    this.reconnects = 0;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  /** Closes for good (sign-out). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    this.detach(1000, "signed out");
    this.setState("offline", "signed out");
  }

  /**
   * Subscribes (now if authenticated, else once authenticated) and remembers the channel
   * for reconnects. `handler(message)` gets every data message in order; a message with
   * `snapshot: true` carries the channel's whole state.
   */
  subscribe(channel, handler) {
    this.channels.set(channel, { handler, pos: null });
    if (this.state === "live") this.send({ op: "subscribe", channel });
  }

  unsubscribe(channel) {
    if (!this.channels.delete(channel)) return;
    this.subscribed.delete(channel);
    if (this.state === "live") this.send({ op: "unsubscribe", channel });
  }

  /** Asks for the catalogue (answered through onList). */
  list() {
    this.wantList = true;
    if (this.state === "live") this.send({ op: "list" });
  }

  /** Drops the connection as a network failure would (for tests and the status menu). */
  drop() {
    if (this.ws) this.lost(4998, "dropped by the page");
  }

  // --- internals ---------------------------------------------------------------------

  setState(state, detail = "") {
    this.state = state;
    this.onStatus(state, detail);
  }

  send(doc) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(doc));
  }

  open() {
    clearTimeout(this.timers.retry);
    this.setState(this.attempt === 0 && !this.everLive ? "connecting" : "reconnecting",
      this.attempt ? `attempt ${this.attempt + 1}` : "");
    let ws;
    try {
      ws = new WebSocket(this.url, ["strikeflow.v1"]);
    } catch (err) {
      this.setState("auth-failed", `bad push URL: ${err.message}`);
      this.stopped = true;
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.setState("authenticating");
      this.send({ op: "auth", token: this.token });
    };
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = (ev) => this.lost(ev.code, ev.reason);
    ws.onerror = () => {}; // always followed by close
  }

  /** Forgets the current socket (its late events are ignored) and closes it. */
  detach(code, reason) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
  }

  lost(code, reason) {
    clearInterval(this.timers.ping);
    this.detach(code >= 3000 && code <= 4999 ? code : 1000, "");
    if (this.stopped) return;
    if (AUTH_CLOSES.has(code)) {
      this.stopped = true;
      this.setState("auth-failed", reason || `closed (${code})`);
      return;
    }
    // First retry at once (a resumed channel misses the fewest messages), then back off
    // exponentially with jitter; a refusal for load (4009, 4029) starts at 5 s.
    const base = code === 4009 || code === 4029 ? 5_000 : this.attempt === 0 ? 0 : 500 * 2 ** (this.attempt - 1);
    const delay = Math.min(MAX_BACKOFF_MS, base) * (this.attempt === 0 && base === 0 ? 1 : 0.75 + Math.random() * 0.5);
    this.attempt += 1;
    this.reconnects += 1;
    const why = reason || (code === 1006 ? "connection lost" : `closed (${code})`);
    this.setState("reconnecting", `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.timers.retry = setTimeout(() => this.open(), delay);
  }

  onMessage(text) {
    this.lastMessageAt = Date.now();
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    switch (msg.type) {
      case "authenticated":
        this.authenticated();
        return;
      case "subscribed": {
        this.subscribed.set(msg.channel, msg);
        const entry = this.channels.get(msg.channel);
        // Not recovered: the snapshot that follows replaces what the channel had.
        if (entry && msg.recovered === false) entry.pos = null;
        return;
      }
      case "list":
        this.onList(msg);
        return;
      case "pong":
        return;
      case "error":
        this.onError(msg.message);
        return;
      default:
        break;
    }
    const entry = this.channels.get(msg.channel);
    if (!entry || typeof msg.seq !== "number") return; // unsubscribed meanwhile
    const pos = entry.pos;
    if (!msg.snapshot && pos && pos.epoch === msg.epoch && msg.seq <= pos.seq) return;
    entry.pos = { epoch: msg.epoch, seq: msg.seq };
    this.received += 1;
    entry.handler(msg);
  }

  authenticated() {
    const first = this.state !== "live";
    this.attempt = 0;
    this.everLive = true;
    this.setState("live");
    if (!first) return; // an in-band refresh
    for (const [channel, entry] of this.channels) {
      const doc = { op: "subscribe", channel };
      if (entry.pos) doc.since = entry.pos;
      this.send(doc);
    }
    if (this.wantList) this.send({ op: "list" });
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      if (Date.now() - this.lastMessageAt > STALE_MS) {
        this.lost(4000, "no data from push");
      } else {
        this.send({ op: "ping" });
      }
    }, PING_MS);
  }
}
