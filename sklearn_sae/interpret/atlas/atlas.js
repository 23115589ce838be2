// The atlas page's script, inlined into page.html by sklearn_sae.interpret._atlas_page; it reads the
// data from the script element whose id is atlas-data and draws the table and the cards.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("atlas-data").textContent);
  var META = DATA.meta, TABLE = DATA.table, CARDS = DATA.cards;
  var N = TABLE.latent.length;
  var ROOT = document.documentElement;
  var ROW_OF = {};
  for (var r = 0; r < N; r++) { ROW_OF[TABLE.latent[r]] = r; }

  var COLUMNS = [
    {key: "latent", label: "Latent", format: String},
    {key: "n_active", label: "Active", format: formatInt, tip: "proteins on which the latent is non-zero"},
    {key: "density", label: "Density", format: formatPercent, tip: "fraction of proteins on which it is non-zero"},
    {key: "max", label: "Max", format: formatNumber},
    {key: "mean_active", label: "Mean active", format: formatNumber, tip: "mean of the non-zero activations"}
  ];
  if (META.has_associations) {
    COLUMNS.push({key: "best_label", label: "Best label", format: formatText, text: true,
                  tip: "label with the highest F1 over all thresholds"});
    COLUMNS.push({key: "f1", label: "F1", format: formatNumber, meter: true});
    COLUMNS.push({key: "precision", label: "Precision", format: formatNumber});
    COLUMNS.push({key: "recall", label: "Recall", format: formatNumber});
  }
  var SORTABLE = {};
  COLUMNS.forEach(function (c) { SORTABLE[c.key] = true; });

  var state = {sort: "latent", desc: false, query: "", activeOnly: false, minDensity: null, page: 0,
               pageSize: 50, latent: null};
  var view = [];

  // ---- small helpers -------------------------------------------------------------------------
  function isMissing(x) { return x === null || x === undefined || (typeof x === "number" && isNaN(x)); }
  function formatInt(x) { return isMissing(x) ? "\u2013" : Number(x).toLocaleString("en-US"); }
  function formatNumber(x) {
    if (isMissing(x)) { return "\u2013"; }
    if (x === 0) { return "0"; }
    var size = Math.abs(x);
    if (size >= 1e5 || size < 1e-3) { return x.toExponential(2); }
    return String(Number(x.toPrecision(3)));
  }
  function formatPercent(x) {
    if (isMissing(x)) { return "\u2013"; }
    var p = 100 * x;
    if (p === 0) { return "0%"; }
    return (p >= 10 ? p.toFixed(1) : p >= 0.1 ? p.toFixed(2) : p.toPrecision(2)) + "%";
  }
  function formatText(x) { return isMissing(x) ? "" : String(x); }
  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function svgElement(tag, attributes) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, String(attributes[name])); });
    return node;
  }
  function meter(fraction) {
    var outer = element("span", "meter");
    var inner = element("span");
    inner.style.width = (100 * Math.max(0, Math.min(1, fraction || 0))).toFixed(1) + "%";
    outer.appendChild(inner);
    return outer;
  }
  function columnIndex(table, name) { return META.columns[table].indexOf(name); }

  // ---- state in the URL hash: #latent=5&sort=-f1&q=nucleus&page=2 ---------------------------------
  function readHash() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    var latent = params.get("latent");
    state.latent = latent !== null && /^\d+$/.test(latent) && (Number(latent) in ROW_OF) ? Number(latent) : null;
    var sort = params.get("sort");
    if (sort) {
      var key = sort.replace(/^-/, "");
      if (SORTABLE[key]) { state.sort = key; state.desc = sort.charAt(0) === "-"; }
    }
    state.query = params.get("q") || "";
    state.activeOnly = params.get("active") === "1";
    var page = params.get("page");
    state.page = page && /^\d+$/.test(page) ? Math.max(0, Number(page) - 1) : 0;
  }
  function hashFor(latent) {
    var params = new URLSearchParams();
    if (latent !== null && latent !== undefined) { params.set("latent", String(latent)); }
    if (state.sort !== "latent" || state.desc) { params.set("sort", (state.desc ? "-" : "") + state.sort); }
    if (state.query) { params.set("q", state.query); }
    if (state.activeOnly) { params.set("active", "1"); }
    if (state.page > 0) { params.set("page", String(state.page + 1)); }
    return "#" + params.toString();
  }
  function rememberState() { history.replaceState(null, "", hashFor(state.latent)); }

  // ---- the latent table ----------------------------------------------------------------------------
  function computeView() {
    var query = state.query.trim().toLowerCase();
    var asNumber = /^\d+$/.test(query) ? Number(query) : null;
    var labels = TABLE.best_label || null;
    var kept = [];
    for (var i = 0; i < N; i++) {
      if (state.activeOnly && TABLE.n_active[i] === 0) { continue; }
      if (state.minDensity !== null && !(TABLE.density[i] * 100 >= state.minDensity)) { continue; }
      if (query) {
        var label = labels && labels[i] !== null ? String(labels[i]).toLowerCase() : "";
        if (TABLE.latent[i] !== asNumber && label.indexOf(query) < 0) { continue; }
      }
      kept.push(i);
    }
    var values = TABLE[state.sort], direction = state.desc ? -1 : 1;
    kept.sort(function (a, b) {
      var x = values[a], y = values[b], xMissing = isMissing(x), yMissing = isMissing(y);
      if (xMissing || yMissing) { return xMissing === yMissing ? a - b : (xMissing ? 1 : -1); }
      if (x < y) { return -direction; }
      if (x > y) { return direction; }
      return TABLE.latent[a] - TABLE.latent[b];
    });
    view = kept;
  }

  function buildHeader() {
    var row = document.querySelector("#latent-table thead tr");
    COLUMNS.forEach(function (column) {
      var cell = element("th", column.text ? "text" : "", column.label);
      cell.setAttribute("data-key", column.key);
      if (column.tip) { cell.title = column.tip; }
      cell.addEventListener("click", function () {
        if (state.sort === column.key) { state.desc = !state.desc; }
        else { state.sort = column.key; state.desc = !column.text && column.key !== "latent"; }
        state.page = 0;
        refreshTable();
      });
      row.appendChild(cell);
    });
  }

  function refreshTable() {
    computeView();
    renderTable();
    rememberState();
  }

  function renderTable() {
    document.querySelectorAll("#latent-table th").forEach(function (cell) {
      var sorted = cell.getAttribute("data-key") === state.sort;
      cell.classList.toggle("sorted", sorted);
      cell.classList.toggle("desc", sorted && state.desc);
    });
    var pages = Math.max(1, Math.ceil(view.length / state.pageSize));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * state.pageSize, stop = Math.min(view.length, start + state.pageSize);
    var body = document.querySelector("#latent-table tbody");
    var rows = document.createDocumentFragment();
    for (var k = start; k < stop; k++) { rows.appendChild(tableRow(view[k])); }
    body.textContent = "";
    body.appendChild(rows);
    document.getElementById("page-info").textContent = view.length === 0
      ? "No latent matches."
      : "Latents " + formatInt(start + 1) + "\u2013" + formatInt(stop) + " of " + formatInt(view.length) +
        (view.length < N ? " (filtered from " + formatInt(N) + ")" : "");
    document.getElementById("page-number").textContent = "page " + (state.page + 1) + " / " + pages;
    document.getElementById("previous-page").disabled = state.page === 0;
    document.getElementById("next-page").disabled = state.page >= pages - 1;
  }

  function tableRow(i) {
    var row = element("tr", TABLE.n_active[i] === 0 ? "dead" : "");
    row.setAttribute("data-latent", String(TABLE.latent[i]));
    if (TABLE.latent[i] === state.latent) { row.classList.add("selected"); }
    COLUMNS.forEach(function (column) {
      var value = TABLE[column.key][i];
      var cell = element("td", column.text ? "text" : "", column.format(value));
      if (column.text && !isMissing(value)) { cell.title = String(value); }
      if (column.meter && !isMissing(value)) { cell.appendChild(meter(value)); }
      row.appendChild(cell);
    });
    row.tabIndex = 0;  // reachable with the keyboard: Tab to a row, Enter opens its card
    row.addEventListener("click", function () { openCard(TABLE.latent[i]); });
    row.addEventListener("keydown", function (event) { if (event.key === "Enter") { openCard(TABLE.latent[i]); } });
    return row;
  }

  function openCard(latent) { window.location.hash = hashFor(latent); }

  // ---- the feature card ----------------------------------------------------------------------------
  function renderCard() {
    var panel = document.getElementById("card-panel");
    panel.textContent = "";
    document.querySelectorAll("#latent-table tbody tr").forEach(function (row) {
      row.classList.toggle("selected", Number(row.getAttribute("data-latent")) === state.latent);
    });
    if (state.latent === null) {
      panel.appendChild(element("p", "hint", "Click a latent in the table to open its card."));
      ROOT.removeAttribute("data-card");
      return;
    }
    var i = ROW_OF[state.latent], card = CARDS[String(state.latent)];
    var article = element("article", "card");
    article.appendChild(cardHeader(i));
    if (!card) {
      article.appendChild(element("p", "hint", TABLE.n_active[i] === 0
        ? "This latent is never active: it has no card."
        : "This atlas was written without a card for this latent (cards_for=\"" + META.cards_for + "\")."));
    } else {
      section(article, "Activations (non-zero only)", histogram(card.hist, TABLE.max[i]));
      section(article, "Top proteins", proteinTable("top", card.top, TABLE.max[i], false));
      if (META.label_sets.length) { section(article, "Labels of the top proteins vs all proteins", composition(card.composition)); }
      if (META.has_associations) { section(article, "Label associations", associations(card.associations)); }
      section(article, "Examples across the activation range", proteinTable("examples", card.examples, TABLE.max[i], true));
      section(article, "Neighbouring latents", neighbours(card));
    }
    panel.appendChild(article);
    panel.scrollTop = 0;
    ROOT.setAttribute("data-card", String(state.latent));
  }

  function section(parent, title, content) {
    parent.appendChild(element("h3", "", title));
    parent.appendChild(content);
  }

  function cardHeader(i) {
    var box = element("div");
    var head = element("div", "card-head");
    head.appendChild(element("h2", "", "Latent " + TABLE.latent[i]));
    head.appendChild(element("span", "spacer"));
    var position = view.indexOf(i);
    [["\u2190 previous", position - 1], ["next \u2192", position + 1]].forEach(function (step) {
      var button = element("button", "", step[0]);
      button.disabled = position < 0 || step[1] < 0 || step[1] >= view.length;
      button.title = "the neighbouring row of the table, as sorted and filtered";
      button.addEventListener("click", function () { openCard(TABLE.latent[view[step[1]]]); });
      head.appendChild(button);
    });
    var close = element("button", "", "close");
    close.addEventListener("click", function () { openCard(null); });
    head.appendChild(close);
    box.appendChild(head);
    var chips = element("div", "chips");
    var facts = [
      ["active on ", formatInt(TABLE.n_active[i]) + " / " + formatInt(META.n_proteins) + " proteins"],
      ["density ", formatPercent(TABLE.density[i])],
      ["max ", formatNumber(TABLE.max[i])],
      ["mean when active ", formatNumber(TABLE.mean_active[i])]
    ];
    if (META.has_associations && !isMissing(TABLE.best_label[i])) {
      facts.push(["best label ", TABLE.best_label[i] + " (F1 " + formatNumber(TABLE.f1[i]) + ")"]);
    }
    facts.forEach(function (fact) {
      var chip = element("span", "chip", fact[0]);
      chip.appendChild(element("b", "", fact[1]));
      chips.appendChild(chip);
    });
    box.appendChild(chips);
    return box;
  }

  function histogram(counts, max) {
    var width = 460, height = 128, left = 44, right = 10, top = 8, bottom = 22;
    var svg = svgElement("svg", {"class": "histogram", width: width, height: height,
                                 viewBox: "0 0 " + width + " " + height, role: "img"});
    var peak = 0;
    counts.forEach(function (c) { peak = Math.max(peak, c); });
    var plotWidth = width - left - right, plotHeight = height - top - bottom, step = plotWidth / counts.length;
    counts.forEach(function (count, k) {
      if (!count) { return; }
      var barHeight = Math.max(1, plotHeight * count / (peak || 1));
      var bar = svgElement("rect", {"class": "bin", x: (left + k * step).toFixed(2),
                                    y: (top + plotHeight - barHeight).toFixed(2),
                                    width: Math.max(0.5, step - 1).toFixed(2), height: barHeight.toFixed(2)});
      var tip = svgElement("title");
      tip.textContent = formatInt(count) + " proteins in (" + formatNumber(max * k / counts.length) + ", " +
        formatNumber(max * (k + 1) / counts.length) + "]";
      bar.appendChild(tip);
      svg.appendChild(bar);
    });
    svg.appendChild(svgElement("line", {x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight}));
    svg.appendChild(svgElement("line", {x1: left, x2: left, y1: top, y2: top + plotHeight}));
    [[left, "start", "0"], [left + plotWidth / 2, "middle", formatNumber(max / 2)],
     [width - right, "end", formatNumber(max)]].forEach(function (tick) {
      var label = svgElement("text", {x: tick[0], y: height - 6, "text-anchor": tick[1]});
      label.textContent = tick[2];
      svg.appendChild(label);
    });
    [[top + 8, formatInt(peak)], [top + plotHeight, "0"]].forEach(function (tick) {
      var label = svgElement("text", {x: left - 5, y: tick[0], "text-anchor": "end"});
      label.textContent = tick[1];
      svg.appendChild(label);
    });
    return svg;
  }

  function labelValue(set, code) {
    if (isMissing(code)) { return ""; }
    var values = META.label_values[set];
    return values && code < values.length ? String(values[code]) : String(code);
  }

  function proteinTable(name, rows, max, withInterval) {
    var columns = META.columns[name];
    var idAt = columns.indexOf("id"), activationAt = columns.indexOf("activation");
    var intervalAt = columns.indexOf("interval");
    var table = element("table");
    var headRow = element("tr");
    table.appendChild(element("thead")).appendChild(headRow);
    var shown = withInterval ? ["range", "id", "activation"] : ["#", "id", "activation"];
    shown.concat(META.label_sets).forEach(function (title, k) {
      headRow.appendChild(element("th", k === 1 || k > 2 ? "text" : "", title));
    });
    var body = table.appendChild(element("tbody"));
    rows.forEach(function (row, rank) {
      var line = element("tr");
      var first;
      if (withInterval) {
        var slice = row[intervalAt];
        first = formatNumber(max * slice / META.n_intervals) + "\u2013" + formatNumber(max * (slice + 1) / META.n_intervals);
      } else {
        first = String(rank + 1);
      }
      line.appendChild(element("td", "", first));
      var id = element("td", "text", formatText(row[idAt]));
      id.title = formatText(row[idAt]);
      line.appendChild(id);
      var activation = element("td", "", formatNumber(row[activationAt]));
      activation.appendChild(meter(max > 0 ? row[activationAt] / max : 0));
      line.appendChild(activation);
      META.label_sets.forEach(function (set) {
        var value = labelValue(set, row[columns.indexOf(set)]);
        var cell = element("td", "text", value);
        cell.title = value;
        line.appendChild(cell);
      });
      body.appendChild(line);
    });
    if (!rows.length) { return element("p", "hint", "No active protein."); }
    var wrapper = element("div", "scroll-x");
    wrapper.appendChild(table);
    return wrapper;
  }

  function composition(rows) {
    var box = element("div");
    var legend = element("div", "legend");
    [["var(--accent)", "top proteins"], ["var(--background-bar)", "all proteins"]].forEach(function (entry) {
      var swatch = element("i");
      swatch.style.background = entry[0];
      legend.appendChild(swatch);
      legend.appendChild(document.createTextNode(entry[1]));
    });
    box.appendChild(legend);
    var setAt = columnIndex("composition", "label_set"), labelAt = columnIndex("composition", "label");
    var topAt = columnIndex("composition", "top_fraction"), backgroundAt = columnIndex("composition", "background_fraction");
    META.label_sets.forEach(function (set, s) {
      var mine = rows.filter(function (row) { return row[setAt] === s; }).slice(0, 8);
      if (!mine.length) { return; }
      var group = element("div", "composition-set");
      if (META.label_sets.length > 1) { group.appendChild(element("div", "set-name", set)); }
      mine.forEach(function (row) {
        var line = element("div", "comp-row");
        var name = element("span", "name", formatText(row[labelAt]));
        name.title = formatText(row[labelAt]);
        line.appendChild(name);
        var track = element("div", "track");
        var top = element("span", "top"), background = element("span", "background");
        top.style.width = (100 * row[topAt]).toFixed(1) + "%";
        background.style.width = (100 * (row[backgroundAt] || 0)).toFixed(1) + "%";
        track.appendChild(top);
        track.appendChild(background);
        line.appendChild(track);
        line.appendChild(element("span", "numbers", formatPercent(row[topAt]) + " vs " + formatPercent(row[backgroundAt])));
        group.appendChild(line);
      });
      box.appendChild(group);
    });
    if (!rows.length) { box.appendChild(element("p", "hint", "No labelled protein among the top proteins.")); }
    return box;
  }

  var ASSOCIATION_COLUMNS = [
    ["threshold", "threshold", formatNumber], ["f1", "F1", formatNumber], ["precision", "precision", formatNumber],
    ["recall", "recall", formatNumber], ["fold_enrichment", "fold enr.", formatNumber],
    ["auroc", "AUROC", formatNumber], ["qvalue", "q-value", formatNumber]
  ];

  function associations(rows) {
    if (!rows.length) { return element("p", "hint", "No association."); }
    var columns = META.columns.associations;
    var shown = ASSOCIATION_COLUMNS.filter(function (c) { return columns.indexOf(c[0]) >= 0; });
    var setAt = columns.indexOf("label_set"), labelAt = columns.indexOf("label");
    var table = element("table");
    var headRow = element("tr");
    table.appendChild(element("thead")).appendChild(headRow);
    headRow.appendChild(element("th", "text", "label"));
    shown.forEach(function (c) { headRow.appendChild(element("th", "", c[1])); });
    var body = table.appendChild(element("tbody"));
    rows.forEach(function (row) {
      var line = element("tr");
      var name = formatText(row[labelAt]);
      if (setAt >= 0 && META.label_sets.length > 1) {
        var set = typeof row[setAt] === "number" ? META.label_sets[row[setAt]] : row[setAt];
        name = formatText(set) + ": " + name;
      }
      var cell = element("td", "text", name);
      var support = columns.indexOf("n_pos");
      cell.title = support >= 0 ? name + " (" + formatInt(row[support]) + " proteins)" : name;
      line.appendChild(cell);
      shown.forEach(function (c) {
        var value = row[columns.indexOf(c[0])];
        line.appendChild(element("td", "", c[2](value)));
      });
      body.appendChild(line);
    });
    var wrapper = element("div", "scroll-x");
    wrapper.appendChild(table);
    return wrapper;
  }

  function neighbours(card) {
    var box = element("div", "neighbours");
    [["decoder", "by decoder cosine", "cosine", META.has_components ? "" : "No decoder atoms were given."],
     ["coactivation", "by co-activation (Jaccard)", "jaccard", ""]].forEach(function (kind) {
      var column = element("div", "neighbour-list");
      column.appendChild(element("div", "hint", kind[1]));
      var rows = card[kind[0]], latentAt = columnIndex(kind[0], "latent"), scoreAt = columnIndex(kind[0], kind[2]);
      rows.forEach(function (row) {
        var link = element("a", "", "#" + row[latentAt]);
        link.href = hashFor(row[latentAt]);
        link.appendChild(element("span", "", formatNumber(row[scoreAt])));
        column.appendChild(link);
      });
      if (!rows.length) { column.appendChild(element("div", "hint", kind[3] || "None.")); }
      box.appendChild(column);
    });
    return box;
  }

  // ---- wiring --------------------------------------------------------------------------------------
  function syncControls() {
    document.getElementById("search").value = state.query;
    document.getElementById("active-only").checked = state.activeOnly;
  }

  function wireControls() {
    var search = document.getElementById("search");
    search.addEventListener("input", function () { state.query = search.value; state.page = 0; refreshTable(); });
    var active = document.getElementById("active-only");
    active.addEventListener("change", function () { state.activeOnly = active.checked; state.page = 0; refreshTable(); });
    var density = document.getElementById("min-density");
    density.addEventListener("input", function () {
      var value = parseFloat(density.value);
      state.minDensity = isNaN(value) ? null : value;
      state.page = 0;
      refreshTable();
    });
    var size = document.getElementById("page-size");
    size.addEventListener("change", function () { state.pageSize = Number(size.value); state.page = 0; refreshTable(); });
    document.getElementById("previous-page").addEventListener("click", function () { state.page -= 1; refreshTable(); });
    document.getElementById("next-page").addEventListener("click", function () { state.page += 1; refreshTable(); });
    window.addEventListener("hashchange", function () {
      readHash();
      syncControls();
      computeView();
      renderTable();
      renderCard();
    });
  }

  readHash();
  buildHeader();
  wireControls();
  syncControls();
  computeView();
  renderTable();
  renderCard();
  ROOT.setAttribute("data-atlas-status", "rendered");
})();
