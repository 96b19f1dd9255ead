// Live curves of a run: one uPlot chart per metric, fed by /admin/runs/{id}/metrics?after=N.
// Polls every 2 s until the server says the run has ended.
(function () {
  "use strict";
  const root = document.getElementById("charts");
  if (!root || typeof uPlot === "undefined") return;
  const url = root.dataset.metricsUrl;
  const charts = {};   // name -> {plot, xs, ys}
  let after = 0;

  function chartFor(name) {
    if (charts[name]) return charts[name];
    const empty = root.querySelector("[data-empty]");
    if (empty) empty.remove();
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.metric = name;
    root.appendChild(box);
    const width = Math.min(480, Math.max(280, root.clientWidth / 2 - 24));
    const plot = new uPlot({
      title: name, width: width, height: 200,
      scales: { x: { time: false } },
      axes: [{ label: "step" }, {}],
      series: [{}, { label: name, stroke: "#2f5bd3", width: 2 }],
    }, [[], []], box);
    charts[name] = { plot: plot, xs: [], ys: [] };
    return charts[name];
  }

  function poll() {
    fetch(url + "?after=" + after, { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        Object.keys(data.series).sort().forEach(function (name) {
          const chart = chartFor(name);
          data.series[name].forEach(function (point) { chart.xs.push(point[0]); chart.ys.push(point[1]); });
          chart.plot.setData([chart.xs, chart.ys]);
        });
        after = data.last;
        if (!data.finished) setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
