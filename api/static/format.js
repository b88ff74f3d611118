// Number and time formatting shared by the chain and the charts. Every formatter maps
// null/undefined (a value the pipeline did not have: no IV yet, no previous close) to "—".

const DASH = "—";

/** Seconds to add to a UTC timestamp so a chart drawing UTC shows India Standard Time. */
export const IST_OFFSET_SECS = 19800;

const price = new Intl.NumberFormat("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const whole = new Intl.NumberFormat("en-IN", { maximumFractionDigits: 0 });
const two = new Intl.NumberFormat("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

const missing = (v) => v === null || v === undefined || Number.isNaN(v);

/** A price: 24,512.35. */
export function fmtPrice(v) {
  return missing(v) ? DASH : price.format(v);
}

/** A strike: 24,500 (or 24,512.5 for a half strike). */
export function fmtStrike(v) {
  if (missing(v)) return DASH;
  return Number.isInteger(v) ? whole.format(v) : price.format(v);
}

/** A signed price change: +12.30 / −4.05. */
export function fmtChange(v) {
  if (missing(v)) return DASH;
  const s = price.format(Math.abs(v));
  return v > 0 ? `+${s}` : v < 0 ? `−${s}` : s;
}

/** An open-interest-sized count in Indian units: 9,850 · 1.25 L · 3.40 Cr. */
export function fmtQty(v) {
  if (missing(v)) return DASH;
  const a = Math.abs(v);
  const sign = v < 0 ? "−" : "";
  if (a >= 1e7) return `${sign}${two.format(a / 1e7)} Cr`;
  if (a >= 1e5) return `${sign}${two.format(a / 1e5)} L`;
  return `${sign}${whole.format(a)}`;
}

/** A signed count (ΔOI): +1.20 L / −35,000. */
export function fmtQtyChange(v) {
  if (missing(v)) return DASH;
  const s = fmtQty(Math.abs(v));
  return v > 0 ? `+${s}` : v < 0 ? `−${s}` : s;
}

/** An implied volatility (a fraction) as a percentage: 0.1452 → 14.52%. */
export function fmtIv(v) {
  return missing(v) ? DASH : `${(v * 100).toFixed(2)}%`;
}

/** A volatility difference (a fraction) in vol points: 0.012 → +1.20 pts. */
export function fmtVolPoints(v) {
  if (missing(v)) return DASH;
  const s = Math.abs(v * 100).toFixed(2);
  return `${v > 0 ? "+" : v < 0 ? "−" : ""}${s} pts`;
}

/** A greek or a ratio with two decimals: 0.52 / −0.48 / 1.25. */
export function fmtRatio(v) {
  return missing(v) ? DASH : v.toFixed(2).replace("-", "−");
}

/** UTC microseconds since the epoch → "HH:MM:SS" in IST. */
export function fmtTimeIst(micros) {
  if (missing(micros)) return DASH;
  const d = new Date(micros / 1000 + IST_OFFSET_SECS * 1000);
  return d.toISOString().slice(11, 19);
}

/** UTC microseconds → the seconds a chart plots (UTC shifted to IST wall time). */
export function chartTime(micros) {
  return Math.floor(micros / 1e6) + IST_OFFSET_SECS;
}

/** An RFC 3339 instant (REST answers) → the seconds a chart plots. */
export function chartTimeOf(rfc3339) {
  return Math.floor(Date.parse(rfc3339) / 1000) + IST_OFFSET_SECS;
}

/** Days since 1970-01-01 (Avro `date`) → "YYYY-MM-DD". */
export function dateOfDays(days) {
  return new Date(days * 86400000).toISOString().slice(0, 10);
}
