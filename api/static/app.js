// strikeflow dashboard: sign-in, pickers, and the wiring between the push WebSocket
// (live chain, moneyness, bars, indicators), the REST API (chart history, when the token is
// accepted there) and the views. Plain ES modules, no build step; nothing is fetched from
// anywhere but this server and push (docs/dashboard.md).

import { PushClient } from "./push.js";
import { ChainTable } from "./chain.js";
import { CandleChart, MoneynessChart, indicatorKey } from "./charts.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "strikeflow.token";
const PUSH_KEY = "strikeflow.push";
const INDICATORS_KEY = "strikeflow.indicators";
/** Indicators drawn until the user picks: the fastest EMA and RSI. */
const DEFAULT_INDICATORS = ["ema", "rsi"];
const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const HISTORY_SECS = 86_400;

const ui = {
  overlay: $("signin"), form: $("signin-form"), token: $("token"), pushUrl: $("push-url"),
  error: $("signin-error"), signinButton: $("signin-button"), signout: $("signout"),
  underlying: $("underlying"), expiry: $("expiry"), symbol: $("symbol"), symbols: $("symbols"),
  timeframe: $("timeframe"), status: $("status"), statusText: $("status-text"),
  chainName: $("chain-name"), candlesName: $("candles-name"), indicators: $("indicators"),
  mSide: $("m-side"), mMetric: $("m-metric"), historyNote: $("history-note"), pushNote: $("push-note"),
};

const chain = new ChainTable($("chain"), $("summary"), $("chain-empty"), (sym) => pickSymbol(sym, true));
const candles = new CandleChart($("candles"));
const moneyness = new MoneynessChart($("moneyness"), $("moneyness-legend"));

const state = {
  push: null,
  token: "",
  catalogue: [],
  underlying: "",
  expiry: "",
  symbol: "",
  symbolChosen: false,
  tf: "1m",
  channels: { chain: "", moneyness: "", bars: "", indicators: "" },
  /** "unknown" until the first REST answer, then "ok" or "refused" (live data only). */
  rest: "unknown",
  restNote: "",
  historyFor: { bars: "", moneyness: "" },
  indicatorHistory: new Set(),
  userIndicators: loadIndicatorChoice(),
  listRetry: 0,
};

// Exposed for the browser test and for poking at from the console.
window.strikeflow = { state, chain, candles, moneyness, get push() { return state.push; } };

// --- sign-in ------------------------------------------------------------------------------

function defaultPushUrl() {
  const param = new URLSearchParams(location.search).get("ws");
  if (param) return param;
  const saved = localStorage.getItem(PUSH_KEY);
  if (saved) return saved;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.hostname || "127.0.0.1"}:8080/ws`;
}

function showSignIn(message) {
  ui.overlay.hidden = false;
  ui.signout.hidden = true;
  ui.signinButton.disabled = false;
  ui.error.textContent = message || "";
  ui.token.focus();
}

function signIn(token, url) {
  token = token.trim().replace(/^Bearer\s+/i, "");
  if (!token) return showSignIn("Paste a token first.");
  state.push?.stop();
  state.token = token;
  state.rest = "unknown";
  ui.signinButton.disabled = true;
  ui.error.textContent = "";
  localStorage.setItem(PUSH_KEY, url);
  state.push = new PushClient({
    url, token, onStatus, onList,
    onError: (message) => {
      // Answers to a request push could not serve, e.g. a channel the token does not allow.
      console.warn("push:", message);
      ui.pushNote.textContent = `Push: ${message}`;
    },
  });
  // Channels picked before (a re-sign-in) are subscribed again on the new connection.
  for (const [kind, name] of Object.entries(state.channels)) {
    if (name) state.push.subscribe(name, handlers[kind]);
  }
  state.push.list();
  state.push.start();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.push?.stop();
  state.push = null;
  ui.token.value = "";
  showSignIn("");
}

ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn(ui.token.value, ui.pushUrl.value.trim());
});
ui.signout.addEventListener("click", signOut);

// --- connection status ---------------------------------------------------------------------

const STATUS_TEXT = {
  offline: "signed out", connecting: "connecting…", authenticating: "signing in…",
  live: "live", reconnecting: "reconnecting", "auth-failed": "signed out",
};

function onStatus(s, detail) {
  ui.status.dataset.state = s;
  ui.status.title = detail || "";
  renderStatus();
  if (s === "live") {
    sessionStorage.setItem(TOKEN_KEY, state.token);
    ui.overlay.hidden = true;
    ui.signout.hidden = false;
  } else if (s === "auth-failed") {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(`Push refused the token: ${detail}`);
  }
}

function renderStatus() {
  const s = ui.status.dataset.state;
  let text = STATUS_TEXT[s] || s;
  const push = state.push;
  if (s === "live" && push) {
    const age = push.lastMessageAt ? Math.round((Date.now() - push.lastMessageAt) / 1000) : 0;
    text = `live · ${push.received} msgs${age >= 3 ? ` · quiet ${age}s` : ""}`;
  } else if (s === "reconnecting" && ui.status.title) {
    text = `reconnecting · ${ui.status.title}`;
  }
  if (ui.statusText.textContent !== text) ui.statusText.textContent = text;
}
setInterval(renderStatus, 1000);

// --- pickers -------------------------------------------------------------------------------

function fillSelect(select, values, selected) {
  const same = select.options.length === values.length && values.every((v, i) => select.options[i].value === v);
  if (!same) select.replaceChildren(...values.map((v) => new Option(v, v)));
  select.value = selected;
  select.disabled = values.length === 0;
}

function onList(list) {
  state.catalogue = list.underlyings || [];
  if (state.catalogue.length === 0) {
    // A push node still reading the instrument master lists nothing yet: ask again.
    clearTimeout(state.listRetry);
    state.listRetry = setTimeout(() => state.push?.list(), 2000);
    chain.emptyEl.textContent = "Push lists no chain this token may see (yet)…";
    return;
  }
  const hash = parseHash();
  const names = state.catalogue.map((u) => u.underlying);
  const underlying = [state.underlying, hash.underlying, names[0]].find((u) => u && names.includes(u));
  fillSelect(ui.underlying, names, underlying);
  pickUnderlying(underlying, hash.expiry);
}

function expiriesOf(underlying) {
  return state.catalogue.find((u) => u.underlying === underlying)?.expiries || [];
}

function pickUnderlying(underlying, wantedExpiry) {
  const expiries = expiriesOf(underlying);
  const expiry = [underlying === state.underlying ? state.expiry : "", wantedExpiry, expiries[0]]
    .find((e) => e && expiries.includes(e));
  fillSelect(ui.expiry, expiries, expiry);
  pickChain(underlying, expiry);
}

ui.underlying.addEventListener("change", () => pickUnderlying(ui.underlying.value));
ui.expiry.addEventListener("change", () => pickChain(ui.underlying.value, ui.expiry.value));

function resubscribe(kind, name) {
  const push = state.push;
  const old = state.channels[kind];
  if (old === name) return false;
  if (old && push) push.unsubscribe(old);
  state.channels[kind] = name;
  if (name && push) push.subscribe(name, handlers[kind]);
  return true;
}

function pickChain(underlying, expiry) {
  if (!underlying || !expiry) return;
  const changed = underlying !== state.underlying || expiry !== state.expiry;
  state.underlying = underlying;
  state.expiry = expiry;
  if (changed) {
    chain.reset();
    moneyness.reset();
    state.historyFor.moneyness = "";
    ui.chainName.textContent = `${underlying} · ${expiry}`;
  }
  resubscribe("chain", `chain.${underlying}.${expiry}`);
  resubscribe("moneyness", `moneyness.${underlying}.${expiry}`);
  fillSymbols();
  // The chart follows the chain's month future until the user picks a symbol (or a link
  // named one).
  if (!state.symbolChosen) pickSymbol(futureSymbol(underlying, expiry), false);
  else if (!state.symbol) pickSymbol(parseHash().symbol, false);
  writeHash();
}

/** The NSE name of the future of an expiry's month: NIFTY + 26 + DEC + FUT. */
function futureSymbol(underlying, expiry) {
  const [y, m] = expiry.split("-");
  return `${underlying}${y.slice(2)}${MONTHS[Number(m) - 1]}FUT`;
}

async function fillSymbols() {
  const underlying = state.underlying;
  const guesses = [...new Set(expiriesOf(underlying).map((e) => futureSymbol(underlying, e)))];
  let listed = [];
  const answer = await rest(`/api/v1/instruments?underlying=${encodeURIComponent(underlying)}&type=FUT&limit=50`);
  if (answer?.instruments) listed = answer.instruments.map((i) => i.tradingsymbol);
  const all = listed.length ? listed : guesses;
  ui.symbols.replaceChildren(...all.map((s) => new Option(s)));
  // A guessed future that the master does not list: take the nearest listed one.
  if (!state.symbolChosen && listed.length && !listed.includes(state.symbol)) pickSymbol(listed[0], false);
}

function pickSymbol(symbol, byUser) {
  symbol = (symbol || "").trim().toUpperCase();
  if (!symbol) return;
  if (byUser) state.symbolChosen = true;
  ui.symbol.value = symbol;
  const tf = ui.timeframe.value;
  if (symbol === state.symbol && tf === state.tf) return;
  state.symbol = symbol;
  state.tf = tf;
  candles.reset();
  state.historyFor.bars = "";
  state.historyTo = 0;
  state.indicatorHistory.clear();
  renderIndicatorChips();
  ui.candlesName.textContent = `${symbol} · ${tf}`;
  resubscribe("bars", tf === "1m" ? `bars.${symbol}` : `bars.${symbol}.${tf}`);
  resubscribe("indicators", `indicators.${symbol}.${tf}`);
  writeHash();
}

ui.symbol.addEventListener("change", () => pickSymbol(ui.symbol.value, true));
ui.timeframe.addEventListener("change", () => pickSymbol(state.symbol, state.symbolChosen));
ui.mSide.addEventListener("change", () => moneyness.show(ui.mSide.value, ui.mMetric.value));
ui.mMetric.addEventListener("change", () => moneyness.show(ui.mSide.value, ui.mMetric.value));

function parseHash() {
  const [underlying, expiry, symbol, tf] = decodeURIComponent(location.hash.slice(1)).split("/");
  return { underlying, expiry, symbol, tf };
}

function writeHash() {
  const hash = `#${[state.underlying, state.expiry, state.symbol, state.tf].map(encodeURIComponent).join("/")}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

// --- live data -----------------------------------------------------------------------------

const items = (data) => (Array.isArray(data) ? data : [data]);

const handlers = {
  chain(msg) {
    chain.apply(msg.data, msg.snapshot);
  },
  moneyness(msg) {
    for (const p of items(msg.data)) moneyness.add(p);
    if (!state.historyFor.moneyness) loadMoneynessHistory(items(msg.data));
  },
  bars(msg) {
    candles.addBar(msg.data);
    if (!state.historyFor.bars) loadBarHistory(msg.data.window_start);
  },
  indicators(msg) {
    let fresh = false;
    for (const p of items(msg.data)) {
      if (!candles.values.has(indicatorKey(p))) fresh = true;
      candles.addIndicator(p);
    }
    if (fresh) renderIndicatorChips();
  },
};

// --- indicators ----------------------------------------------------------------------------

function loadIndicatorChoice() {
  try {
    const saved = JSON.parse(localStorage.getItem(INDICATORS_KEY));
    return Array.isArray(saved) ? new Set(saved) : null;
  } catch {
    return null;
  }
}

/** Keys sorted by name, then numerically by their parameters (ema(period=9) before …=20). */
function sortedKeys() {
  const num = (k) => Number((k.match(/=(\d+(\.\d+)?)/) || [])[1] || 0);
  return [...candles.values.keys()].sort((a, b) =>
    a.split("(")[0].localeCompare(b.split("(")[0]) || num(a) - num(b) || a.localeCompare(b));
}

function selectedKeys(keys) {
  if (state.userIndicators) return keys.filter((k) => state.userIndicators.has(k));
  return DEFAULT_INDICATORS.map((name) => keys.find((k) => k.split("(")[0] === name)).filter(Boolean);
}

function renderIndicatorChips() {
  const keys = sortedKeys();
  const selected = new Set(selectedKeys(keys));
  const chips = keys.map((key) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = selected.has(key);
    box.dataset.indicator = key;
    box.addEventListener("change", () => {
      const now = new Set(selectedKeys(sortedKeys()));
      if (box.checked) now.add(key);
      else now.delete(key);
      state.userIndicators = now;
      localStorage.setItem(INDICATORS_KEY, JSON.stringify([...now]));
      applyIndicators();
    });
    label.append(box, key);
    return label;
  });
  ui.indicators.replaceChildren(...chips);
  applyIndicators();
}

function applyIndicators() {
  const keys = selectedKeys(sortedKeys());
  candles.select(keys);
  for (const key of keys) loadIndicatorHistory(key);
}

// --- history from the REST API (when it accepts the token) --------------------------------

async function rest(path) {
  if (state.rest === "refused" || !state.token) return null;
  try {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
    if (res.status === 401 || res.status === 403) {
      state.rest = "refused";
      setHistoryNote("History: the API does not accept this token (live data only).");
      return null;
    }
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      setHistoryNote(`History: ${body?.error?.message || `HTTP ${res.status}`} (live data only).`);
      return null;
    }
    state.rest = "ok";
    return await res.json();
  } catch (err) {
    setHistoryNote(`History: API unreachable (${err.message}); live data only.`);
    return null;
  }
}

function setHistoryNote(text) {
  ui.historyNote.textContent = text;
}

const secs = (micros) => Math.floor(micros / 1e6);

async function loadBarHistory(latestMicros) {
  const forKey = `${state.symbol}/${state.tf}`;
  state.historyFor.bars = forKey;
  const to = secs(latestMicros);
  const q = `symbol=${encodeURIComponent(state.symbol)}&tf=${state.tf}&from=${to - HISTORY_SECS}&to=${to}`;
  const answer = await rest(`/api/v1/bars?${q}`);
  if (!answer?.bars || state.historyFor.bars !== forKey) return;
  candles.addBars(answer.bars);
  setHistoryNote(answer.bars.length
    ? `History: ${answer.bars.length} stored ${state.tf} bars of ${state.symbol} before the live ones.`
    : `History: no ${state.tf} bars of ${state.symbol} stored before the live ones.`);
  state.historyTo = to;
  for (const key of selectedKeys(sortedKeys())) loadIndicatorHistory(key);
}

async function loadIndicatorHistory(key) {
  const forKey = `${state.symbol}/${state.tf}`;
  if (!state.historyTo || state.historyFor.bars !== forKey || state.indicatorHistory.has(key)) return;
  state.indicatorHistory.add(key);
  const [name, params = ""] = key.replace(/\)$/, "").split("(");
  const q = `symbol=${encodeURIComponent(state.symbol)}&tf=${state.tf}&params=${encodeURIComponent(params)}` +
    `&from=${state.historyTo - HISTORY_SECS}&to=${state.historyTo}`;
  const answer = await rest(`/api/v1/indicators/${encodeURIComponent(name)}?${q}`);
  if (!answer?.values || state.historyFor.bars !== forKey) return;
  candles.addIndicators(key, answer.values.map((v) => ({ ...v, indicator: name, params: v.params ?? params })));
}

async function loadMoneynessHistory(points) {
  if (!points.length) return;
  const forKey = `${state.underlying}/${state.expiry}`;
  state.historyFor.moneyness = forKey;
  const latest = Math.max(...points.map((p) => p.minute));
  const to = secs(latest) + 60;
  const buckets = [...new Set(points.map((p) => p.bucket))];
  const answers = await Promise.all(buckets.map(async (bucket) => {
    const q = `underlying=${encodeURIComponent(state.underlying)}&expiry=${state.expiry}` +
      `&bucket=${bucket}&from=${to - HISTORY_SECS}&to=${to}`;
    const answer = await rest(`/api/v1/moneyness?${q}`);
    return (answer?.points || []).map((p) => ({ ...p, bucket }));
  }));
  if (state.historyFor.moneyness !== forKey) return;
  moneyness.addMany(answers.flat());
}

// --- start -----------------------------------------------------------------------------------

ui.pushUrl.value = defaultPushUrl();
{
  // A link's view: #UNDERLYING/EXPIRY/SYMBOL/TF (the underlying and expiry are applied when
  // push's catalogue arrives).
  const { symbol, tf } = parseHash();
  if ([...ui.timeframe.options].some((o) => o.value === tf)) ui.timeframe.value = tf;
  state.tf = ui.timeframe.value;
  if (symbol) state.symbolChosen = true;
}
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  ui.token.value = saved;
  ui.overlay.hidden = true;
  signIn(saved, ui.pushUrl.value);
} else {
  showSignIn("");
}
