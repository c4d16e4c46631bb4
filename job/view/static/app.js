// The live view's page: draws /api/summary as pushed by the server (server-sent events, once a second).
// No framework: a few DOM updates per second, and uPlot for the two charts. Text from the topics is only ever set
// with textContent, never parsed as HTML.
(function () {
  "use strict";

  // Okabe–Ito colours, safe for the common colour-vision deficiencies; each series also has its own dash.
  const LABEL_COLOURS = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
  const CODE_COLOURS = ["#E69F00", "#CC79A7", "#009E73", "#56B4E9", "#0072B2", "#D55E00", "#000000"];
  const DASHES = [[], [8, 4], [2, 3], [10, 3, 2, 3], [4, 4], [12, 4], [1, 2]];
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

  function swatch(colour, dash) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", "26");
    svg.setAttribute("height", "10");
    svg.setAttribute("class", "swatch");
    svg.setAttribute("aria-hidden", "true");
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", "1");
    line.setAttribute("x2", "25");
    line.setAttribute("y1", "5");
    line.setAttribute("y2", "5");
    line.setAttribute("stroke", colour);
    line.setAttribute("stroke-width", "3");
    if (dash.length) line.setAttribute("stroke-dasharray", dash.join(" "));
    svg.appendChild(line);
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
      name.append(swatch(colours[i % colours.length], DASHES[i % DASHES.length]), key);
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

  function makeChart(node, keys, colours, yLabel, format) {
    const series = [{ label: "time" }];
    keys.forEach((key, i) => {
      const colour = colours[i % colours.length];
      series.push({
        label: key,
        stroke: colour,
        width: 2,
        dash: DASHES[i % DASHES.length],
        spanGaps: false,
        points: { show: true, size: 6, fill: colour, stroke: colour },
        value: format,
      });
    });
    const opts = {
      width: chartWidth(node),
      height: window.innerWidth < 760 ? 180 : 220,
      series,
      scales: { x: { time: true }, y: yLabel === "%" ? { range: [0, 100] } : { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [{}, { values: (u, ticks) => ticks.map((v) => (yLabel === "%" ? `${v}%` : `${v}`)), size: 48 }],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
    node.replaceChildren();
    return new uPlot(opts, [[], ...keys.map(() => [])], node);
  }

  function renderLabelChart(s) {
    const ring = s.series[view.ring];
    const keys = s.labels;
    const node = $("label-chart");
    const key = `${view.ring}|${keys.join(",")}`;
    const first = firstWithData(keys.map((k) => ring.by_label[k]), ring.start.length);
    const totals = ring.start.map((_, i) => keys.reduce((sum, k) => sum + ring.by_label[k][i], 0)).slice(first);
    const counts = keys.map((k) => ring.by_label[k].slice(first));
    if (view.keys.labels !== key || !view.charts.labels) {
      if (view.charts.labels) view.charts.labels.destroy();
      const format = (u, value, si, idx) => {
        if (value == null) return "–";
        const c = idx == null ? "" : ` (${view.labelCounts[si - 1][idx]} of ${view.labelTotals[idx]})`;
        return `${value.toFixed(0)}%${c}`;
      };
      view.charts.labels = makeChart(node, keys, LABEL_COLOURS, "%", format);
      view.keys.labels = key;
    }
    view.labelCounts = counts;
    view.labelTotals = totals;
    const shares = counts.map((column) => column.map((c, i) => (totals[i] ? (100 * c) / totals[i] : null)));
    view.charts.labels.setData([ring.start.slice(first), ...shares]);
  }

  function renderCodeChart(s) {
    const ring = s.series[view.ring];
    const keys = s.codes;
    const node = $("code-chart");
    const key = `${view.ring}|${keys.join(",")}`;
    const first = firstWithData(keys.map((k) => ring.by_code[k]), ring.start.length);
    if (view.keys.codes !== key || !view.charts.codes) {
      if (view.charts.codes) view.charts.codes.destroy();
      view.charts.codes = makeChart(node, keys, CODE_COLOURS, "n", (u, value) => (value == null ? "–" : `${value}`));
      view.keys.codes = key;
    }
    view.charts.codes.setData([ring.start.slice(first), ...keys.map((k) => ring.by_code[k].slice(first))]);
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
      label.append(swatch(LABEL_COLOURS[i % LABEL_COLOURS.length], DASHES[i % DASHES.length]), r.label);
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
    document.querySelectorAll(".since").forEach((n) => (n.textContent = new Date(s.since).toLocaleString("en-GB")));
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
