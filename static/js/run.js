// Live curves of a run: one uPlot chart per metric, fed by /admin/runs/{id}/metrics?after=N.
// Polls every 2 s until the server says the run has ended.
(function () {
  "use strict";

  // Numbers on axes and in legends. uPlot's default shows at most three decimals, so a learning
  // rate near 1e-5 read "0, 0, 0". The rules match app/web/charts.py (tick_labels, format_value):
  // ticks share one notation, fixed decimals for steps from 0.001 and values under a million,
  // otherwise scientific ("2.5e-5", "1.2e6"), with as few digits as tell the ticks apart.
  function sci(value, digits) {
    const [mantissa, exponent] = value.toExponential(digits).split("e");
    return mantissa + "e" + String(Number(exponent));
  }
  function formatTicks(ticks, step) {
    const finite = ticks.filter(Number.isFinite);
    if (!finite.length) return ticks.map(String);
    const size = Math.max.apply(null, finite.map(Math.abs));
    const incr = step > 0 ? step : (finite.length > 1 ? Math.abs(finite[1] - finite[0]) : size) || 1;
    const tolerance = incr * 1e-6;
    const exact = (format) => finite.every((v) => Math.abs(Number(format(v).replace(/,/g, "")) - v) <= tolerance);
    if (incr >= 1e-3 && size < 1e6) {
      let d = 0;
      const fixed = (v) => v.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
      while (d < 10 && !exact(fixed)) d += 1;
      return ticks.map((v) => (v === 0 ? "0" : fixed(v).replace(/^-(0(\.0+)?)$/, "$1")));
    }
    let s = 0;
    while (s < 10 && !exact((v) => sci(v, s))) s += 1;
    return ticks.map((v) => (v === 0 ? "0" : sci(v, s)));
  }
  function formatValue(value) {
    if (value == null || !Number.isFinite(value)) return "–";
    const size = Math.abs(value);
    if (value === 0) return "0";
    if (size >= 1e6 || size < 1e-3) return sci(value, 3).replace(/\.?0+e/, "e");
    if (size >= 1000) return value.toLocaleString("en-US", { maximumFractionDigits: 0 });
    return String(Number(value.toPrecision(4)));
  }
  window.rlhfNumbers = { formatTicks: formatTicks, formatValue: formatValue };

  const root = document.getElementById("charts");
  if (!root || typeof uPlot === "undefined") return;
  const url = root.dataset.metricsUrl;
  const charts = {};   // name -> {plot, xs, ys, box}
  let after = 0;

  // Colours from the page's theme (light or dark, app.css).
  function colour(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function chartFor(name) {
    if (charts[name]) return charts[name];
    const empty = root.querySelector("[data-empty]");
    if (empty) empty.remove();
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.metric = name;
    box.setAttribute("role", "img");
    root.appendChild(box);
    const width = Math.min(480, Math.max(280, root.clientWidth / 2 - 24));
    const text = colour("--fg", "#1d2330");
    const line = colour("--line", "#d9dee6");
    const axis = {
      stroke: text,
      grid: { stroke: line, width: 1 },
      ticks: { stroke: line, width: 1 },
      values: function (u, splits, axisIdx, space, incr) { return formatTicks(splits, incr); },
    };
    const plot = new uPlot({
      title: name, width: width, height: 200,
      scales: { x: { time: false } },
      axes: [Object.assign({ label: "step" }, axis), Object.assign({ size: 64 }, axis)],
      series: [
        { value: function (u, v) { return v == null ? "–" : String(v); } },
        { label: name, stroke: colour("--accent", "#2f5bd3"), width: 2,
          value: function (u, v) { return formatValue(v); } },
      ],
    }, [[], []], box);
    charts[name] = { plot: plot, xs: [], ys: [], box: box };
    return charts[name];
  }

  // Canvas is mute: the box says in words what the curve shows.
  function describe(name, chart) {
    const n = chart.ys.length;
    if (!n) return;
    const finite = chart.ys.filter(Number.isFinite);
    const low = Math.min.apply(null, finite);
    const high = Math.max.apply(null, finite);
    chart.box.setAttribute("aria-label", name + ": " + n + " points up to step " + chart.xs[n - 1] +
      ", last " + formatValue(chart.ys[n - 1]) + ", from " + formatValue(low) + " to " + formatValue(high));
  }

  function poll() {
    fetch(url + "?after=" + after, { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        Object.keys(data.series).sort().forEach(function (name) {
          const chart = chartFor(name);
          data.series[name].forEach(function (point) { chart.xs.push(point[0]); chart.ys.push(point[1]); });
          chart.plot.setData([chart.xs, chart.ys]);
          describe(name, chart);
        });
        after = data.last;
        if (!data.finished) setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
