// FlipMatch operator console: plain JavaScript on the JSON API (/v1/...), no build step.
// The API key lives in the `apiKey` variable below and nowhere else: it is sent only in the Authorization
// header, never put in a URL, a cookie, localStorage/sessionStorage, or logged.
"use strict";
(() => {
  let apiKey = "";
  let current = null; // selected corpus name
  let page = { offset: 0, limit: 100, count: 0, entries: [] };
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  function say(text, kind) {
    const box = $("message");
    box.textContent = text;
    box.className = kind || "";
  }

  async function api(method, path, body, contentType) {
    const headers = {};
    if (apiKey) headers.Authorization = "Bearer " + apiKey;
    let payload;
    if (body !== undefined) {
      headers["Content-Type"] = contentType || "application/json";
      payload = contentType ? body : JSON.stringify(body);
    }
    const response = await fetch(path, { method, headers, body: payload, cache: "no-store",
                                         credentials: "omit", referrerPolicy: "no-referrer" });
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = response.status + ": " + (await response.json()).error.message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    const type = response.headers.get("content-type") || "";
    if (response.status === 204) return null;
    return type.includes("application/json") ? response.json() : response.blob();
  }

  function run(action) {
    return async (event) => {
      if (event) event.preventDefault();
      try { await action(); } catch (err) { say(err.message, "error"); }
    };
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function fmt(x) { return x === null || x === undefined ? "-" : Number(x).toFixed(3); }
  const enc = encodeURIComponent;

  // ---- corpora -----------------------------------------------------------------------------------------------
  async function loadCorpora() {
    const body = await api("GET", "/v1/corpora");
    const tbody = $("corpora");
    tbody.replaceChildren();
    for (const c of body.data) {
      const row = document.createElement("tr");
      row.dataset.name = c.name;
      if (c.name === current) row.className = "selected";
      for (const v of [c.name, c.entries, fmt(c.answer_threshold), fmt(c.clarify_margin), c.status]) cell(row, v);
      row.addEventListener("click", run(() => select(c.name)));
      tbody.appendChild(row);
    }
    return body.data;
  }

  async function select(name) {
    current = name;
    page.offset = 0;
    $("corpus-panel").hidden = false;
    $("corpus-title").textContent = name;
    const corpus = await api("GET", "/v1/corpora/" + enc(name));
    $("threshold").value = corpus.answer_threshold;
    $("margin").value = corpus.clarify_margin;
    $("try-outcome").textContent = "";
    $("try-candidates").replaceChildren();
    $("try-plot").replaceChildren();
    await Promise.all([loadEntries(), loadCalibration(), loadCorpora()]);
  }

  // ---- entries -----------------------------------------------------------------------------------------------
  async function loadEntries() {
    const body = await api("GET", `/v1/corpora/${enc(current)}/entries?offset=${page.offset}&limit=${page.limit}`);
    page.count = body.count;
    page.entries = body.data;
    renderEntries();
  }

  function renderEntries() {
    const needle = $("filter").value.trim().toLowerCase();
    const tbody = $("entries");
    tbody.replaceChildren();
    for (const e of page.entries) {
      const text = [e.id, e.question, e.answer, ...e.alt_questions].join(" ").toLowerCase();
      if (needle && !text.includes(needle)) continue;
      const row = document.createElement("tr");
      row.dataset.id = e.id;
      cell(row, e.id);
      cell(row, e.question);
      cell(row, String(e.alt_questions.length));
      row.addEventListener("click", () => edit(e));
      tbody.appendChild(row);
    }
    const last = Math.min(page.offset + page.limit, page.count);
    $("page").textContent = page.count ? `${page.offset + 1}-${last} of ${page.count}` : "no entries";
  }

  function edit(e) {
    $("entry-id").value = e.id;
    $("entry-question").value = e.question;
    $("entry-alts").value = e.alt_questions.join("\n");
    $("entry-answer").value = e.answer;
    $("entry-metadata").value = JSON.stringify(e.metadata);
  }

  async function saveEntry() {
    let metadata;
    try { metadata = JSON.parse($("entry-metadata").value || "{}"); } catch (_) {
      throw new Error("metadata is not valid JSON");
    }
    const id = $("entry-id").value.trim();
    const body = { question: $("entry-question").value, answer: $("entry-answer").value, metadata,
                   alt_questions: $("entry-alts").value.split("\n").map((s) => s.trim()).filter(Boolean) };
    await api("PUT", `/v1/corpora/${enc(current)}/entries/${enc(id)}`, body);
    say(`entry ${id} saved`, "ok");
    await Promise.all([loadEntries(), loadCorpora()]);
  }

  async function deleteEntry() {
    const id = $("entry-id").value.trim();
    if (!id || !confirm(`Delete entry ${id}?`)) return;
    await api("DELETE", `/v1/corpora/${enc(current)}/entries/${enc(id)}`);
    say(`entry ${id} deleted`, "ok");
    await Promise.all([loadEntries(), loadCorpora()]);
  }

  // ---- try it ------------------------------------------------------------------------------------------------
  async function tryQuery() {
    const body = await api("POST", `/v1/corpora/${enc(current)}/search`, { query: $("try-query").value, top_k: 5 });
    const result = body.results[0];
    const corpus = await api("GET", "/v1/corpora/" + enc(current));
    const outcome = $("try-outcome");
    outcome.textContent = `${result.outcome}` + (result.entry_id ? ` → ${result.entry_id}` : "") +
      (result.options.length ? ` (options: ${result.options.join(", ")})` : "") +
      `   [answer_threshold ${fmt(corpus.answer_threshold)}, clarify_margin ${fmt(corpus.clarify_margin)}]`;
    outcome.className = "outcome-" + result.outcome;
    outcome.dataset.outcome = result.outcome;
    const tbody = $("try-candidates");
    tbody.replaceChildren();
    for (const c of result.candidates) {
      const row = document.createElement("tr");
      cell(row, c.id);
      cell(row, c.matched_question);
      cell(row, fmt(c.score));
      row.title = "edit this entry";
      row.addEventListener("click", run(async () => edit(await api("GET", `/v1/corpora/${enc(current)}/entries/${enc(c.id)}`))));
      tbody.appendChild(row);
    }
    drawScores(result.candidates.map((c) => c.score), corpus.answer_threshold, corpus.clarify_margin);
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Scores on a [lo, 1] axis: a dot per candidate, the threshold line, and the clarify band below the top score.
  function drawScores(scores, threshold, margin) {
    const svg = $("try-plot");
    svg.replaceChildren();
    const lo = Math.min(threshold, ...scores, 1) - 0.05;
    const x = (v) => 10 + (400 * (v - lo)) / (1 - lo);
    svg.appendChild(el("line", { x1: x(lo), x2: x(1), y1: 50, y2: 50, stroke: "#999" }));
    if (scores.length) {
      svg.appendChild(el("rect", { x: x(scores[0] - margin), y: 38, width: Math.max(1, x(scores[0]) - x(scores[0] - margin)),
                                   height: 24, fill: "#ffe0a3", id: "clarify-band" }));
    }
    svg.appendChild(el("line", { x1: x(threshold), x2: x(threshold), y1: 20, y2: 80, stroke: "#b00020",
                                 "stroke-width": 2, id: "threshold-line" }));
    svg.appendChild(el("text", { x: x(threshold) + 3, y: 16, "font-size": 11, fill: "#b00020" },
                       `threshold ${fmt(threshold)}`));
    scores.forEach((s, i) => {
      svg.appendChild(el("circle", { cx: x(s), cy: 50, r: i === 0 ? 6 : 4, fill: i === 0 ? "#1565c0" : "#90a4ae",
                                     class: "score-dot" }));
    });
    svg.appendChild(el("text", { x: 10, y: 84, "font-size": 11 }, fmt(lo)));
    svg.appendChild(el("text", { x: 395, y: 84, "font-size": 11 }, "1.0"));
  }

  // ---- calibration -------------------------------------------------------------------------------------------
  async function loadCalibration() {
    $("calibration-summary").textContent = "";
    $("calibration-plot").replaceChildren();
    try {
      showCalibration(await api("GET", `/v1/corpora/${enc(current)}/calibration`));
    } catch (err) {
      $("calibration-summary").textContent = err.message.startsWith("404") ? "not calibrated yet" : err.message;
    }
  }

  async function calibrate() {
    const query = `target_precision=${enc($("target-precision").value)}&target_no_match=${enc($("target-no-match").value)}`;
    const labelled = $("labelled").value.trim();
    say("calibrating…");
    const path = `/v1/corpora/${enc(current)}/calibrate?${query}`;
    const result = labelled ? await api("POST", path, labelled + "\n", "text/csv") : await api("POST", path);
    showCalibration(result);
    say(`calibrated: answer_threshold ${fmt(result.answer_threshold)}, clarify_margin ${fmt(result.clarify_margin)}`,
        "ok");
    await select(current);
  }

  function showCalibration(c) {
    const p = c.point;
    $("calibration-summary").textContent =
      `${c.source} calibration (${c.positives} in-scope, ${c.negatives} out-of-scope queries): ` +
      `threshold ${fmt(c.answer_threshold)}, margin ${fmt(c.clarify_margin)}; precision ${fmt(p.precision)}, ` +
      `coverage ${fmt(p.coverage)}, no-match ${fmt(p.no_match)}` + (c.met ? "" : " (targets NOT met)");
    drawCurve(c);
  }

  // The curve: precision, coverage, clarify and no-match against the threshold; the chosen threshold marked.
  function drawCurve(c) {
    const svg = $("calibration-plot");
    svg.replaceChildren();
    const pts = c.curve;
    if (!pts.length) return;
    const W = 420, H = 240, L = 36, R = 10, T = 10, B = 40;
    const t0 = pts[0].answer_threshold, t1 = pts[pts.length - 1].answer_threshold;
    const x = (t) => L + ((W - L - R) * (t - t0)) / Math.max(1e-9, t1 - t0);
    const y = (v) => T + (H - T - B) * (1 - v);
    svg.appendChild(el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#ccc" }));
    for (const v of [0, 0.5, 1]) svg.appendChild(el("text", { x: 4, y: y(v) + 4, "font-size": 10 }, v.toFixed(1)));
    svg.appendChild(el("text", { x: L, y: H - 24, "font-size": 10 }, fmt(t0)));
    svg.appendChild(el("text", { x: W - R - 30, y: H - 24, "font-size": 10 }, fmt(t1)));
    svg.appendChild(el("text", { x: W / 2 - 40, y: H - 24, "font-size": 10 }, "answer_threshold"));
    const series = [["precision", "#1565c0"], ["coverage", "#2e7d32"], ["no_match", "#b00020"], ["clarify", "#f9a825"]];
    series.forEach(([name, colour], i) => {
      const d = pts.filter((p) => p[name] !== null)
        .map((p, j) => `${j ? "L" : "M"}${x(p.answer_threshold).toFixed(1)},${y(p[name]).toFixed(1)}`).join(" ");
      if (d) svg.appendChild(el("path", { d, fill: "none", stroke: colour, "stroke-width": 2, class: "curve-" + name }));
      svg.appendChild(el("text", { x: L + i * 95, y: H - 6, "font-size": 11, fill: colour }, name));
    });
    svg.appendChild(el("line", { x1: x(c.answer_threshold), x2: x(c.answer_threshold), y1: T, y2: H - B,
                                 stroke: "#000", "stroke-dasharray": "4 3", id: "chosen-threshold" }));
  }

  // ---- import / export ---------------------------------------------------------------------------------------
  async function importFile() {
    const file = $("import-file").files[0];
    if (!file) throw new Error("choose a .csv or .jsonl file first");
    const type = file.name.toLowerCase().endsWith(".csv") ? "text/csv" : "application/x-ndjson";
    const result = await api("POST", `/v1/corpora/${enc(current)}/import`, await file.text(), type);
    say(`imported ${result.entries} entries (${result.vectors} vectors)`, "ok");
    await Promise.all([loadEntries(), loadCorpora()]);
  }

  async function exportAs(format) {
    // fetch + Blob rather than a link, so the key travels in the header, not the URL.
    const blob = await api("GET", `/v1/corpora/${enc(current)}/export?format=${format}`);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${current}.${format}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    say(`exported ${current}.${format}`, "ok");
  }

  // ---- wiring ------------------------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", run(async () => {
      apiKey = $("key").value.trim();
      $("key").value = ""; // the input keeps no copy
      $("key-state").textContent = apiKey ? "key set (in memory)" : "no key";
      await loadCorpora();
      say("key set", "ok");
    }));
    $("forget-key").addEventListener("click", () => { apiKey = ""; $("key-state").textContent = "no key"; });
    $("refresh").addEventListener("click", run(loadCorpora));
    $("create-form").addEventListener("submit", run(async () => {
      const name = $("new-name").value.trim();
      await api("POST", "/v1/corpora", { name, description: $("new-description").value });
      say(`corpus ${name} created`, "ok");
      await select(name);
    }));
    $("settings-form").addEventListener("submit", run(async () => {
      await api("PATCH", "/v1/corpora/" + enc(current), { answer_threshold: Number($("threshold").value),
                                                           clarify_margin: Number($("margin").value) });
      say("settings saved", "ok");
      await loadCorpora();
    }));
    $("delete-corpus").addEventListener("click", run(async () => {
      if (!confirm(`Delete corpus ${current} and all its entries?`)) return;
      await api("DELETE", "/v1/corpora/" + enc(current));
      say(`corpus ${current} deleted`, "ok");
      current = null;
      $("corpus-panel").hidden = true;
      await loadCorpora();
    }));
    $("try-form").addEventListener("submit", run(tryQuery));
    $("entry-form").addEventListener("submit", run(saveEntry));
    $("delete-entry").addEventListener("click", run(deleteEntry));
    $("filter").addEventListener("input", renderEntries);
    $("prev").addEventListener("click", run(async () => {
      page.offset = Math.max(0, page.offset - page.limit);
      await loadEntries();
    }));
    $("next").addEventListener("click", run(async () => {
      if (page.offset + page.limit < page.count) page.offset += page.limit;
      await loadEntries();
    }));
    $("calibrate-form").addEventListener("submit", run(calibrate));
    $("import-button").addEventListener("click", run(importFile));
    $("export-jsonl").addEventListener("click", run(() => exportAs("jsonl")));
    $("export-csv").addEventListener("click", run(() => exportAs("csv")));
    run(loadCorpora)();
  });
})();
