// The live option chain: CE | strike | PE, kept from a `chain.<U>.<EXPIRY>` channel.
//
// The model follows docs/protocol.md: a snapshot replaces the state; a delta replaces the
// summary when it is not null and each row by its `strike` and `option_type`. The view is
// built once per strike (one <tr>, one <td> per field) and updated in place: at most once
// per animation frame, only the rows that changed, and a cell's text only when it differs,
// so nothing is re-rendered and nothing flickers. A changed number flashes green or red.

import {
  fmtChange, fmtIv, fmtPrice, fmtQty, fmtQtyChange, fmtRatio, fmtStrike, fmtTimeIst, fmtVolPoints,
} from "./format.js";

/** Columns of one side, from the outside in (the CE side is drawn in this order, PE mirrored). */
const FIELDS = [
  { field: "oi", value: (r) => r.oi, text: fmtQty, flash: true },
  { field: "doi", value: (r) => r.oi_change_prev_close ?? r.oi_change_window, text: fmtQtyChange, signed: true },
  { field: "iv", value: (r) => r.iv, text: fmtIv },
  { field: "delta", value: (r) => r.delta, text: fmtRatio },
  { field: "chg", value: (r) => r.ltp_change_prev_close, text: fmtChange, signed: true },
  { field: "ltp", value: (r) => r.ltp, text: fmtPrice, flash: true },
];

const SUMMARY = {
  spot: (s) => fmtPrice(s.spot),
  future: (s) => fmtPrice(s.future),
  parity_forward: (s) => fmtPrice(s.parity_forward),
  atm_strike: (s) => fmtStrike(s.atm_strike),
  pcr_oi: (s) => fmtRatio(s.pcr_oi),
  max_pain: (s) => fmtStrike(s.max_pain),
  atm_iv: (s) => fmtIv(s.atm_iv),
  atm_straddle: (s) => s.atm_straddle == null ? "—"
    : `${fmtPrice(s.atm_straddle)}${s.implied_move_pct == null ? "" : ` (±${s.implied_move_pct.toFixed(2)}%)`}`,
  skew_25d: (s) => fmtVolPoints(s.skew_25d),
  support_resistance: (s) => `${fmtStrike(s.support)} / ${fmtStrike(s.resistance)}`,
  basis: (s) => fmtChange(s.basis),
  ts: (s) => fmtTimeIst(s.ts),
};

const FLASH_MS = 600;
const UP = ["rgba(38,166,154,0.45)", "rgba(38,166,154,0)"];
const DOWN = ["rgba(239,83,80,0.45)", "rgba(239,83,80,0)"];

export class ChainTable {
  /**
   * @param {HTMLTableElement} table
   * @param {HTMLElement} summaryEl   holds the [data-summary] cells
   * @param {HTMLElement} emptyEl     shown while the chain has no rows
   * @param {(tradingsymbol: string) => void} onPick  an LTP cell was clicked
   */
  constructor(table, summaryEl, emptyEl, onPick) {
    this.tbody = table.tBodies[0];
    this.emptyEl = emptyEl;
    this.summaryCells = new Map(
      [...summaryEl.querySelectorAll("[data-summary]")].map((el) => [el.dataset.summary, el]));
    this.onPick = onPick;
    this.tbody.addEventListener("click", (ev) => {
      const td = ev.target.closest("td[data-field='ltp']");
      const sym = td && td.title;
      if (sym) this.onPick(sym);
    });
    this.reset();
  }

  /** Forgets everything (another chain was picked). */
  reset() {
    this.summary = null;
    /** strike → {CE: row|null, PE: row|null, view|null, dirty} */
    this.strikes = new Map();
    this.tbody.replaceChildren();
    this.maxOi = 0;
    this.summaryDirty = true;
    this.classesDirty = true;
    this.scrolled = false;
    this.frame = 0;
    this.messages = 0;
    this.render();
  }

  /** Applies one `chain` message's data. */
  apply(data, snapshot) {
    this.messages += 1;
    if (snapshot) {
      const keep = new Set(data.strikes.map((r) => r.strike));
      for (const [strike, entry] of this.strikes) {
        if (!keep.has(strike)) {
          entry.view?.tr.remove();
          this.strikes.delete(strike);
        } else {
          entry.CE = entry.PE = null;
          entry.dirty = true;
        }
      }
      this.summary = data.summary;
      this.summaryDirty = this.classesDirty = true;
    } else if (data.summary) {
      this.summary = data.summary;
      this.summaryDirty = this.classesDirty = true;
    }
    for (const row of data.strikes) {
      let entry = this.strikes.get(row.strike);
      if (!entry) {
        entry = { CE: null, PE: null, view: null, dirty: true };
        this.strikes.set(row.strike, entry);
        this.classesDirty = true;
      }
      entry[row.option_type] = row;
      entry.dirty = true;
    }
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    this.frame = 0;
    let oiChanged = false;
    for (const [strike, entry] of this.strikes) {
      if (!entry.view) {
        entry.view = this.createRow(strike);
        this.insertRow(strike, entry.view.tr);
      }
      if (!entry.dirty) continue;
      entry.dirty = false;
      for (const side of ["CE", "PE"]) {
        const row = entry[side];
        const cells = entry.view[side];
        for (const f of FIELDS) {
          const v = row ? f.value(row) : null;
          if (update(cells[f.field], f.text(v), v ?? null, f) && f.field === "oi") oiChanged = true;
        }
        cells.ltp.td.title = row ? row.tradingsymbol : "";
        cells.iv.td.title = row && row.iv == null && row.no_iv_reason ? `no IV: ${row.no_iv_reason}` : "";
        cells.doi.td.title = row ? buildUpTitle(row) : "";
      }
      const pcr = entry.CE && entry.PE ? entry.PE.strike_pcr ?? null : null;
      setText(entry.view.pcr, pcr == null ? "" : `PCR ${pcr.toFixed(2)}`);
    }
    if (oiChanged) this.renderBars();
    if (this.classesDirty) this.renderClasses();
    if (this.summaryDirty) this.renderSummary();
    this.emptyEl.hidden = this.strikes.size > 0;
    if (!this.scrolled && this.summary && this.strikes.size) this.scrollToAtm();
  }

  createRow(strike) {
    const tr = document.createElement("tr");
    tr.dataset.strike = String(strike);
    const view = { tr, CE: {}, PE: {}, pcr: null };
    const cell = (side, f) => {
      const td = document.createElement("td");
      td.dataset.side = side;
      td.dataset.field = f.field;
      let bar = null;
      if (f.field === "oi") {
        bar = document.createElement("div");
        bar.className = "bar";
        td.append(bar);
      }
      const span = document.createElement("span");
      span.className = "v";
      span.textContent = "—";
      td.append(span);
      view[side][f.field] = { td, span, bar, text: "—", num: null };
      return td;
    };
    for (const f of FIELDS) tr.append(cell("CE", f));
    const mid = document.createElement("td");
    mid.className = "strike";
    mid.textContent = fmtStrike(strike);
    view.pcr = document.createElement("small");
    mid.append(view.pcr);
    tr.append(mid);
    for (const f of [...FIELDS].reverse()) tr.append(cell("PE", f));
    return view;
  }

  insertRow(strike, tr) {
    // Rows are in strike order; a new strike (rare: a listing) goes before the first higher one.
    for (const other of this.tbody.rows) {
      if (Number(other.dataset.strike) > strike) {
        this.tbody.insertBefore(tr, other);
        return;
      }
    }
    this.tbody.append(tr);
  }

  renderBars() {
    let max = 0;
    for (const entry of this.strikes.values()) {
      max = Math.max(max, entry.CE?.oi ?? 0, entry.PE?.oi ?? 0);
    }
    this.maxOi = max;
    for (const entry of this.strikes.values()) {
      if (!entry.view) continue;
      for (const side of ["CE", "PE"]) {
        const oi = entry[side]?.oi ?? 0;
        const width = max > 0 ? `${((oi / max) * 100).toFixed(1)}%` : "0%";
        const bar = entry.view[side].oi.bar;
        if (bar.style.width !== width) bar.style.width = width;
      }
    }
  }

  renderClasses() {
    this.classesDirty = false;
    const s = this.summary;
    const ref = s ? s.reference_price ?? s.spot : null;
    for (const [strike, entry] of this.strikes) {
      if (!entry.view) continue;
      const tr = entry.view.tr;
      tr.classList.toggle("atm", !!s && strike === s.atm_strike);
      tr.classList.toggle("ce-itm", ref != null && strike < ref);
      tr.classList.toggle("pe-itm", ref != null && strike > ref);
    }
  }

  renderSummary() {
    this.summaryDirty = false;
    for (const [key, el] of this.summaryCells) {
      const f = SUMMARY[key];
      setText(el, this.summary && f ? f(this.summary) : "—");
    }
  }

  scrollToAtm() {
    const entry = this.strikes.get(this.summary.atm_strike);
    const box = this.tbody.closest(".chain-scroll");
    if (!entry?.view || !box) return;
    this.scrolled = true;
    const tr = entry.view.tr;
    box.scrollTop = Math.max(0, tr.offsetTop - box.clientHeight / 2);
  }
}

function buildUpTitle(row) {
  const parts = [];
  if (row.build_up) parts.push(row.build_up.toLowerCase().replace(/_/g, " "));
  if (row.oi_change_prev_close == null && row.oi_change_window != null) parts.push("ΔOI over the OI window");
  return parts.join(" · ");
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Writes a cell when its text changed; colours signed values; flashes a changed price or
 * OI up or down (the quotes a trader watches; IV and greeks change on every tick and would
 * keep the whole table blinking). Returns whether it changed.
 */
function update(cell, text, num, column) {
  if (cell.text === text) return false;
  const prev = cell.num;
  cell.text = text;
  cell.num = num;
  cell.span.textContent = text;
  if (column.signed) {
    cell.td.classList.toggle("pos", num != null && num > 0);
    cell.td.classList.toggle("neg", num != null && num < 0);
  }
  if (column.flash && prev != null && num != null && prev !== num && cell.span.animate) {
    cell.span.animate(
      { backgroundColor: num > prev ? UP : DOWN },
      { duration: FLASH_MS, easing: "ease-out" });
  }
  return true;
}
