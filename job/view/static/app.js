// The live view's page: draws /api/summary as pushed by the server (server-sent events, once a second).
// No framework: a few DOM updates per second, and uPlot for the two charts. Text from the topics is only ever set
// with textContent, never parsed as HTML.
(function () {
  "use strict";

  // Colour-blind-safe palettes: Okabe–Ito for the labels (two, as a rule), Paul Tol's "muted" for the error codes
  // (ten codes, ten colours). Every colour also has its name beside it, in the tables and the charts' legends, and
  // the stacks keep the tables' order from the bottom up: never colour alone.
  const LABEL_COLOURS = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
  const CODE_COLOURS = [
    "#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499", "#000000",
  ];
  const SYMBOLS = { ok: "✔", starting: "…", stale: "⚠", failed: "✖", stopped: "■", unknown: "?" };
  const MIN_BUCKETS = 30; // the chart shows at least this many buckets, and from the first one with data

  const view = {
    ring: "10s",
    summary: null,
    updates: 0,
    charts: { labels: null, codes: null },
    colours: { labels: LABEL_COLOURS, codes: CODE_COLOURS },
    keys: { labels: "", codes: "" },
  };
  window.jobView = view; // for people in the console and for the browser test

  const $ = (id) => document.getElementById(id);

  function text(id, value) {
    const node = $(id);
    if (node.textContent !== value) node.textContent = value;
  }

  function number(value, digits) {
    if (value === null || value === undefined) return "–";
    return Number(value).toLocaleString("en", { maximumFractionDigits: digits || 0 });
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
  }

  function swatch(colour) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", "12");
    svg.setAttribute("height", "12");
    svg.setAttribute("class", "swatch");
    svg.setAttribute("aria-hidden", "true");
    const box = document.createElementNS(ns, "rect");
    box.setAttribute("width", "12");
    box.setAttribute("height", "12");
    box.setAttribute("fill", colour);
    svg.appendChild(box);
    return svg;
  }

  function cell(row, value, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value;
    row.appendChild(td);
    return td;
  }

  // -- health -------------------------------------------------------------------------------------------------

  function renderHealth(s) {
    const h = s.health;
    const badge = $("health-badge");
    badge.dataset.level = h.level;
    badge.querySelector(".symbol").textContent = SYMBOLS[h.level] || "?";
    text("health-words", h.words);
    text("h-state", h.state || "–");
    const model = h.model && h.model.name ? `${h.model.name} · version ${h.model.version}` : "–";
    text("h-model", model);
    text("h-input-rate", h.input_rows_per_second == null ? "–" : `${number(h.input_rows_per_second, 1)} rows/s`);
    text("h-processed-rate", h.processed_rows_per_second == null ? "–" : `${number(h.processed_rows_per_second, 1)} rows/s`);
    text("h-batch", h.batch_duration_ms == null ? "–" : `${number(h.batch_duration_ms)} ms (batch #${h.batch_id})`);
    text("h-lag", h.offsets_behind_latest == null ? "–" : `${number(h.offsets_behind_latest)} offsets behind`);
    text(
      "h-heartbeat",
      h.heartbeat_age_s == null ? "–" : `${number(h.heartbeat_age_s, 0)} s ago (stale after ${number(h.stale_after_s)} s)`,
    );
    const t = h.totals || {};
    text(
      "h-totals",
      t.records_in == null
        ? "–"
        : `${number(t.records_in)} read · ${number(t.records_scored)} scored · ${number(t.records_dead_lettered)} dead-lettered`,
    );
    const problem = h.error || (h.level !== "failed" && h.last_error ? `last error: ${h.last_error}` : "");
    $("h-error").hidden = !problem;
    text("h-error", problem);
  }

  // -- counts tables ---------------------------------------------------------------------------------------------

  function renderCounts(tableId, keys, counts, total, colours, withShare, prefix) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren();
    keys.forEach((key, i) => {
      const row = document.createElement("tr");
      const name = document.createElement("span");
      name.append(swatch(colours[i % colours.length]), key);
      cell(row, name);
      const count = cell(row, number(counts[key]), "num");
      count.dataset.testid = `${prefix}-${key}`;
      if (withShare) cell(row, total ? `${((100 * counts[key]) / total).toFixed(1)} %` : "–", "num");
      body.appendChild(row);
    });
  }

  // -- charts ------------------------------------------------------------------------------------------------

  function firstWithData(columns, length) {
    let first = length;
    for (const values of columns) {
      const i = values.findIndex((v) => v > 0);
      if (i >= 0 && i < first) first = i;
    }
    return Math.max(0, Math.min(first, length - MIN_BUCKETS));
  }

  function chartWidth(node) {
    return Math.max(240, node.clientWidth);
  }

  // Stacked bars, one segment per key and bucket: overlapping lines would hide a series whose values equal
  // another's (two error codes with the same counts), a stack never does. The series are drawn tallest first, so
  // each later (lower) bar covers the bottom of the one before; the legend lists them from the top of the stack.
  function makeStacked(node, keys, colours, percent, widthS, legend) {
    const series = [{ label: "time" }];
    for (let j = keys.length - 1; j >= 0; j--) {
      const colour = colours[j % colours.length];
      series.push({
        label: keys[j],
        stroke: colour,
        fill: colour,
        width: 1,
        paths: uPlot.paths.bars({ size: [0.8, 48], align: 0 }),
        points: { show: false },
        value: (u, value, si, idx) => (idx == null || value == null ? "–" : legend(j, idx)),
      });
    }
    const opts = {
      width: chartWidth(node),
      height: window.innerWidth < 760 ? 180 : 220,
      series,
      scales: {
        x: { time: true, range: (u, min, max) => [min - widthS / 2, max + widthS / 2] },
        y: percent ? { range: [0, 100] } : { range: (u, min, max) => [0, Math.max(1, max)] },
      },
      axes: [{}, { values: (u, ticks) => ticks.map((v) => (percent ? `${v}%` : `${v}`)), size: 48 }],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
    node.replaceChildren();
    return new uPlot(opts, [[], ...keys.map(() => [])], node);
  }

  // Cumulative columns, tallest first (the order makeStacked draws them in); null where a bucket has nothing.
  function stacked(columns, present) {
    const sums = [];
    let running = columns.length ? columns[0].map(() => 0) : [];
    for (const column of columns) {
      running = running.map((sum, i) => sum + column[i]);
      sums.push(running.map((sum, i) => (present[i] ? sum : null)));
    }
    return sums.reverse();
  }

  function renderLabelChart(s) {
    const ring = s.series[view.ring];
    const keys = s.labels;
    const node = $("label-chart");
    const key = `${view.ring}|${keys.join(",")}`;
    const first = firstWithData(keys.map((k) => ring.by_label[k]), ring.start.length);
    const counts = keys.map((k) => ring.by_label[k].slice(first));
    const totals = ring.start.slice(first).map((_, i) => counts.reduce((sum, column) => sum + column[i], 0));
    view.labelCounts = counts;
    view.labelTotals = totals;
    if (view.keys.labels !== key || !view.charts.labels) {
      if (view.charts.labels) view.charts.labels.destroy();
      const legend = (j, idx) => {
        const total = view.labelTotals[idx];
        const count = view.labelCounts[j][idx];
        return total ? `${((100 * count) / total).toFixed(0)}% (${count} of ${total})` : "–";
      };
      view.charts.labels = makeStacked(node, keys, LABEL_COLOURS, true, ring.width_s, legend);
      view.keys.labels = key;
    }
    const shares = counts.map((column) => column.map((c, i) => (totals[i] ? (100 * c) / totals[i] : 0)));
    view.charts.labels.setData([ring.start.slice(first), ...stacked(shares, totals.map((t) => t > 0))]);
  }

  function renderCodeChart(s) {
    const ring = s.series[view.ring];
    const keys = s.codes;
    const node = $("code-chart");
    const key = `${view.ring}|${keys.join(",")}`;
    const first = firstWithData(keys.map((k) => ring.by_code[k]), ring.start.length);
    const counts = keys.map((k) => ring.by_code[k].slice(first));
    view.codeCounts = counts;
    if (view.keys.codes !== key || !view.charts.codes) {
      if (view.charts.codes) view.charts.codes.destroy();
      view.charts.codes = makeStacked(node, keys, CODE_COLOURS, false, ring.width_s, (j, idx) => `${view.codeCounts[j][idx]}`);
      view.keys.codes = key;
    }
    const present = ring.start.slice(first).map((_, i) => counts.some((column) => column[i] > 0));
    view.charts.codes.setData([ring.start.slice(first), ...stacked(counts, present)]);
  }

  // -- latest records ----------------------------------------------------------------------------------------

  function renderLatest(s) {
    const body = $("latest").querySelector("tbody");
    body.replaceChildren();
    s.latest.forEach((r) => {
      const row = document.createElement("tr");
      cell(row, clock(r.timestamp_ms));
      const i = s.labels.indexOf(r.label);
      const label = document.createElement("span");
      label.append(swatch(LABEL_COLOURS[i % LABEL_COLOURS.length]), r.label);
      cell(row, label);
      cell(row, r.probability == null ? "–" : r.probability.toFixed(3), "num");
      const textCell = document.createElement("span");
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `model ${r.model_version || "?"} · id ${r.id == null ? "–" : r.id}`;
      textCell.append(r.text == null ? "" : r.text, meta);
      cell(row, textCell);
      body.appendChild(row);
    });
    $("latest-empty").hidden = s.latest.length > 0;

    const list = $("latest-dead");
    list.replaceChildren();
    s.latest_dead_letters.forEach((d) => {
      const item = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = d.code;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = d.value == null ? "(no value)" : d.value_encoding === "base64" ? `base64: ${d.value}` : d.value;
      item.append(code, ` at ${clock(d.timestamp_ms)}: ${d.reason || ""}`, value);
      list.appendChild(item);
    });
    $("dead-empty").hidden = s.latest_dead_letters.length > 0;
  }

  // -- everything ----------------------------------------------------------------------------------------------

  function render() {
    const s = view.summary;
    if (!s) return;
    text("deployment", s.deployment);
    text("topics", `${s.topics.output} · dead letters: ${s.topics.dead_letter}`);
    const since = new Date(s.since);
    const sinceText = since.getTime() === 0 ? "the beginning" : since.toLocaleString("en-GB");
    document.querySelectorAll(".since").forEach((n) => (n.textContent = sinceText));
    renderHealth(s);
    text("scored-total", number(s.totals.scored));
    text("dead-total", number(s.totals.dead_lettered));
    renderCounts("label-counts", s.labels, s.totals.by_label, s.totals.scored, LABEL_COLOURS, true, "count");
    renderCounts("code-counts", s.codes, s.totals.by_code, s.totals.dead_lettered, CODE_COLOURS, false, "dead");
    renderLabelChart(s);
    renderCodeChart(s);
    renderLatest(s);
    const readers = s.readers
      .map((r) => `${r.topics.join(", ")}: ${r.state}, ${r.partitions} partitions, ${number(r.records_read)} records read${r.error ? ` — ${r.error}` : ""}`)
      .join("; ");
    const rec = s.records;
    text("readers", `${readers}. Duplicates dropped: ${number(rec.duplicate)}; unreadable: ${number(rec.unreadable)}; too late to tell: ${number(rec.too_late)}.`);
  }

  function setLive(connected) {
    const live = $("live");
    live.dataset.live = String(connected);
    live.firstElementChild.textContent = connected ? "●" : "○";
    text("live-words", connected ? `live · updated ${clock(Date.now())}` : "disconnected · retrying");
  }

  document.querySelectorAll(".switch button").forEach((button) => {
    button.addEventListener("click", () => {
      view.ring = button.dataset.ring;
      document.querySelectorAll(".switch button").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      render();
    });
  });

  window.addEventListener("resize", () => {
    for (const chart of [view.charts.labels, view.charts.codes]) {
      if (chart) chart.setSize({ width: chartWidth(chart.root.parentNode), height: chart.height });
    }
  });

  const events = new EventSource("/api/events");
  events.addEventListener("summary", (event) => {
    view.summary = JSON.parse(event.data);
    view.updates += 1;
    render();
    setLive(true);
  });
  events.addEventListener("error", () => setLive(false));
})();
