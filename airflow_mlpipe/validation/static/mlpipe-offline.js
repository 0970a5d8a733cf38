/* Offline stand-ins for jQuery and vega-embed as used by Great Expectations Data Docs.
   Shipped by airflow-mlpipe: the pages' inline scripts run without CDN access, and charts
   (e.g. KL-divergence histograms) render as plain bar charts. */
(function () {
  function wrap(nodes) {
    var api = {
      length: nodes.length,
      each: function (fn) { nodes.forEach(function (el, i) { fn.call(el, i, el); }); return api; },
      parent: function () { return wrap(nodes.map(function (n) { return n.parentElement; }).filter(Boolean)); },
      ready: function (fn) {
        if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", fn); } else { fn(); }
        return api;
      },
      prepend: function (html) {
        nodes.forEach(function (n) { n.insertAdjacentHTML("afterbegin", html); }); return api;
      },
      bootstrapTable: function (options) {
        // The index page's results tables are built from options.columns/data by bootstrap-table;
        // build the same rows as a plain table (commands such as 'resetSearch' are no-ops).
        if (options && typeof options === "object") { nodes.forEach(function (n) { table(n, options); }); }
        return api;
      },
      fadeIn: function () { nodes.forEach(function (n) { n.style.display = ""; }); return api; },
      fadeOut: function () { nodes.forEach(function (n) { n.style.display = "none"; }); return api; },
      show: function () { return api.fadeIn(); }, hide: function () { return api.fadeOut(); },
      addClass: function (names) { return classes(names, "add"); },
      removeClass: function (names) { return classes(names, "remove"); },
      toggleClass: function (names) { return classes(names, "toggle"); }
    };
    function classes(names, how) {
      String(names || "").split(/\s+/).filter(Boolean).forEach(function (name) {
        nodes.forEach(function (n) { n.classList[how](name); });
      });
      return api;
    }
    ["modal", "tooltip", "popover", "datepicker", "on", "click", "collapse", "tab"]
      .forEach(function (m) { api[m] = function () { return api; }; });
    return api;
  }
  function table(el, options) {
    var columns = (options.columns || []).filter(function (c) { return c.field && c.title; });
    var head = el.createTHead().insertRow();
    columns.forEach(function (c) {
      var th = document.createElement("th"); th.textContent = c.title; head.appendChild(th);
    });
    var body = el.tBodies[0] || el.createTBody();
    (options.data || []).forEach(function (row) {
      var tr = body.insertRow();
      columns.forEach(function (c) {
        var td = tr.insertCell(); td.innerHTML = row[c.field] == null ? "" : String(row[c.field]);
      });
      if (row._table_row_link_path) {
        // GE makes the whole row a link; keep that, with a real anchor so it also works without JS.
        var a = document.createElement("a"); a.href = row._table_row_link_path; a.textContent = "details";
        a.className = "mlpipe-row-link"; tr.insertCell().appendChild(a);
        tr.style.cursor = "pointer";
        tr.addEventListener("click", function () { window.location = row._table_row_link_path; });
      }
    });
    el.classList.add("table", "table-sm");
  }
  function $(arg) {
    if (typeof arg === "function") { document.addEventListener("DOMContentLoaded", arg); return wrap([]); }
    if (typeof arg === "string") { try { return wrap(Array.prototype.slice.call(document.querySelectorAll(arg))); } catch (e) { return wrap([]); } }
    return wrap(arg ? [arg] : []);
  }
  if (!window.jQuery) { window.$ = window.jQuery = $; }
  if (!window.vegaEmbed) {
    window.vegaEmbed = function (target, spec) {
      var el = typeof target === "string" ? document.querySelector(target) : target;
      if (!el || !spec) { return Promise.resolve(); }
      var rows = [];
      if (spec.datasets) { for (var k in spec.datasets) { rows = spec.datasets[k]; break; } }
      else if (spec.data && spec.data.values) { rows = spec.data.values; }
      var enc = spec.encoding || {}, xf = enc.x && enc.x.field, yf = enc.y && enc.y.field;
      if (!rows.length || !xf || !yf) { el.textContent = "(chart not available offline)"; return Promise.resolve(); }
      var max = Math.max.apply(null, rows.map(function (r) { return Number(r[yf]) || 0; })) || 1;
      var chart = document.createElement("div"); chart.className = "mlpipe-chart";
      rows.forEach(function (r, i) {
        var bar = document.createElement("div");
        bar.style.height = (100 * (Number(r[yf]) || 0) / max) + "%";
        bar.title = xf + "=" + r[xf] + ", " + yf + "=" + r[yf];
        if (i % Math.ceil(rows.length / 6) === 0) { var lab = document.createElement("span"); lab.textContent = r[xf]; bar.appendChild(lab); }
        chart.appendChild(bar);
      });
      el.innerHTML = ""; el.appendChild(chart);
      return Promise.resolve();
    };
  }
})();
