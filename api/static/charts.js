// Candles with indicators, and the moneyness bucket series, drawn with TradingView's
// Lightweight Charts (vendored: vendor/lightweight-charts-5.2.1/VERSION.md).
//
// Both charts keep their points in maps keyed by time, so a snapshot, REST history and
// live messages can arrive in any order and overlap without duplicates; appending in time
// order is an `update`, anything else redraws the series from the map.

import {
  CandlestickSeries, HistogramSeries, LineSeries, createChart,
} from "./vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.mjs";
import { chartTime, chartTimeOf } from "./format.js";

export const UP_COLOR = "#26a69a";
export const DOWN_COLOR = "#ef5350";

const BASE_OPTIONS = {
  autoSize: true,
  layout: {
    background: { color: "#151a2b" },
    textColor: "#a3acc4",
    fontSize: 11,
    attributionLogo: true,
    panes: { separatorColor: "#262d45" },
  },
  grid: { vertLines: { color: "#1d2336" }, horzLines: { color: "#1d2336" } },
  rightPriceScale: { borderColor: "#262d45" },
  timeScale: { borderColor: "#262d45", timeVisible: true, secondsVisible: false, rightOffset: 4, barSpacing: 10 },
  crosshair: { mode: 0 },
};

/** Indicators drawn over the price (same scale); the others get a pane of their own. */
const OVERLAYS = new Set(["sma", "ema", "wma", "bbands", "supertrend", "vwap"]);
/** Outputs that are not lines on a price or oscillator scale. */
const SKIPPED_OUTPUTS = new Set(["supertrend.direction"]);
const PALETTE = ["#f0b429", "#7aa2ff", "#c678dd", "#56b6c2", "#e5c07b", "#ff8f66", "#98c379", "#e06c9f"];

/** `name(params)`: the key of one indicator configuration (`params` may be empty). */
export function indicatorKey(point) {
  return point.params ? `${point.indicator}(${point.params})` : point.indicator;
}

/** Updates a series with a point, or redraws it from `all` when the point is not the newest. */
function put(series, state, point, all) {
  if (point.time >= state.last) {
    series.update(point);
    state.last = point.time;
  } else {
    const data = all();
    series.setData(data);
    state.last = data.length ? data[data.length - 1].time : -Infinity;
  }
}

export class CandleChart {
  constructor(el) {
    this.chart = createChart(el, BASE_OPTIONS);
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: UP_COLOR, downColor: DOWN_COLOR, borderVisible: false,
      wickUpColor: UP_COLOR, wickDownColor: DOWN_COLOR,
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
    /** indicator key → Map(time → outputs) */
    this.values = new Map();
    /** "key|output" → {series, state} */
    this.lines = new Map();
    this.selected = new Set();
    this.colors = new Map();
    this.reset();
  }

  /** Another symbol or timeframe: drop every point. */
  reset() {
    this.bars = new Map();
    this.barState = { last: -Infinity };
    this.candles.setData([]);
    this.volume.setData([]);
    this.values.clear();
    for (const { series } of this.lines.values()) this.chart.removeSeries(series);
    this.lines.clear();
    this.dropEmptyPanes();
    this.fitted = false;
  }

  get barCount() {
    return this.bars.size;
  }

  /** One closed bar (push `bar` data or a REST bar with the same fields). */
  addBar(bar) {
    const b = this.store(bar);
    if (b.time >= this.barState.last) {
      const { volume, ...candle } = b;
      this.candles.update(candle);
      this.volume.update(volumeBar(b));
      this.barState.last = b.time;
    } else {
      this.redraw();
    }
    if (!this.fitted && this.bars.size >= 2) {
      this.fitted = true;
      this.fit();
    }
  }

  /** Many bars at once (REST history): one redraw. */
  addBars(bars) {
    for (const bar of bars) this.store(bar);
    this.redraw();
    this.fit();
  }

  store(bar) {
    const time = typeof bar.window_start === "number" ? chartTime(bar.window_start) : chartTimeOf(bar.window_start);
    const b = { time, open: bar.open, high: bar.high, low: bar.low, close: bar.close, volume: bar.volume };
    this.bars.set(time, b);
    return b;
  }

  redraw() {
    const sorted = this.sortedBars();
    this.candles.setData(sorted.map(({ volume, ...c }) => c));
    this.volume.setData(sorted.map(volumeBar));
    this.barState.last = sorted.length ? sorted[sorted.length - 1].time : -Infinity;
  }

  fit() {
    fitTimeScale(this.chart, this.bars.size);
  }

  sortedBars() {
    return [...this.bars.values()].sort((a, b) => a.time - b.time);
  }

  /** One indicator value (push `indicator` data, or a REST value with `indicator` set). */
  addIndicator(point) {
    const { key, time } = this.storeIndicator(point);
    if (!this.selected.has(key)) return;
    for (const [output, value] of Object.entries(point.outputs)) {
      const line = this.line(point.indicator, key, output);
      if (line) put(line.series, line.state, { time, value }, () => this.seriesData(key, output));
    }
  }

  /** Many values of one indicator key (REST history): one redraw of its lines. */
  addIndicators(key, points) {
    for (const p of points) this.storeIndicator(p);
    for (const [id, line] of this.lines) {
      if (!id.startsWith(`${key}|`)) continue;
      const data = this.seriesData(key, id.slice(key.length + 1));
      line.series.setData(data);
      line.state.last = data.length ? data[data.length - 1].time : -Infinity;
    }
  }

  storeIndicator(point) {
    const key = indicatorKey(point);
    const time = typeof point.window_start === "number" ? chartTime(point.window_start) : chartTimeOf(point.window_start);
    if (!this.values.has(key)) this.values.set(key, new Map());
    this.values.get(key).set(time, point.outputs);
    return { key, time };
  }

  /** Which indicator keys are drawn. */
  select(keys) {
    this.selected = new Set(keys);
    for (const [id, { series }] of this.lines) {
      if (!this.selected.has(id.split("|")[0])) {
        this.chart.removeSeries(series);
        this.lines.delete(id);
      }
    }
    for (const key of this.selected) {
      const values = this.values.get(key);
      if (!values) continue;
      const outputs = new Set();
      for (const o of values.values()) for (const name of Object.keys(o)) outputs.add(name);
      for (const output of outputs) {
        const id = `${key}|${output}`;
        if (this.lines.has(id)) continue;
        const line = this.line(key.split("(")[0], key, output);
        if (!line) continue;
        const data = this.seriesData(key, output);
        line.series.setData(data);
        line.state.last = data.length ? data[data.length - 1].time : -Infinity;
      }
    }
    this.dropEmptyPanes();
  }

  seriesData(key, output) {
    const values = this.values.get(key);
    if (!values) return [];
    return [...values.entries()]
      .filter(([, o]) => typeof o[output] === "number")
      .map(([time, o]) => ({ time, value: o[output] }))
      .sort((a, b) => a.time - b.time);
  }

  colorOf(key, output) {
    const id = `${key}|${output}`;
    if (!this.colors.has(id)) this.colors.set(id, PALETTE[this.colors.size % PALETTE.length]);
    return this.colors.get(id);
  }

  /** The line (or histogram) of one output, created on first use. */
  line(name, key, output) {
    if (SKIPPED_OUTPUTS.has(`${name}.${output}`)) return null;
    const id = `${key}|${output}`;
    let line = this.lines.get(id);
    if (line) return line;
    const pane = OVERLAYS.has(name) ? 0 : 1;
    const title = output === "value" ? key : `${key} ${output}`;
    const series = output === "hist"
      ? this.chart.addSeries(HistogramSeries, { color: "rgba(122,162,255,0.5)", title, priceLineVisible: false }, pane)
      : this.chart.addSeries(LineSeries, {
        color: this.colorOf(key, output), lineWidth: pane === 0 ? 1 : 2, title,
        priceLineVisible: false, lastValueVisible: pane === 1, crosshairMarkerVisible: false,
      }, pane);
    if (pane === 1) this.chart.panes()[1]?.setStretchFactor(0.35);
    line = { series, state: { last: -Infinity } };
    this.lines.set(id, line);
    return line;
  }

  dropEmptyPanes() {
    const panes = this.chart.panes();
    for (let i = panes.length - 1; i >= 1; i--) {
      if (panes[i].getSeries().length === 0) this.chart.removePane(i);
    }
  }
}

/**
 * Spreads `n` points over the chart's width, between 3 and 12 pixels apart, and shows the
 * newest: a few points stay narrow at the right edge (as on any trading screen) instead of
 * being stretched over the whole chart, whose spacing later points would keep.
 */
function fitTimeScale(chart, n) {
  const ts = chart.timeScale();
  const width = ts.width() || 600;
  const spacing = Math.max(3, Math.min(12, width / (n + 6)));
  ts.applyOptions({ barSpacing: spacing });
  ts.scrollToRealTime();
}

function volumeBar(b) {
  return { time: b.time, value: b.volume, color: b.close >= b.open ? "rgba(38,166,154,0.35)" : "rgba(239,83,80,0.35)" };
}

/** Bucket order on the moneyness chart: deep ITM … ATM … deep OTM. */
function level(bucket) {
  if (bucket === "ATM") return 0;
  const n = Number(bucket.slice(3));
  return bucket.startsWith("ITM") ? -n : n;
}

function bucketColor(bucket) {
  const l = level(bucket);
  if (l === 0) return "#f0b429";
  const shade = Math.min(Math.abs(l), 5);
  const alpha = 1 - (shade - 1) * 0.16;
  return l < 0 ? `rgba(38,166,154,${alpha})` : `rgba(239,83,80,${alpha})`;
}

/** Buckets drawn at most: ATM and this many either side. */
const MONEYNESS_DEPTH = 3;

export class MoneynessChart {
  constructor(el, legendEl) {
    this.chart = createChart(el, {
      ...BASE_OPTIONS,
      rightPriceScale: { borderColor: "#262d45", scaleMargins: { top: 0.1, bottom: 0.1 } },
    });
    this.legendEl = legendEl;
    this.side = "CE";
    this.metric = "ltp";
    this.reset();
  }

  reset() {
    /** "bucket/side" → Map(minute time → point) */
    this.points = new Map();
    if (this.series) for (const { series } of this.series.values()) this.chart.removeSeries(series);
    /** bucket → {series, state} (the selected side and metric only) */
    this.series = new Map();
    this.legendEl.replaceChildren();
    this.fitted = false;
  }

  get pointCount() {
    let n = 0;
    for (const m of this.points.values()) n += m.size;
    return n;
  }

  /** Which side and metric are drawn. */
  show(side, metric) {
    this.side = side;
    this.metric = metric;
    for (const { series } of this.series.values()) this.chart.removeSeries(series);
    this.series.clear();
    this.legendEl.replaceChildren();
    const buckets = [...this.points.keys()]
      .filter((k) => k.endsWith(`/${side}`))
      .map((k) => k.split("/")[0]);
    for (const bucket of buckets.sort((a, b) => level(a) - level(b))) this.ensure(bucket, true);
    this.fit();
  }

  /** Many points (REST history, with `bucket` set): one redraw. */
  addMany(points) {
    for (const p of points) this.store(p);
    this.show(this.side, this.metric);
  }

  store(point) {
    const time = typeof point.minute === "number" ? chartTime(point.minute) : chartTimeOf(point.minute);
    const key = `${point.bucket}/${point.side}`;
    if (!this.points.has(key)) this.points.set(key, new Map());
    this.points.get(key).set(time, point);
    return time;
  }

  /** One moneyness point (push data, or REST history with `bucket` and `side` set). */
  add(point) {
    const time = this.store(point);
    if (point.side !== this.side) return;
    const s = this.ensure(point.bucket, false);
    if (!s) return;
    const value = point[this.metric];
    if (typeof value === "number") {
      put(s.series, s.state, { time, value: this.scale(value) }, () => this.data(point.bucket));
    }
    if (!this.fitted && this.pointCount > 4) {
      this.fitted = true;
      this.fit();
    }
  }

  fit() {
    let n = 0;
    for (const [key, m] of this.points) if (key.endsWith(`/${this.side}`)) n = Math.max(n, m.size);
    fitTimeScale(this.chart, n);
  }

  scale(v) {
    return this.metric === "iv" ? v * 100 : v;
  }

  data(bucket) {
    const m = this.points.get(`${bucket}/${this.side}`);
    if (!m) return [];
    return [...m.entries()]
      .filter(([, p]) => typeof p[this.metric] === "number")
      .map(([time, p]) => ({ time, value: this.scale(p[this.metric]) }))
      .sort((a, b) => a.time - b.time);
  }

  ensure(bucket, fill) {
    if (Math.abs(level(bucket)) > MONEYNESS_DEPTH) return null;
    let s = this.series.get(bucket);
    if (!s) {
      const color = bucketColor(bucket);
      const series = this.chart.addSeries(LineSeries, {
        color, lineWidth: bucket === "ATM" ? 3 : 2, title: bucket,
        priceLineVisible: false, lastValueVisible: true, crosshairMarkerVisible: false,
        priceFormat: this.metric === "oi" ? { type: "volume" } : { type: "price", precision: 2, minMove: 0.01 },
      });
      s = { series, state: { last: -Infinity } };
      this.series.set(bucket, s);
      fill = true;
      this.renderLegend();
    }
    if (fill) {
      const data = this.data(bucket);
      s.series.setData(data);
      s.state.last = data.length ? data[data.length - 1].time : -Infinity;
    }
    return s;
  }

  renderLegend() {
    const items = [...this.series.keys()].sort((a, b) => level(a) - level(b)).map((bucket) => {
      const span = document.createElement("label");
      const sw = document.createElement("i");
      sw.style.background = bucketColor(bucket);
      span.append(sw, `${bucket} ${this.side}`);
      return span;
    });
    this.legendEl.replaceChildren(...items);
  }
}
