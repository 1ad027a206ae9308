// The playground: sends the text to /normalize and /classify and shows what came back.
// The sentences it shows about a verdict (summary, what each code means, why a candidate was
// left as is) are the API's explanation, so the page and the API never word them differently.
// Every string from the user or the API is put in the page as text (textContent), never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "algospeak.apiKey";
  const ACTIONS = new Set(["allow", "review", "block"]);
  const INVISIBLE = /^[\p{Cf}\p{Z}\s]*$/u;

  const byId = (id) => document.getElementById(id);
  const form = byId("check-form");
  const textInput = byId("text");
  const keyInput = byId("api-key");
  const button = byId("check");
  const statusLine = byId("status");
  const errorBox = byId("error");
  const results = byId("results");

  let latest = 0; // the newest check; answers to older ones are dropped

  // --- small DOM helpers -------------------------------------------------------------------

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function replaceChildren(parent, nodes) {
    parent.replaceChildren(...nodes);
  }

  // The /classify answer's explanation (asked for with explain: true), or null.
  function explanationOf(body) {
    return body.explanation && typeof body.explanation === "object" ? body.explanation : null;
  }

  function percent(value) {
    return `${(Number(value) * 100).toFixed(1)}%`;
  }

  // --- the API key, kept for this tab only ---------------------------------------------------

  function loadKey() {
    try {
      keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
    } catch {
      // storage disabled: the field still works, it is just not remembered
    }
  }

  function saveKey() {
    try {
      const key = keyInput.value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      // see loadKey
    }
  }

  // --- talking to the API --------------------------------------------------------------------

  function describe(path, status, body, retryAfter, key) {
    const error = body && typeof body === "object" ? body.error : null;
    const message =
      error && typeof error.message === "string" ? error.message : `HTTP status ${status}`;
    switch (status) {
      case 401:
        return key
          ? `The API key was not accepted (${message}). Check it and try again.`
          : "This service needs an API key. Enter your key in the “API key” field and try again.";
      case 403:
        return `This API key may not do that: ${message}`;
      case 413:
        return `The text is too large for the service: ${message}`;
      case 400:
      case 422:
        return `The text was not accepted: ${message}`;
      case 429: {
        const reason = message.replace(/[.\s]+$/, "");
        return retryAfter
          ? `Too many requests: ${reason}. Try again in ${retryAfter} s.`
          : `Too many requests: ${reason}. Try again shortly.`;
      }
      case 503:
        return path === "/classify"
          ? `The model is unavailable: ${message}`
          : `The service is not ready: ${message}`;
      case 504:
        return `The service took too long to answer: ${message}`;
      default:
        return `The service answered with an error (${status}): ${message}`;
    }
  }

  async function post(path, payload, key) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (key) headers.Authorization = `Bearer ${key}`;
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers,
        body: JSON.stringify(payload),
        cache: "no-store",
      });
    } catch {
      return { ok: false, status: 0, message: "Could not reach the service. Is it running?" };
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.ok && body) return { ok: true, status: response.status, body };
    const retryAfter = response.headers.get("Retry-After");
    return {
      ok: false,
      status: response.status,
      message: describe(path, response.status, body, retryAfter, key),
    };
  }

  // --- rendering ----------------------------------------------------------------------------

  // The explanation's sentences by the offsets they are about. /normalize has no explanation
  // (and neither has an older /classify): the maps are then empty and the page falls back to
  // the bare facts.
  function explained(body) {
    const explanation = explanationOf(body) || {};
    const list = (items) => (Array.isArray(items) ? items : []);
    const byOffsets = (items) =>
      new Map(
        items
          .filter((item) => typeof item.text === "string")
          .map((item) => [`${item.start}:${item.end}`, item.text]),
      );
    return {
      // Harm codes and clean-ups together are all the spans.
      spans: byOffsets([...list(explanation.codes), ...list(explanation.cleanup)]),
      candidates: byOffsets(list(explanation.not_codes)),
    };
  }

  function explainedText(texts, item) {
    return texts.get(`${item.start}:${item.end}`);
  }

  function spanTitle(span, texts) {
    const text = explainedText(texts, span);
    if (text) return text;
    const replacement = span.replacement ? `“${span.replacement}”` : "nothing (removed)";
    return `${span.original} → ${replacement} · ${span.category} · ${span.rule}`;
  }

  function candidateTitle(candidate, texts) {
    return (
      explainedText(texts, candidate) ||
      `could mean “${candidate.meaning}” (${candidate.category}): ${candidate.reason}`
    );
  }

  function mark(text, kind, item, title) {
    const node = element("mark", kind, text);
    node.dataset.start = String(item.start);
    node.dataset.end = String(item.end);
    if (item.entry) node.dataset.entry = item.entry;
    if (INVISIBLE.test(text)) node.classList.add("invisible");
    node.title = title;
    return node;
  }

  // The original text with replaced spans and candidates marked. The API's offsets count
  // Unicode code points (Python), so the text is split into code points, not UTF-16 units.
  function originalNodes(text, spans, candidates, texts) {
    const chars = Array.from(text);
    const marks = [
      ...spans.map((item) => ({ item, kind: "span", title: spanTitle(item, texts.spans) })),
      ...candidates.map((item) => ({
        item,
        kind: "candidate",
        title: candidateTitle(item, texts.candidates),
      })),
    ].sort((a, b) => a.item.start - b.item.start || b.item.end - a.item.end);
    const nodes = [];
    let position = 0;
    for (const { item, kind, title } of marks) {
      if (item.start < position || item.end > chars.length || item.start >= item.end) continue;
      const piece = chars.slice(item.start, item.end).join("");
      if (piece !== item.original) return [document.createTextNode(text)];
      if (item.start > position) {
        nodes.push(document.createTextNode(chars.slice(position, item.start).join("")));
      }
      nodes.push(mark(piece, kind, item, title));
      position = item.end;
    }
    if (position < chars.length) nodes.push(document.createTextNode(chars.slice(position).join("")));
    return nodes;
  }

  // The normalized text with each replacement marked. The normalizer puts the replacements in
  // place of the spans and may add a space so that a decoded word does not fuse with its
  // neighbour; anything else unexpected shows the normalized text unmarked.
  function normalizedNodes(text, normalized, spans, texts) {
    const chars = Array.from(text);
    const out = Array.from(normalized);
    const pieces = [];
    let position = 0;
    for (const span of spans) {
      pieces.push({ text: chars.slice(position, span.start).join(""), span: null });
      pieces.push({ text: span.replacement, span });
      position = span.end;
    }
    pieces.push({ text: chars.slice(position).join(""), span: null });

    const plain = [document.createTextNode(normalized)];
    const nodes = [];
    let cursor = 0;
    for (const piece of pieces) {
      if (!piece.text) continue;
      const length = Array.from(piece.text).length;
      const at = (index) => out.slice(index, index + length).join("") === piece.text;
      if (!at(cursor)) {
        if (out[cursor] !== " " || !at(cursor + 1)) return plain;
        nodes.push(document.createTextNode(" "));
        cursor += 1;
      }
      nodes.push(
        piece.span
          ? mark(piece.text, "span", piece.span, spanTitle(piece.span, texts.spans))
          : document.createTextNode(piece.text),
      );
      cursor += length;
    }
    return cursor === out.length ? nodes : plain;
  }

  function renderText(text, body) {
    const spans = Array.isArray(body.spans) ? body.spans : [];
    const candidates = Array.isArray(body.candidates) ? body.candidates : [];
    const texts = explained(body);
    replaceChildren(byId("original"), originalNodes(text, spans, candidates, texts));
    replaceChildren(
      byId("normalized"),
      normalizedNodes(text, String(body.normalized), spans, texts),
    );

    const rows = spans.map((span) => {
      const row = element("tr");
      row.title = spanTitle(span, texts.spans); // what the code means, on hover
      const original = element("td");
      original.append(element("code", "", span.original));
      row.append(
        original,
        element("td", "", span.replacement || "(removed)"),
        element("td", "", span.category),
        element("td", "", span.rule),
      );
      return row;
    });
    replaceChildren(byId("spans"), rows);
    byId("spans-table").hidden = rows.length === 0;
    byId("spans-empty").hidden = rows.length !== 0;

    const items = candidates.map((candidate) => {
      const item = element("li");
      item.dataset.start = String(candidate.start);
      item.dataset.end = String(candidate.end);
      const sentence = explainedText(texts.candidates, candidate);
      if (sentence) {
        item.append(element("p", "candidate-text", sentence));
        return item;
      }
      const head = element("p", "candidate-head");
      head.append(
        element("code", "", candidate.original),
        document.createTextNode(" could mean "),
        element("strong", "", candidate.meaning),
        document.createTextNode(` (${candidate.category})`),
      );
      item.append(head, element("p", "candidate-reason", candidate.reason));
      return item;
    });
    replaceChildren(byId("candidates"), items);
    byId("candidates-empty").hidden = items.length !== 0;
  }

  function bars(group, scores, chosen) {
    const entries = Object.entries(scores || {}).sort((a, b) => b[1] - a[1]);
    return entries.map(([name, value]) => {
      const row = element("div", name === chosen ? "bar-row chosen" : "bar-row");
      row.dataset.name = name;
      row.dataset.value = String(value);
      const label = element("span", "bar-name", name);
      label.id = `score-${group}-${name}`;
      const meter = element("div", "bar");
      meter.setAttribute("role", "meter");
      meter.setAttribute("aria-labelledby", label.id);
      meter.setAttribute("aria-valuemin", "0");
      meter.setAttribute("aria-valuemax", "100");
      meter.setAttribute("aria-valuenow", (Number(value) * 100).toFixed(1));
      meter.setAttribute("aria-valuetext", percent(value));
      const fill = element("div", "bar-fill");
      fill.style.width = `${Math.max(0, Math.min(1, Number(value))) * 100}%`;
      meter.append(fill);
      row.append(label, meter, element("span", "bar-value", percent(value)));
      return row;
    });
  }

  // "review ≥ 0.5, block ≥ 0.9 (default)": the thresholds that decided, the one P(harmful)
  // reached in bold, and a note when the platform's policy does not moderate the category
  // (the action is then allow whatever the scores, which would otherwise look like a bug).
  function thresholdNodes(thresholds, moderated) {
    const nodes = [];
    if (thresholds && typeof thresholds === "object") {
      const limit = (name) => {
        const node = element("span", "threshold", `${name} ≥ ${Number(thresholds[name])}`);
        node.dataset.threshold = name;
        if (thresholds.applied === name) node.classList.add("reached");
        return node;
      };
      const source =
        thresholds.source === "default" ? "default" : `${thresholds.source} override`;
      nodes.push(
        element("span", "thresholds-caption", "Thresholds: "),
        limit("review"),
        document.createTextNode(", "),
        limit("block"),
        document.createTextNode(` (${source})`),
      );
    }
    if (moderated === false) {
      if (nodes.length) nodes.push(document.createTextNode(" · "));
      nodes.push(element("span", "unmoderated", "not moderated by this platform's policy"));
    }
    return nodes;
  }

  function renderVerdict(body) {
    const explanation = explanationOf(body);
    const known = ACTIONS.has(body.action);

    // The summary is the first thing a moderator reads: the action, the evidence, the numbers.
    const summary = byId("summary");
    summary.textContent = explanation ? String(explanation.summary) : "";
    summary.className = known ? `summary summary-${body.action}` : "summary";
    summary.hidden = !explanation;

    const thresholds = byId("thresholds");
    replaceChildren(thresholds, thresholdNodes(explanation?.thresholds, body.moderated));
    thresholds.hidden = thresholds.childNodes.length === 0;

    const action = byId("action");
    action.textContent = body.action;
    action.className = known ? `action action-${body.action}` : "action";
    byId("label").textContent = body.label;
    byId("category").textContent = body.category;
    byId("severity").textContent = body.severity;
    byId("confidence").textContent = percent(body.confidence);
    const scores = body.scores || {};
    replaceChildren(byId("scores-label"), bars("label", scores.label, body.label));
    replaceChildren(byId("scores-category"), bars("category", scores.category, body.category));
    replaceChildren(byId("scores-severity"), bars("severity", scores.severity, body.severity));
    byId("model-info").textContent =
      `Model ${body.model} · answered in ${Number(body.latency_ms).toFixed(0)} ms`;
    byId("verdict").hidden = false;
    byId("scores-card").hidden = false;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function setBusy(busy) {
    button.disabled = busy;
    button.textContent = busy ? "Checking…" : "Check";
    results.setAttribute("aria-busy", busy ? "true" : "false");
    statusLine.textContent = busy ? "Checking…" : "";
  }

  function resetResults() {
    byId("verdict").hidden = true;
    byId("scores-card").hidden = true;
    const modelError = byId("model-error");
    modelError.hidden = true;
    modelError.textContent = "";
  }

  // --- the check ------------------------------------------------------------------------------

  async function check(event) {
    event.preventDefault();
    const text = textInput.value;
    if (!text.trim()) {
      showError("Enter some text to check.");
      textInput.focus();
      return;
    }
    const key = keyInput.value.trim();
    if (!/^[\x21-\x7e]*$/.test(key)) {
      showError("An API key may only contain printable ASCII characters, without spaces.");
      keyInput.focus();
      return;
    }
    const current = ++latest;
    showError("");
    setBusy(true);
    const normalizing = post("/normalize", { text }, key);
    // explain: true costs nothing measurable; "reason" would have the model write a sentence
    // too, doubling the wait, and the page shows the grounded explanation only.
    const classifying = post("/classify", { text, explain: true }, key);

    const normalized = await normalizing;
    if (current !== latest) return;
    if (normalized.ok) {
      resetResults();
      renderText(text, normalized.body);
      results.hidden = false;
    }

    const classified = await classifying;
    if (current !== latest) return;
    setBusy(false);
    if (classified.ok) {
      resetResults();
      renderText(text, classified.body);
      renderVerdict(classified.body);
      results.hidden = false;
    } else if (normalized.ok) {
      const modelError = byId("model-error");
      modelError.textContent = `${classified.message} The normalizer's result is shown below.`;
      modelError.hidden = false;
    } else {
      results.hidden = true;
      showError(normalized.message);
      if (normalized.status === 401) keyInput.focus();
    }
  }

  form.addEventListener("submit", check);
  textInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  keyInput.addEventListener("input", saveKey);
  loadKey();
})();
