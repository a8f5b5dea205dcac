/* Renkei pages: progressive enhancement over the server-rendered pages.
   Writes go to the JSON API with the session cookie and the CSRF header. Nothing
   about patients is put in browser storage. */
(function () {
  "use strict";
  const T = JSON.parse(document.getElementById("i18n").textContent);
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  async function api(method, url, body, headers) {
    const opts = { method, credentials: "same-origin",
      headers: Object.assign({ "X-CSRFToken": CSRF, "Accept": "application/json" }, headers || {}) };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(url, opts);  // throws only when the network is down
    let data = null;
    if (r.status !== 204) { try { data = await r.json(); } catch (e) { data = null; } }
    return { status: r.status, data, retryAfter: Number(r.headers.get("Retry-After")) || 0 };
  }

  /* A creating POST carries an Idempotency-Key and is sent again with the same key
     until the server answers it: a lost answer, a 503 or "still running" (409 with
     Retry-After) never makes a second note (docs/API.md, "Retrying safely"). The key
     lives on the form only as long as what it sends is unchanged. */
  // Waits between retries end early when the browser says the network is back.
  const waiting = new Set();
  window.addEventListener("online", () => [...waiting].forEach(wake => wake()));
  function pause(ms) {
    return new Promise(done => {
      const wake = () => { clearTimeout(timer); waiting.delete(wake); done(); };
      const timer = setTimeout(wake, ms); waiting.add(wake);
    });
  }
  function newKey() {
    const bytes = new Uint8Array(16); crypto.getRandomValues(bytes);
    return Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
  }
  /* ---- the bar that says the tablet is offline and how much waits to be sent ---- */
  const bar = $("#offline"), waitingText = bar ? $("[data-waiting]", bar).textContent : "";
  let lostNetwork = false, waitingCount = 0;
  function showBar() {
    if (!bar) return;
    const offline = !navigator.onLine || lostNetwork, waiting = $("[data-waiting]", bar);
    $("[data-offline]", bar).hidden = !offline;
    waiting.hidden = !waitingCount; waiting.textContent = waitingText.replace("{n}", waitingCount);
    $("[data-no-sync]", bar).hidden = !(waitingCount && !("SyncManager" in window));
    bar.hidden = !offline && !waitingCount;
  }
  function networkLost(lost) { lostNetwork = lost; showBar(); }
  window.addEventListener("offline", showBar);
  window.addEventListener("online", () => networkLost(false));
  showBar();

  /* The outbox (static/outbox.js): sealed in IndexedDB under this device's key for the
     signed-in person, handed over in the page and never stored; in page memory where
     the browser cannot seal. */
  const keyEl = $("#outbox-key");
  const outboxReady = (async () => {
    if (!keyEl) return null;
    const keys = JSON.parse(keyEl.textContent); keyEl.remove();
    try {
      if (!window.indexedDB || !(window.crypto && crypto.subtle)) throw new Error("no sealed storage");
      return await RenkeiOutbox.Outbox.open(keys);
    } catch (e) { return new RenkeiOutbox.MemoryOutbox(); }
  })();

  async function create(holder, url, body, onWait) {
    const sent = JSON.stringify([url, body === undefined ? null : body]);
    if (!holder.idem || holder.idem.sent !== sent) holder.idem = { key: newKey(), sent };
    const key = holder.idem.key;
    for (let attempt = 0; ; attempt++) {
      let res = null;
      try { res = await api("POST", url, body, { "Idempotency-Key": key }); } catch (e) { res = null; }
      const again = res === null || res.status === 503 || (res.status === 409 && res.retryAfter);
      if (!again) {
        if (res.status < 500) delete holder.idem;
        networkLost(false);
        return res;
      }
      if (res === null) networkLost(true);
      if (onWait) onWait();
      const wait = res && res.retryAfter ? res.retryAfter * 1000 : Math.min(30000, 1000 * 2 ** attempt);
      await pause(wait);
    }
  }
  async function fragments(url) {  // every element of a page fragment, in a holder
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(String(r.status));
    const box = document.createElement("div");
    box.innerHTML = await r.text();
    return box;
  }
  async function fragment(url) { return (await fragments(url)).firstElementChild; }
  function flash(el) { el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash"); }
  // A refusal in the page's language: by the problem's type, then its status (a form
  // may say what "not found" means for it: data-not-found); the server's English
  // detail only as a last resort.
  function problemText(res, form) {
    const d = res.data || {};
    if (d.errors) return T.check_fields;  // each field's own message is shown next to it
    if (T.problems[d.type]) return T.problems[d.type];
    if (res.status === 404 && form && form.dataset.notFound) return form.dataset.notFound;
    return T.problems[String(res.status)] || d.detail || T.error;
  }

  /* 422 errors shown on their fields, in the page's language; what was typed stays. */
  // The limits the server names ("Longer than maximum length 4000.") go into the message: {0}, {1}.
  function fieldMessage(messages) {
    const first = [].concat(messages).find(m => typeof m === "string") || "";
    const known = Object.keys(T.field_messages).find(k => first.startsWith(k));
    if (!known) return T.check_field;
    const values = first.slice(known.length).match(/\d[\d-]*\d|\d/g) || [];
    return T.field_messages[known].replace(/\{(\d)\}/g, (m, i) => values[Number(i)] ?? "");
  }
  function clearErrors(root) {
    $$(".field-error", root).forEach(e => e.remove());
    $$("[aria-invalid]", root).forEach(e => e.removeAttribute("aria-invalid"));
  }
  function showErrors(container, errors) {
    Object.entries(errors || {}).forEach(([k, v]) => {
      const target = container.dataset && container.dataset.kind === "rows"
        ? $$("[data-row]", container).filter(r => owner(r) === container)[Number(k)]
        : $$("[data-key]", container).find(e => e.dataset.key === k && owner(e) === container)
          || $(`[name="${CSS.escape(k)}"]`, container);
      if (!target) return;
      if (!Array.isArray(v)) return showErrors(target, v);
      const note = document.createElement("small"); note.className = "field-error"; note.setAttribute("role", "alert");
      // A choice (a fieldset, the team picker) says what to do when left empty: data-missing.
      const missing = String([].concat(v)[0]).startsWith("Missing data");
      note.textContent = missing && target.dataset.missing ? target.dataset.missing : fieldMessage(v);
      target.setAttribute("aria-invalid", "true"); target.after(note);
    });
  }

  // A page may hold part of what it prints behind a fetch (the 温度板): load it first.
  $$("[data-print]").forEach(b => b.addEventListener("click", async () => {
    const box = $("#sheet-box");
    if (box) { await loadSheet(); box.open = true; }
    window.print();
  }));
  async function loadSheet() {
    const box = $("#sheet-box"), slot = $("#sheet-slot");
    if (!box || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    const r = await fetch(box.dataset.sheet, { credentials: "same-origin" });
    slot.innerHTML = r.ok ? await r.text() : T.error;
  }
  const sheetBox = $("#sheet-box");
  if (sheetBox) sheetBox.addEventListener("toggle", () => { if (sheetBox.open) loadSheet(); });

  /* ---- passkeys (docs/ARCHITECTURE.md, "Authentication"): WebAuthn Level 3 JSON both ways ---- */
  const webauthn = Boolean(window.PublicKeyCredential && PublicKeyCredential.parseRequestOptionsFromJSON);
  const passkeyLogin = $("[data-passkey-login]");
  if (passkeyLogin) {
    const status = $(".passkey-signin .status");
    if (webauthn) passkeyLogin.hidden = false; else $("[data-passkey-unsupported]").hidden = false;
    passkeyLogin.addEventListener("click", async () => {
      status.textContent = "";
      try {
        const options = (await api("POST", "/api/v1/auth/passkey-challenge", {})).data;
        const credential = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
        const res = await api("POST", "/login/passkey" + location.search, { passkey: credential.toJSON() });
        if (res.status === 200) { location.href = res.data.next; return; }
        status.textContent = res.status === 429 ? T.problems["429"] : T.passkey_refused;
      } catch (e) { status.textContent = T.passkey_cancelled; }
    });
  }
  const passkeyAdd = $("#passkey-add");
  if (passkeyAdd) passkeyAdd.addEventListener("submit", async e => {
    e.preventDefault();
    const status = $(".status", passkeyAdd);
    if (!webauthn) { status.textContent = T.passkey_unsupported; return; }
    try {
      const options = (await api("POST", "/api/v1/auth/passkeys/options", {})).data;
      const credential = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) });
      const res = await api("POST", "/api/v1/auth/passkeys", { credential: credential.toJSON(), name: passkeyAdd.elements.name.value.trim() || undefined });
      if (res.status === 201) { location.reload(); return; }
      status.textContent = problemText(res);
    } catch (err) { status.textContent = T.passkey_cancelled; }
  });
  $$("[data-passkey-remove]").forEach(b => b.addEventListener("click", async () => {
    if (!confirm(T.confirm_passkey_remove)) return;
    const res = await api("DELETE", `/api/v1/auth/passkeys/${b.dataset.passkeyRemove}`);
    if (res.status === 204) location.reload(); else alert(problemText(res));
  }));

  /* ---- idle timeout with a warning ---- */
  const idle = Number(document.body.dataset.idle || 0) * 1000;
  if (idle && $("#idle-warning")) {
    let last = Date.now();
    ["click", "keydown", "touchstart"].forEach(e => document.addEventListener(e, () => { last = Date.now(); }, { passive: true }));
    setInterval(() => {
      const left = idle - (Date.now() - last);
      $("#idle-warning").hidden = left > 120000;
      if (left <= 0) location.href = "/login";
    }, 5000);
    $("#idle-continue").addEventListener("click", () => { last = Date.now(); api("GET", "/api/v1/users/me"); $("#idle-warning").hidden = true; });
  }

  /* ---- care list filter ---- */
  // The fixed 連絡帳 button (portrait tablet, phone) opens the note box ready to write:
  // one tap there, one on 送信.
  $$("a.jump-notes").forEach(a => {
    a.addEventListener("click", () => {
      setTimeout(() => { const box = $("#note-form textarea"); if (box) box.focus(); }, 0);
    });
    // Not over the note box itself (nor the team list below it) once that is on screen.
    new IntersectionObserver(([seen]) => { a.classList.toggle("away", seen.isIntersecting); })
      .observe($("#notes-box"));
  });

  const filter = $("#patient-filter");
  if (filter) {
    // The same folding as the server's name index (renkei/crypto.py, normalize_name):
    // full-width/half-width, spaces, hiragana and katakana do not matter.
    const fold = text => text.normalize("NFKC").replace(/\s+/g, "").toLowerCase()
      .replace(/[\u3041-\u3096]/g, c => String.fromCharCode(c.charCodeAt(0) + 0x60));
    const apply = () => {
      const q = fold(filter.value);
      const rows = $$(".patient-list li[data-search]");
      rows.forEach(li => { li.hidden = q && !fold(li.dataset.search).includes(q); });
      $("#no-match").hidden = !rows.length || rows.some(li => !li.hidden);
    };
    filter.addEventListener("input", apply); apply();
    window.addEventListener("pageshow", apply);  // Back restores the typed text after this script ran
  }

  /* ---- section forms: content JSON from the widgets ---- */
  function owner(el) { return el.parentElement.closest("[data-key],[data-row],form"); }
  function collect(container) {
    const out = {};
    $$("[data-key]", container).filter(el => owner(el) === container).forEach(el => {
      const kind = el.dataset.kind, key = el.dataset.key;
      let v;
      if (kind === "choice") { const c = $("input:checked", el); v = c && c.value ? c.value : undefined; }
      else if (kind === "adl") {
        const b = $('button[aria-pressed="true"]', el), note = $("[data-note]", el).value.trim();
        v = b ? Object.assign({ level: b.dataset.level }, note ? { note } : {}) : undefined;
      } else if (kind === "group") { v = collect(el); if (!Object.keys(v).length) v = undefined; }
      else if (kind === "rows") {
        v = $$("[data-row]", el).filter(r => owner(r) === el).map(collect).filter(r => Object.keys(r).some(k => k !== "id"));
        if (!v.length) v = undefined;
      } else { v = el.value.trim() || undefined; }
      if (v !== undefined) out[key] = v;
    });
    return out;
  }

  function sectionEl(key) { return document.getElementById("section-" + key); }
  const pending = new Map();  // section -> true while its edit waits for the network

  /* ---- saving a section: never a silent overwrite, never an empty version ----
     The form remembers the version it was opened on and that version's content (its
     base). A save that changes nothing is not sent. On 412 the page merges three ways
     (docs/ARCHITECTURE.md, "Merging two people's edits"): groups field by field, list
     rows by their id and then field by field. What only one side changed keeps that
     side; only a field both changed differently (or a row one removed and the other
     changed) is asked, named by its label path: 「キーパーソン・連絡先 1 › 電話」. */
  function canonical(v) {
    if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
    if (v && typeof v === "object") return "{" + Object.keys(v).sort().filter(k => v[k] !== undefined)
      .map(k => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
    return JSON.stringify(v === undefined ? null : v);
  }
  const same = (a, b) => canonical(a) === canonical(b);
  function baseOf(form) {
    return { version: Number(sectionEl(form.dataset.sectionForm).dataset.version),
             content: JSON.parse($("script[data-base]", form).textContent) };
  }
  // The widget of a field inside a form, group or row (a list's row template when no row is on screen).
  function childEl(container, key) {
    return $$("[data-key]", container).find(e => e.dataset.key === key && owner(e) === container);
  }
  function rowTemplate(rowsEl) {
    return $$("[data-row]", rowsEl).find(r => owner(r) === rowsEl) || $("template", rowsEl).content.querySelector("[data-row]");
  }
  function labelOf(el, key) {
    if (!el) return key;
    const legend = $("legend", el);
    if (legend && legend.parentElement === el) return legend.textContent.trim();
    const label = el.closest("label");
    return label ? label.firstChild.textContent.trim() : key;
  }
  const isObject = v => v === undefined || (v && typeof v === "object" && !Array.isArray(v));
  const isList = v => v === undefined || Array.isArray(v);
  // Merged content with nothing empty left in it (an emptied group or list is no value).
  function tidy(v) {
    if (Array.isArray(v)) { const out = v.filter(x => x !== undefined).map(tidy); return out.length ? out : undefined; }
    if (v && typeof v === "object") {
      const out = {};
      Object.keys(v).forEach(k => { const x = tidy(v[k]); if (x !== undefined) out[k] = x; });
      return Object.keys(out).length ? out : undefined;
    }
    return v;
  }
  function mergeFields(container, b, m, t, path, res) {
    b = b || {}; m = m || {}; t = t || {};
    const out = {};
    new Set([...Object.keys(b), ...Object.keys(m), ...Object.keys(t)]).forEach(k => {
      if (k === "id") { out.id = m.id || t.id || b.id; return; }
      const el = childEl(container, k), kind = el && el.dataset.kind, here = path.concat(labelOf(el, k));
      const bv = b[k], mv = m[k], tv = t[k];
      if (same(mv, bv)) { out[k] = tv; if (!same(tv, bv)) res.taken.push(here.join(" › ")); }
      else if (same(tv, bv) || same(mv, tv)) out[k] = mv;
      else if (kind === "group" && isObject(mv) && isObject(tv) && isObject(bv)) out[k] = mergeFields(el, bv, mv, tv, here, res);
      else if (kind === "rows" && isList(mv) && isList(tv) && isList(bv)) out[k] = mergeRows(el, bv, mv, tv, path, labelOf(el, k), res);
      else { out[k] = mv; res.conflicts.push({ label: here.join(" › "), el, mine: mv, theirs: tv, put: v => { out[k] = v; } }); }
    });
    return out;
  }
  function mergeRows(el, b, m, t, path, name, res) {
    b = b || []; m = m || []; t = t || [];
    const byId = list => new Map(list.filter(r => r && r.id).map(r => [r.id, r]));
    const B = byId(b), M = byId(m), Th = byId(t), rowEl = rowTemplate(el), out = [];
    const at = (list, row) => `${name} ${list.indexOf(row) + 1}`;
    const ask = (label, mine, theirs) => {
      const i = out.push(mine) - 1;
      res.conflicts.push({ label, el: rowEl, row: true, mine, theirs, put: v => { out[i] = v; } });
    };
    m.forEach(mr => {
      const br = mr.id && B.get(mr.id), tr = mr.id && Th.get(mr.id);
      if (!br && !tr) { out.push(mr); return; }  // a row I added
      const label = path.concat(at(m, mr));
      if (!br) out.push(mergeFields(rowEl, {}, mr, tr, label, res));  // both added one id: as fields
      else if (!tr) { if (same(mr, br)) res.taken.push(label.join(" › ")); else ask(label.join(" › "), mr, undefined); }
      else out.push(mergeFields(rowEl, br, mr, tr, label, res));
    });
    b.forEach(br => {  // rows I removed
      if (!br.id || M.has(br.id)) return;
      const tr = Th.get(br.id);
      if (tr && !same(tr, br)) ask(path.concat(at(b, br)).join(" › "), undefined, tr);
    });
    t.forEach(tr => {  // rows they added
      if (!tr.id || B.has(tr.id) || M.has(tr.id)) return;
      out.push(tr); res.taken.push(path.concat(at(t, tr)).join(" › "));
    });
    return out;
  }
  function merge(form, base, mine, theirs) {
    const res = { conflicts: [], taken: [] };
    res.merged = mergeFields(form, base, mine, theirs, [], res);
    return res;
  }
  function describe(el, v) {
    if (v === undefined || v === null || v === "") return T.empty_value;
    if (Array.isArray(v)) return v.map(x => describe(el, x)).join(" / ");
    if (typeof v === "object") {
      return Object.keys(v).filter(k => k !== "id").map(k => {
        const level = k === "level" && el && $(`button.level[data-level="${v[k]}"]`, el);
        return level ? level.textContent : describe(el, v[k]);
      }).join("・");
    }
    return String(v);
  }
  // Japan time, as the server writes it on the page (web/forms.py, jst), whatever the device's zone.
  const JST = new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Tokyo", year: "numeric", month: "2-digit",
                                                 day: "2-digit", hour: "2-digit", minute: "2-digit" });
  function when(iso) { return iso ? JST.format(new Date(iso)) : ""; }

  async function showSection(key) {
    const fresh = await fragment(`/patients/${document.body.dataset.patient}/sections/${key}`);
    sectionEl(key).replaceWith(fresh); wire(fresh); flash(fresh);
    return fresh;
  }

  async function saveSection(form, content) {
    const key = form.dataset.sectionForm, status = $(".status", form);
    if (!form._base) form._base = baseOf(form);
    const mine = content || collect(form), base = form._base;
    if (same(mine, base.content)) {  // nothing to send
      if (Number(sectionEl(key).dataset.version) !== base.version) {  // theirs, as chosen: shown, nothing sent
        const fresh = await showSection(key), note = document.createElement("p");
        note.className = "notice"; note.setAttribute("role", "status"); note.textContent = T.unchanged;
        fresh.insertBefore(note, $("dl.values", fresh)); return;
      }
      status.textContent = T.unchanged; await dropEdit(form); return;
    }
    if (form._saving) return;  // one save of a section at a time
    form._saving = true; status.textContent = T.saving; clearErrors(form);
    let res = null;
    try {
      res = await api("PUT", `/api/v1/patients/${document.body.dataset.patient}/record/${key}`,
                      { content: mine }, { "If-Match": `"${base.version}"` });
    } catch (e) { res = null; }
    if (res === null || res.status === 503) {  // offline or busy: the edit stays and is sent again
      form._saving = false;
      status.textContent = T.retrying; if (res === null) networkLost(true);
      pending.set(key, true); await keepEdit(form, mine, base);
      pause(res ? res.retryAfter * 1000 || 3000 : 3000).then(() => { if (pending.get(key)) saveSection(form, content); });
      return;
    }
    form._saving = false;
    networkLost(false); pending.delete(key);
    if (res.status !== 412) await dropEdit(form);  // sent, or refused with the text still in the form
    if (res.status === 200) {
      const before = shownValues(sectionEl(key)), fresh = await showSection(key);
      markChanged(fresh, before);
      const note = document.createElement("p"); note.className = form._merged ? "notice saved merged" : "notice saved";
      note.setAttribute("role", "status");
      note.textContent = form._merged || T.saved;  // whose changes were taken into the save, if any
      fresh.insertBefore(note, $("dl.values", fresh));
    } else if (res.status === 412) {
      const theirs = res.data.current || res.data, theirContent = theirs.content || {};
      const { merged, conflicts, taken } = merge(form, base.content, mine, theirContent);
      form._base = { version: theirs.version, content: theirContent };
      form._merged = taken.length
        ? T.merged.replace("{who}", theirs.updated_by_name || "").replace("{fields}", taken.join(T.sep)) : "";
      if (!conflicts.length) return saveSection(form, tidy(merged) || {});
      showChoices(form, conflicts, merged, theirs);
    } else {
      clearErrors(form);
      if (res.data && res.data.errors) showErrors(form, res.data.errors.content || res.data.errors);
      status.textContent = problemText(res);
    }
  }
  // The read view's label → value pairs, to mark what a save changed.
  function shownValues(section) {
    return $$("dl.values dt", section).map(dt => [dt.textContent, dt.nextElementSibling ? dt.nextElementSibling.textContent : ""]);
  }
  function markChanged(section, before) {
    const seen = new Map();
    before.forEach(([k, v]) => seen.set(k, (seen.get(k) || []).concat(v)));
    $$("dl.values dt", section).forEach(dt => {
      const dd = dt.nextElementSibling, was = seen.get(dt.textContent) || [], i = was.indexOf(dd ? dd.textContent : "");
      if (i >= 0) { was.splice(i, 1); return; }  // shown before, unchanged
      dt.classList.add("changed"); if (dd) dd.classList.add("changed");
    });
  }

  /* Only what both changed is asked: one fieldset per label path, mine / theirs (with
     who and when); the form's own save button steps aside so one save is on screen. */
  /* An edit that could not be sent is kept in the outbox (sealed) while this page keeps
     trying; a reload or the next sign-in finds it and tries again (resumeEdits). */
  const held = new Set();  // outbox items this page is sending itself
  async function keepEdit(form, content, base) {
    const box = await outboxReady;
    if (!box) return;
    const item = { kind: "section", patient: document.body.dataset.patient, section: form.dataset.sectionForm, content, base };
    if (form._outboxN) await box.replace(form._outboxN, item);
    else { form._outboxN = await box.add(item); held.add(form._outboxN); form._release = RenkeiOutbox.hold(form._outboxN); }
    countWaiting();
  }
  async function dropEdit(form) {
    const box = await outboxReady;
    if (!box || !form._outboxN) return;
    await box.remove(form._outboxN); held.delete(form._outboxN); delete form._outboxN;
    if (form._release) form._release();
    countWaiting();
  }
  async function resumeEdits(entries) {
    const elsewhere = await RenkeiOutbox.heldItems();  // another tab is sending it
    entries.filter(e => e.item.kind === "section" && e.item.patient === document.body.dataset.patient && !held.has(e.n)
                        && !elsewhere.has(`renkei-outbox-item-${e.n}`))
      .forEach(e => {
        const form = $(`form[data-section-form="${CSS.escape(e.item.section)}"]`);
        if (!form) return;
        held.add(e.n); form._outboxN = e.n; form._release = RenkeiOutbox.hold(e.n);
        form._base = e.item.base; form.hidden = false;
        saveSection(form, e.item.content);
      });
  }

  function showChoices(form, conflicts, merged, theirs) {
    const box = $(".conflict", form), actions = $(".form-actions", form);
    box.innerHTML = ""; box.hidden = false; actions.hidden = true;
    const p = document.createElement("p"); p.className = "error";
    p.textContent = T.conflict.replace("{who}", theirs.updated_by_name || "").replace("{when}", when(theirs.updated_at));
    box.appendChild(p);
    conflicts.forEach((c, n) => {
      const fs = document.createElement("fieldset"); fs.className = "merge-choice";
      const lg = document.createElement("legend"); lg.textContent = c.label; fs.appendChild(lg);
      [["mine", T.mine, c.mine], ["theirs", `${theirs.updated_by_name || ""}（${when(theirs.updated_at)}）`, c.theirs]]
        .forEach(([value, who, v], i) => {
          const label = document.createElement("label"); label.className = "pill choice-" + value;
          const input = document.createElement("input"); input.type = "radio"; input.name = "merge-" + n;
          input.value = value; input.checked = i === 0;
          const shown = c.row && v === undefined ? T.row_removed : describe(c.el, v);
          const span = document.createElement("span"); span.textContent = `${who}：${shown}`;
          label.append(input, span); fs.appendChild(label);
        });
      box.appendChild(fs);
    });
    const save = document.createElement("button"); save.type = "button"; save.className = "primary big";
    save.textContent = T.save_merged; box.appendChild(save);
    save.addEventListener("click", () => {
      conflicts.forEach((c, n) => c.put($(`input[name="merge-${n}"]:checked`, box).value === "mine" ? c.mine : c.theirs));
      box.hidden = true; actions.hidden = false;
      saveSection(form, tidy(merged) || {});
    });
    $(".status", form).textContent = "";
    box.scrollIntoView({ block: "start", behavior: "smooth" });  // the choice is what to do next
  }

  function wire(root) {
    $$("[data-edit]", root).forEach(b => b.addEventListener("click", () => {
      const form = $(`form[data-section-form="${b.dataset.edit}"]`); form.hidden = !form.hidden;
      if (!form.hidden) { form._base = baseOf(form); const first = $("input,textarea,button.level", form); if (first) first.focus(); }
    }));
    $$("[data-history]", root).forEach(b => b.addEventListener("click", async () => {
      const box = $(".history", sectionEl(b.dataset.history));
      if (!box.hidden) { box.hidden = true; return; }
      const el = await fragment(`/patients/${document.body.dataset.patient}/sections/${b.dataset.history}/history`);
      box.innerHTML = ""; box.appendChild(el); box.hidden = false;
    }));
    $$(".note .body", root).forEach(body => {  // a long note folds, 続きを読む opens it
      body.classList.add("clamped");
      if (body.scrollHeight <= body.clientHeight + 2) { body.classList.remove("clamped"); return; }
      const more = document.createElement("button"); more.type = "button"; more.className = "ghost more";
      more.textContent = T.read_more;
      more.addEventListener("click", () => {
        more.textContent = body.classList.toggle("clamped") ? T.read_more : T.read_less;
      });
      body.after(more);
    });
    $$("form[data-section-form]", root).forEach(form => {
      form.addEventListener("submit", e => { e.preventDefault(); saveSection(form); });
      form.addEventListener("keydown", e => {  // Escape closes the form; what was typed stays in it
        if (e.key === "Escape") { form.hidden = true; const edit = $(`[data-edit="${form.dataset.sectionForm}"]`); if (edit) edit.focus(); }
        const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
        if (step && e.target.matches("button.level")) {  // the ADL levels are a radio group: arrows move and choose
          const levels = $$("button.level", e.target.parentElement);
          const next = levels[(levels.indexOf(e.target) + step + levels.length) % levels.length];
          levels.forEach(b => b.setAttribute("aria-pressed", String(b === next)));
          next.focus(); e.preventDefault();
        }
      });
      form.addEventListener("click", e => {
        const t = e.target;
        if (t.matches("button.level")) {  // a second tap keeps the level: it never erases
          $$("button.level", t.parentElement).forEach(b => b.setAttribute("aria-pressed", String(b === t)));
        } else if (t.matches("[data-add-row]")) {
          const fs = t.closest("fieldset");
          fs.insertBefore($("template", fs).content.firstElementChild.cloneNode(true), t);
        } else if (t.matches("[data-remove-row]")) {
          t.closest("[data-row]").remove();
        } else if (t.matches("[data-cancel]")) {  // やめる discards: the section as saved comes back
          const key = form.dataset.sectionForm;
          form.hidden = true; pending.delete(key); dropEdit(form);
          showSection(key).catch(() => { form.reset(); $$("button.level", form).forEach(b => b.setAttribute("aria-pressed", b.dataset.saved)); });
        }
      });
    });
    $$("[data-ack]", root).forEach(b => b.addEventListener("click", async () => {
      if (b.disabled) return;
      b.disabled = true;
      const res = await create(b, `/api/v1/patients/${document.body.dataset.patient}/notes/${b.dataset.ack}/ack`);
      b.disabled = false;
      if (res.status === 204) refreshTimeline();
    }));
    $$("[data-reply]", root).forEach(b => b.addEventListener("click", () => replyTo(b.dataset.reply, b.dataset.replyText)));
    $$("[data-more]", root).forEach(b => { b.addEventListener("click", () => olderNotes(b)); moreSeen.observe(b); });
    // the body is watched, not the whole note: a thread's first note holds its replies and may be taller than the screen
    $$("li[data-note]:not([data-seen]) > p.body", root).forEach(body => seenWatch.observe(body));
  }

  async function refreshTimeline(highlight) {
    const pid = document.body.dataset.patient;
    if (!pid || !$("#timeline")) return;
    const els = await fragments(`/patients/${pid}/timeline`);
    const box = $("#timeline"); box.innerHTML = ""; box.append(...els.children); wire(box);
    if (highlight) { const li = $(`[data-note="${highlight}"]`, box); if (li) flash(li); }
  }

  /* Older notes: the next page is appended when its button is tapped or scrolled into
     view (keyset pages: nothing repeats or goes missing while others post). */
  const moreSeen = new IntersectionObserver(entries => entries.forEach(e => { if (e.isIntersecting) olderNotes(e.target); }));
  async function olderNotes(b) {
    if (b.disabled) return;
    b.disabled = true; moreSeen.unobserve(b);
    const els = await fragments(`/patients/${document.body.dataset.patient}/timeline?cursor=${encodeURIComponent(b.dataset.more)}`);
    const list = $("#notes"), added = $("ol.notes", els);
    const more = $("p.more", els), holder = b.closest("p.more");
    [...added.children].filter(li => !li.matches(".empty")).forEach(li => { list.appendChild(li); wire(li); });
    if (more) { holder.replaceWith(more); wire(more); } else holder.remove();
  }

  /* 既読: a note on screen for 2 seconds has been seen (確認 stays the button). */
  const seenTimers = new Map();
  const seenWatch = new IntersectionObserver(entries => entries.forEach(e => {
    const li = e.target.closest("li[data-note]");
    if (e.isIntersecting && !seenTimers.has(li)) {
      seenTimers.set(li, setTimeout(() => markSeen(li), 2000));
    } else if (!e.isIntersecting && seenTimers.has(li)) {
      clearTimeout(seenTimers.get(li)); seenTimers.delete(li);
    }
  }), { threshold: 0.6 });
  async function markSeen(li) {
    seenTimers.delete(li); seenWatch.unobserve($(":scope > p.body", li));
    if (li.hasAttribute("data-seen") || !document.body.dataset.patient) return;
    li.setAttribute("data-seen", "");
    try {
      const res = await api("POST", `/api/v1/patients/${document.body.dataset.patient}/notes/${li.dataset.note}/seen`);
      if (res.status === 204) { const badge = $(":scope > .who .badge.unread", li); if (badge) badge.remove(); }
      else li.removeAttribute("data-seen");
    } catch (e) { li.removeAttribute("data-seen"); }  // offline: seen again when it is back on screen
  }

  /* A reply answers the first note of a thread; the form says to what until sent or dropped. */
  function replyTo(noteId, text) {
    if (!noteForm) return;
    noteForm.dataset.replyTo = noteId;
    const banner = $(".replying", noteForm);
    $("span", banner).textContent = text; banner.hidden = false;
    noteForm.elements.body.focus();
  }
  function stopReplying() {
    if (!noteForm) return;
    delete noteForm.dataset.replyTo; $(".replying", noteForm).hidden = true;
  }

  /* Search in this patient's notes: the server searches the sealed bodies; the word is
     sent in a POST body, never in a URL, and is not kept. */
  const searchForm = $("#note-search"), results = $("#search-results");
  if (searchForm) {
    searchForm.addEventListener("submit", async e => {
      e.preventDefault();
      const text = searchForm.elements.text.value.trim();
      if (!text) return;
      const res = await api("POST", `/api/v1/patients/${document.body.dataset.patient}/notes/search`, { text, limit: 50 });
      results.innerHTML = "";
      const items = (res.data && res.data.items) || [];
      const head = document.createElement("li"); head.className = "empty";
      head.textContent = res.status !== 200 ? problemText(res) : items.length ? T.search_found.replace("{n}", items.length) : T.search_none;
      results.appendChild(head);
      items.forEach(n => {
        const li = document.createElement("li"); li.className = "note" + (n.urgent ? " urgent" : "");
        const who = document.createElement("p"); who.className = "who";
        who.textContent = `${n.author_name} · ${new Date(n.created_at).toLocaleString(document.documentElement.lang)}`;
        const body = document.createElement("p"); body.className = "body"; body.textContent = n.body;
        li.append(who, body); results.appendChild(li);
      });
      results.hidden = false; $("#timeline").hidden = true; $("[data-search-clear]", searchForm).hidden = false;
    });
    $("[data-search-clear]", searchForm).addEventListener("click", () => {
      searchForm.reset(); results.hidden = true; results.innerHTML = ""; $("#timeline").hidden = false;
      $("[data-search-clear]", searchForm).hidden = true;
    });
  }

  const noteForm = $("#note-form");
  /* Notes go through the outbox (static/outbox.js): the form empties at once, the note
     shows as 未送信 until the server has it, and each is sent in order with its own
     Idempotency-Key until answered — exactly once, even across a reload or a sign-in on
     the same device. */
  const outboxEl = $("#note-outbox");
  let attempt = 0;
  async function countWaiting() {
    const box = await outboxReady;
    const own = box ? await box.own() : [];
    waitingCount = own.length; showBar();
    if (outboxEl) {  // this patient's notes not yet posted
      outboxEl.innerHTML = "";
      own.filter(e => e.item.kind === "note" && !e.item.note_id && e.item.patient === document.body.dataset.patient).forEach(e => {
        const li = document.createElement("li"); li.className = "pending";
        const tag = document.createElement("strong"); tag.textContent = T.unsent;
        const text = document.createElement("span"); text.textContent = e.item.body.body;
        li.append(tag, text); outboxEl.appendChild(li);
      });
      outboxEl.hidden = !outboxEl.children.length;
    }
    return own;
  }
  // A note of this page's patient, just posted: its files go through the page's uploader
  // (progress, retry, remove) with the keys the outbox would have used.
  // The item stays (and this page holds it) until each file is uploaded or refused.
  function notePosted(entry) {
    const item = entry.item;
    if (!noteForm || item.patient !== document.body.dataset.patient) return false;
    $(".status", noteForm).textContent = T.posted; refreshTimeline(item.note_id);
    if (!entry.files.length) { outboxReady.then(box => box.remove(entry.n)).then(countWaiting); return true; }
    const release = RenkeiOutbox.hold(entry.n);
    const owner = { left: entry.files.length, settled: async () => { (await outboxReady).remove(entry.n); release(); countWaiting(); } };
    attach(entry.files, { note_id: item.note_id, series: item.series }, $(".chosen", noteForm),
           () => refreshTimeline(item.note_id), i => `${item.key}-file-${i}`, owner);
    return true;
  }
  let flushing = false;
  async function flushOutbox() {
    const box = await outboxReady;
    if (!box || flushing) return;
    flushing = true;
    let results = [];
    try { results = await RenkeiOutbox.flush(box, CSRF, { skip: e => held.has(e.n), posted: notePosted }); }
    finally { flushing = false; }
    settle(await countWaiting());
    const wait = results.find(r => r.state === "wait");
    if (!wait) { attempt = 0; if (results.length) networkLost(false); return; }
    if (wait.res && wait.res.status === 401) return;  // signed out: it waits for the next sign-in
    networkLost(wait.res === null);
    if (noteForm && wait.entry.item.kind === "note") $(".status", noteForm).textContent = T.retrying;
    if (wait.res === null) askForSync();
    await pause(wait.res && wait.res.retryAfter ? wait.res.retryAfter * 1000 : Math.min(30000, 1000 * 2 ** attempt++));
    flushOutbox();
  }
  // Background Sync: the service worker sends what waits when the connection returns,
  // even if this tab is closed by then (where the browser has it; the bar says where not).
  function askForSync() {
    if ("serviceWorker" in navigator && "SyncManager" in window) {
      navigator.serviceWorker.ready.then(reg => reg.sync.register("renkei-outbox")).catch(() => {});
    }
  }
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.addEventListener("message", e => {  // the service worker sent what waited
      if (!e.data || !e.data.outbox) return;
      const mine = (e.data.posted || []).filter(p => p.patient === document.body.dataset.patient);
      if (mine.length && noteForm) $(".status", noteForm).textContent = T.posted;
      countWaiting(); refreshTimeline(mine.length ? mine[mine.length - 1].note_id : undefined);
    });
  }
  /* What waits for this patient's page: a refused note (its text back in the box, the
     reason next to it) and an edit that met a conflict or a refusal (merged or shown here). */
  async function settle(own) {
    const box = await outboxReady, here = document.body.dataset.patient;
    for (const { n, item } of own) {
      if (item.kind !== "note" || !item.held || item.patient !== here || !noteForm) continue;
      noteForm.elements.body.value ||= item.body.body;
      clearErrors(noteForm); showErrors(noteForm, (item.held.data || {}).errors);
      $(".status", noteForm).textContent = problemText({ status: item.held.status, data: item.held.data });
      await box.remove(n);
    }
    resumeEdits(own);
    countWaiting();
  }
  outboxReady.then(async box => {
    if (!box) return;
    const own = await countWaiting();
    settle(own);
    if (own.some(e => !e.item.held)) flushOutbox();
  });
  /* Files are checked here before anything is sent, by the server's rules (type and
     size): a note with a file that would be refused is not posted until the person
     removes the file or chooses to post without its files. */
  const TYPES = ["image/jpeg", "image/png", "image/webp", "image/heic", "image/heif", "application/pdf"];
  const EXTENSIONS = /\.(jpe?g|png|webp|hei[cf]|pdf)$/i;  // a HEIC from some phones comes without a type
  let chosen = [];
  function refusal(file) {
    if (!(TYPES.includes(file.type) || (!file.type && EXTENSIONS.test(file.name)))) return T.file_type;
    if (file.size > Number(noteForm.dataset.maxBytes)) return T.file_size.replace("{mb}", Math.floor(noteForm.dataset.maxBytes / 1048576));
    return null;
  }
  function showPicked() {
    const list = $(".chosen", noteForm); list.innerHTML = "";
    chosen.forEach((file, i) => {
      const li = document.createElement("li"), why = refusal(file);
      const name = document.createElement("span"); name.textContent = file.name; li.append(name);
      if (why) {
        li.className = "failed";
        const reason = document.createElement("span"); reason.setAttribute("role", "alert"); reason.textContent = why;
        li.append(reason);
      }
      const drop = document.createElement("button"); drop.type = "button"; drop.textContent = T.file_remove;
      drop.addEventListener("click", () => { chosen.splice(i, 1); showPicked(); });
      li.append(drop); list.appendChild(li);
    });
    $("[data-post-without-files]", noteForm).hidden = !chosen.some(refusal);
  }
  function postNote(files) {
    const f = new FormData(noteForm);
    const body = { body: f.get("body"), category: f.get("category"), urgent: f.get("urgent") === "on" };
    if (noteForm.dataset.replyTo) body.reply_to = noteForm.dataset.replyTo;
    const item = { kind: "note", patient: document.body.dataset.patient, body, series: f.get("series").trim(), key: newKey() };
    noteForm.reset(); chosen = []; showPicked(); stopReplying();
    outboxReady.then(async box => { await box.add(item, files); await countWaiting(); flushOutbox(); });
  }
  if (noteForm) noteForm.addEventListener("submit", e => {
    e.preventDefault();
    if (chosen.some(refusal)) {  // nothing is sent: the reason is next to each file
      $(".status", noteForm).textContent = T.files_refused; showPicked(); return;
    }
    postNote(chosen);
  });
  if (noteForm) $("[data-post-without-files]", noteForm).addEventListener("click", () => postNote([]));
  if (noteForm) $("[data-reply-cancel]", noteForm).addEventListener("click", stopReplying);
  if (noteForm) ["camera", "files"].forEach(name => noteForm.elements[name].addEventListener("change", e => {
    chosen.push(...e.target.files); e.target.value = ""; $(".status", noteForm).textContent = ""; showPicked();
  }));

  /* Photos and PDFs ride with their note (once it is saved) or go to a section: each
     file is uploaded with a key of its own (Idempotency-Key: retried until answered,
     never stored twice), its progress shown next to where it was chosen; then the
     thumbnail appears. Files wait in page memory only, like notes. */
  const uploads = [];
  function showChosen(list) {
    if (!list) return;
    list.innerHTML = "";
    uploads.filter(u => u.list === list).forEach(u => {
      const li = document.createElement("li"); if (u.failed) li.className = "failed";
      const name = document.createElement("span"); name.textContent = u.file.name;
      const bar = document.createElement("progress"); bar.max = 1; bar.value = u.progress || 0;
      const state = document.createElement("span"); state.textContent = u.state || "";
      li.append(name, bar, state);
      if (u.failed) {  // refused by the server: try again, or let it go
        const again = document.createElement("button"); again.type = "button"; again.textContent = T.file_retry;
        again.addEventListener("click", () => { u.failed = false; u.key = newKey(); u.state = ""; showChosen(list); sendFiles(); });
        const drop = document.createElement("button"); drop.type = "button"; drop.textContent = T.file_remove;
        drop.addEventListener("click", () => { uploads.splice(uploads.indexOf(u), 1); showChosen(list); });
        li.append(again, drop);
      }
      list.appendChild(li);
    });
  }
  function sendFile(u, url) {  // one attempt: {status, data, retryAfter}, or null when the network failed
    return new Promise(resolve => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRFToken", CSRF); xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("Idempotency-Key", u.key);
      xhr.upload.onprogress = e => { if (e.lengthComputable) { u.progress = e.loaded / e.total; showChosen(u.list); } };
      xhr.onload = () => {
        let data = null; try { data = JSON.parse(xhr.responseText); } catch (err) { data = null; }
        resolve({ status: xhr.status, data, retryAfter: Number(xhr.getResponseHeader("Retry-After")) || 0 });
      };
      xhr.onerror = xhr.ontimeout = () => resolve(null);
      const body = new FormData();
      body.append("file", u.file, u.file.name);
      Object.entries(u.fields).forEach(([k, v]) => { if (v) body.append(k, v); });
      xhr.send(body);
    });
  }
  function attach(files, fields, list, done, keyOf, owner) {
    [...files].forEach((file, i) => uploads.push({ file, fields, list, done, owner, key: keyOf ? keyOf(i) : newKey() }));
    showChosen(list); sendFiles();
  }
  let sendingFiles = false;
  async function sendFiles() {
    if (sendingFiles) return;
    sendingFiles = true;
    const url = `/api/v1/patients/${document.body.dataset.patient}/attachments`;
    while (uploads.some(u => !u.failed)) {
      const u = uploads.find(x => !x.failed);
      let res = null;
      for (let attempt = 0; ; attempt++) {
        u.state = T.uploading; showChosen(u.list);
        res = await sendFile(u, url);
        if (!(res === null || res.status === 503 || (res.status === 409 && res.retryAfter))) break;
        networkLost(res === null);
        u.state = T.retrying; u.progress = 0; showChosen(u.list);
        await pause(res && res.retryAfter ? res.retryAfter * 1000 : Math.min(30000, 1000 * 2 ** attempt));
      }
      networkLost(false);
      if (res.status === 201) { uploads.splice(uploads.indexOf(u), 1); u.done(); }
      else { u.failed = true; u.state = problemText(res); }
      if (u.owner && --u.owner.left === 0) u.owner.settled();  // each file of a waiting note uploaded or refused
      showChosen(u.list);
    }
    sendingFiles = false;
  }
  document.addEventListener("change", e => {  // a section's own "attach" button
    const input = e.target.closest("input[data-attach-section]");
    if (!input || !input.files.length) return;
    const key = input.dataset.attachSection, list = input.closest(".attach").querySelector(".chosen");
    attach(input.files, { section: key }, list, () => refreshSection(key));
    input.value = "";
  });
  async function refreshSection(key) {
    const section = sectionEl(key), form = section && $("form[data-section-form]", section);
    if (!section || (form && !form.hidden)) return;  // editing: the thumbnails wait for the save
    const el = await fragment(`/patients/${document.body.dataset.patient}/sections/${key}`);
    section.replaceWith(el); wire(el);
  }
  if (document.body.dataset.live === "patient") wire(document);

  /* Leaving the page (a link, the language switch, closing the tab) with work that would
     be lost: the browser asks first. What waits in the sealed outbox is not lost. */
  let durable = false;
  outboxReady.then(box => { durable = Boolean(box && box.durable); });
  function unsaved() {
    const kept = f => durable && f._outboxN;
    return (!durable && (waitingCount > 0 || pending.size > 0)) || uploads.some(u => !u.failed)
      || Boolean(noteForm && noteForm.elements.body.value.trim())
      || $$("form[data-section-form]").some(f => !f.hidden && f._base && !kept(f) && !same(collect(f), f._base.content))
      || $$("form[data-creates]").some(f => f.dataset.dirty)
      || Boolean(vitalsForm && vitalsForm.dataset.dirty);
  }
  window.addEventListener("beforeunload", e => { if (unsaved()) { e.preventDefault(); e.returnValue = ""; } });

  /* ---- team, consent, administration forms ---- */
  function jsonForm(id, url, method, after, shape) {
    const form = document.getElementById(id);
    if (!form) return;
    form.addEventListener("input", () => { form.dataset.dirty = "1"; });
    form.addEventListener("submit", async e => {
      e.preventDefault();
      let body = Object.fromEntries(new FormData(form).entries());
      if (shape) body = shape(body);
      const target = typeof url === "function" ? url(body) : url;
      if (form.dataset.sending) return;
      form.dataset.sending = "1";
      let res = null;
      try {
        res = form.hasAttribute("data-creates")
          ? await create(form, target, body, () => { $(".status", form).textContent = T.retrying; })
          : await api(method || "POST", target, body);
      } catch (err) { networkLost(true); }
      delete form.dataset.sending;
      if (res === null) { $(".status", form).textContent = T.error; return; }
      clearErrors(form);
      if (res.status < 300) { delete form.dataset.dirty; (after || (() => location.reload()))(res); }
      else {
        showErrors(form, (res.data || {}).errors);
        $(".status", form).textContent = problemText(res, form);
        // On a long form the first problem may be a screen away: go to it.
        const first = $('[aria-invalid="true"]', form);
        if (first) (first.matches("fieldset, label") ? $("input", first) : first).focus();
      }
    });
  }
  const pid = document.body.dataset.patient;
  jsonForm("member-form", `/api/v1/patients/${pid}/team`, "POST", null, b => (b.user_id ? b : { role: b.role }));
  jsonForm("consent-form", `/api/v1/patients/${pid}/consents`);
  // Registration: the consent obtained at intake goes with the patient, in one request.
  // A field left empty is not sent (a required one is then named as missing).
  const given = o => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v.trim() !== ""));
  jsonForm("register-form", "/api/v1/patients", "POST", res => { location.href = `/patients/${res.data.id}`; }, b => {
    const { consented, obtained_on, obtained_by, scope, ...patient } = b;
    return consented ? { ...given(patient), consent: given({ obtained_on, obtained_by, scope }) } : given(patient);
  });
  const consented = $('#register-form [name="consented"]');
  if (consented) {
    const sync = () => { $("#consent-details").hidden = !consented.checked; };
    consented.addEventListener("change", sync); sync();
  }
  jsonForm("org-form", "/api/v1/organizations");
  // A new account: no password here — the person gets the invitation link (shown once,
  // to be handed to them alone) and chooses their own (renkei/invitations.py).
  const showInvitation = url => {
    const out = $("#invitation-out");
    $("a", out).href = $("a", out).textContent = url;
    out.hidden = false; out.scrollIntoView();
  };
  jsonForm("user-form", "/api/v1/users", "POST", res => {
    showInvitation(res.data.invitation.url);
    $("#user-form").reset();
  }, b => given(b));
  $$("[data-confirm-user],[data-invite-user]").forEach(b => b.addEventListener("click", async () => {
    const id = b.dataset.confirmUser || b.dataset.inviteUser;
    const res = await api("POST", `/api/v1/users/${id}/${b.dataset.confirmUser ? "confirm" : "invitation"}`);
    if (res.status === 200) { location.reload(); return; }
    if (res.status === 201) { showInvitation(res.data.url); return; }
    b.nextElementSibling.textContent = problemText(res, b.closest("td"));
  }));
  // Access resets: asked here, approved by a second administrator, whose page shows the
  // recovery code once (renkei/resets.py).
  $$("[data-reset-user]").forEach(b => b.addEventListener("click", async () => {
    if (!confirm(b.dataset.ask)) return;
    const res = await api("POST", `/api/v1/users/${b.dataset.resetUser}/reset`);
    if (res.status === 201) { location.reload(); return; }
    b.nextElementSibling.textContent = problemText(res, b.closest("td"));
  }));
  $$("[data-approve-reset]").forEach(b => b.addEventListener("click", async () => {
    const res = await api("POST", `/api/v1/users/${b.dataset.user}/reset/${b.dataset.approveReset}/approve`);
    if (res.status !== 201) { b.nextElementSibling.textContent = problemText(res, b.closest("li")); return; }
    const out = $("#recovery-out");
    $("code", out).textContent = res.data.recovery_code;
    $("small", out).textContent = res.data.expires_at;
    out.hidden = false;
    b.disabled = true;
  }));
  $$("[data-confirm-appointment]").forEach(b => b.addEventListener("click", async () => {
    const res = await api("POST", `/api/v1/patients/${pid}/team/${b.dataset.confirmAppointment}/confirm`);
    if (res.status === 200) location.reload();
    else b.nextElementSibling.textContent = problemText(res, b.closest("li"));
  }));
  const invitationForm = document.getElementById("invitation-form");
  if (invitationForm) {
    const code = decodeURIComponent(location.hash.slice(1));
    $("#invitation-missing").hidden = Boolean(code);
    invitationForm.addEventListener("submit", async e => {
      e.preventDefault();
      const { login, password, again } = Object.fromEntries(new FormData(invitationForm).entries());
      clearErrors(invitationForm);
      const status = $(".status", invitationForm);
      if (password !== again) { status.textContent = invitationForm.dataset.mismatch; return; }
      const res = await api("POST", "/api/v1/invitations/accept", given({ code, password, login }));
      if (res.status === 201) { location.replace("/login?invited=1"); return; }
      showErrors(invitationForm, (res.data || {}).errors);
      status.textContent = res.status === 410 ? invitationForm.dataset.gone
        : res.status === 404 ? invitationForm.dataset.unknown : problemText(res, invitationForm);
    });
  }
  jsonForm("totp-confirm", "/api/v1/auth/totp/confirm");
  // Break-glass: the patient by the sheet's code, or by name and birth date; only the
  // chosen way's fields are sent.
  jsonForm("breakglass-form", "/api/v1/breakglass", "POST", res => { location.href = `/patients/${res.data.patient_id}`; }, b => {
    const { way, code, name, birth_date, ...rest } = b;
    return way === "name" ? given({ ...rest, name, birth_date }) : given({ ...rest, code });
  });
  const ways = $$('#breakglass-form input[name="way"]');
  if (ways.length) {
    const sync = () => { $$("#breakglass-form [data-way]").forEach(el => { el.hidden = el.dataset.way !== $('#breakglass-form input[name="way"]:checked').value; }); };
    ways.forEach(w => w.addEventListener("change", sync)); sync();
  }
  /* ---- the team picker: search people by name or organisation; current members and
     professions without a team role are not offered ---- */
  const peopleSearch = $("#people-search");
  if (peopleSearch) {
    const form = $("#member-form"), results = $("#people-results"), picked = $("#people-picked");
    const rolesOf = JSON.parse($("#profession-roles").textContent);
    const members = new Set(form.dataset.members.split(","));
    const pick = person => {
      const roles = rolesOf[person.profession];
      $('[name="user_id"]', form).value = person.id;
      picked.textContent = `${person.display_name}（${person.organization_name || ""}）`;
      picked.hidden = false;
      results.replaceChildren();
      peopleSearch.value = "";
      $$('select[name="role"] option', form).forEach(o => { o.disabled = !roles.includes(o.value); });
      const role = $('select[name="role"]', form); if (!roles.includes(role.value)) role.value = roles[0];
    };
    let asked = 0, timer = null;
    peopleSearch.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const q = peopleSearch.value.trim(), mine = ++asked;
        if (!q) { results.replaceChildren(); return; }
        const res = await api("GET", "/api/v1/users?q=" + encodeURIComponent(q)).catch(() => null);
        if (mine !== asked || !res || res.status !== 200) return;  // a newer search is under way
        const onTeam = res.data.items.filter(u => members.has(u.id));
        const offered = res.data.items.filter(u => !members.has(u.id) && (rolesOf[u.profession] || []).length);
        results.replaceChildren(...offered.map(u => {
          const li = document.createElement("li"), b = document.createElement("button");
          b.type = "button"; b.dataset.pick = u.id;
          b.textContent = `${u.display_name}（${T.professions[u.profession] || u.profession}・${u.organization_name || ""}）`;
          b.addEventListener("click", () => pick(u));
          li.append(b); return li;
        }));
        if (!offered.length) {  // say whether the person is on the team already or not found at all
          const li = document.createElement("li"); li.className = "empty";
          li.textContent = onTeam.length ? T.on_team.replace("{who}", onTeam.map(u => u.display_name).join(T.sep)) : T.nobody_found;
          results.append(li);
        }
      }, 200);
    });
    // Enter in the search box (the soft keyboard's 検索 key) picks the only or first
    // result; it never submits the form with someone picked earlier.
    peopleSearch.addEventListener("keydown", e => {
      if (e.key !== "Enter") return;
      e.preventDefault();
      const first = $("#people-results button[data-pick]");
      if (first) first.click();
    });
  }
  $$("[data-remove-member]").forEach(b => b.addEventListener("click", async () => {
    if (!confirm(T.confirm_remove)) return;
    const res = await api("DELETE", `/api/v1/patients/${pid}/team/${b.dataset.removeMember}`);
    if (res.status === 204) location.reload();
  }));
  // 訪問前サマリー: 「すべて既読」 acknowledges each unread note of the patient, once each.
  $$("[data-ack-all]").forEach(b => b.addEventListener("click", async () => {
    b.disabled = true;
    for (const id of b.dataset.ackAll.split(",")) {
      const res = await create({}, `/api/v1/patients/${b.dataset.patient}/notes/${id}/ack`);
      if (res.status !== 204) { b.disabled = false; b.textContent = problemText(res); return; }
    }
    location.reload();
  }));
  $$("[data-withdraw-consent]").forEach(b => b.addEventListener("click", async () => {
    if (!confirm(T.confirm_withdraw)) return;
    const res = await api("DELETE", `/api/v1/patients/${pid}/consents/${b.dataset.withdrawConsent}`);
    if (res.status === 204) location.reload();
  }));
  $$("[data-disable-user],[data-enable-user]").forEach(b => b.addEventListener("click", async () => {
    const id = b.dataset.disableUser || b.dataset.enableUser;
    if (b.dataset.disableUser && !confirm(b.dataset.ask)) return;
    const res = await api("PATCH", `/api/v1/users/${id}`, { disabled: Boolean(b.dataset.disableUser) });
    if (res.status === 200) location.reload();
  }));

  /* ---- access log: verify the chain after the page has loaded ---- */
  const chain = $("#chain-status[data-verify]");
  if (chain) {  // the server renders the result (templates/_verify_status.html); a bad entry's row is marked
    chain.textContent = chain.dataset.checking;
    fetch(chain.dataset.verify, { credentials: "same-origin" })
      .then(res => res.ok ? res.text() : Promise.reject(res.status))
      .then(html => {
        chain.outerHTML = html;
        const bad = $("#chain-status").dataset.firstBad;
        if (bad) { const row = $(`table.audit tr[data-seq="${bad}"]`); if (row) row.classList.add("bad-entry"); }
      })
      .catch(() => { chain.classList.add("bad"); chain.textContent = chain.dataset.failed; });
  }

  /* ---- vital signs (templates/_vitals.html, docs/API.md "Observations") ----
     One form, one save for every value typed. Numbers are sent as typed (全角, 36,8):
     the server reads them and names a refused field in the page's language. A value out
     of the ordinary is asked about once: the same values saved again go through. */
  const vitalsForm = $("#vitals-form");
  const typedNumber = text => {
    let t = text.normalize("NFKC").trim();
    if (/^\d{1,3}(,\d{3})+$/.test(t)) t = t.replace(/,/g, "");
    else if ((t.match(/,/g) || []).length === 1 && !t.includes(".")) t = t.replace(",", ".");
    return t === "" ? NaN : Number(t);
  };
  const localNow = () => {  // datetime-local in the device's time, which for the team is Japan time
    const d = new Date(); d.setSeconds(0, 0);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  };
  /* A tap (or a click) on a chart shows the reading nearest to it: value, when, who. */
  document.addEventListener("click", e => {
    const svg = e.target.closest("svg.trend"), figure = svg && svg.closest("figure.chart");
    const tips = svg ? $$("circle.tip", svg) : [];
    if (!tips.length || !$(".tapped", figure)) return;
    const at = new DOMPoint(e.clientX, e.clientY).matrixTransform(svg.getScreenCTM().inverse());
    const near = tips.reduce((a, b) => Math.abs(b.cx.baseVal.value - at.x) < Math.abs(a.cx.baseVal.value - at.x) ? b : a);
    tips.forEach(t => t.classList.toggle("on", t === near));
    const out = $(".tapped", figure); out.textContent = near.dataset.tip; out.hidden = false;
  });
  async function refreshCharts(highlight) {
    const box = $("#vitals-charts");
    if (!box) return;
    const el = await fragment(`/patients/${document.body.dataset.patient}/vitals/charts?days=${box.dataset.days}`);
    box.replaceWith(el);
    if (highlight) { const fig = $(`[data-chart="${highlight}"]`, el); if (fig) flash(fig); }
  }
  if (vitalsForm) {
    const opener = $("[data-open-vitals]"), whenInput = vitalsForm.elements.measured_at;
    const open = on => {
      vitalsForm.hidden = !on; opener.setAttribute("aria-expanded", String(on));
      if (on) { whenInput.value = localNow(); whenInput.max = localNow(); $("input[data-kind]", vitalsForm).focus(); }
    };
    opener.addEventListener("click", () => open(vitalsForm.hidden));
    $("[data-close-vitals]", vitalsForm).addEventListener("click", () => { vitalsForm.reset(); open(false); });
    vitalsForm.addEventListener("input", () => { vitalsForm.dataset.dirty = "1"; });
    vitalsForm.addEventListener("submit", async e => {
      e.preventDefault();
      clearErrors(vitalsForm);
      const status = $(".status", vitalsForm), items = [], inputs = [], unusual = [];
      const at = whenInput.value ? new Date(whenInput.value).toISOString() : undefined;  // the device's zone → UTC
      const note = vitalsForm.elements.note.value.trim() || undefined;
      $$("input[data-kind]", vitalsForm).forEach(input => {
        if (!input.value.trim()) return;
        const n = typedNumber(input.value);
        const possible = n >= Number(input.dataset.low) && n <= Number(input.dataset.high);  // else the server says why
        if (possible && (n < Number(input.dataset.usualLow) || n > Number(input.dataset.usualHigh))) unusual.push(`${input.dataset.label} ${input.value}`);
        const kind = input.dataset.kind;
        let item = items.find(i => i.kind === kind && input.dataset.part);
        if (!item) { item = { kind, measured_at: at, note }; items.push(item); inputs.push([]); }
        inputs[items.indexOf(item)].push(input);
        if (input.dataset.part) (item.components ||= {})[input.dataset.part] = input.value;
        else item.value = input.value;
        if (kind === "bowel_movement" && vitalsForm.elements.bristol.value) item.bristol = Number(vitalsForm.elements.bristol.value);
      });
      if (!items.length) { status.textContent = T.vitals_empty; return; }
      const typed = JSON.stringify(items);
      if (unusual.length && vitalsForm.dataset.confirmed !== typed) {
        vitalsForm.dataset.confirmed = typed;
        status.textContent = T.vitals_unusual.replace("{values}", unusual.join(T.sep)); return;
      }
      status.textContent = T.saving;
      const res = await create(vitalsForm, `/api/v1/patients/${document.body.dataset.patient}/observations`,
                               { items }, () => { status.textContent = T.retrying; });
      if (res.status === 201) {
        delete vitalsForm.dataset.dirty; delete vitalsForm.dataset.confirmed;
        vitalsForm.reset(); whenInput.value = localNow();
        const alerted = res.data.items.filter(o => o.alert).map(o => T.kinds[o.kind] || o.kind);
        status.textContent = alerted.length ? T.vitals_saved_alert.replace("{kinds}", alerted.join(T.sep)) : T.vitals_saved;
        refreshCharts(res.data.items[0].kind);
        return;
      }
      const errors = ((res.data || {}).errors || {}).items || {};
      Object.entries(errors).forEach(([i, fields]) => Object.entries(fields).forEach(([field, messages]) => {
        const targets = field === "components" && !Array.isArray(messages)
          ? Object.entries(messages).map(([part, m]) => [inputs[i].find(x => x.dataset.part === part) || inputs[i][0], m])
          : [[field === "measured_at" ? whenInput : field === "note" ? vitalsForm.elements.note : inputs[i][0], messages]];
        targets.forEach(([target, m]) => {
          const text = [].concat(m)[0];  // the server's own words, in the page's language
          const label = target.closest("label");
          if ($$(".field-error", label).some(e => e.textContent === text)) return;  // one time for five values
          const small = document.createElement("small"); small.className = "field-error"; small.setAttribute("role", "alert");
          small.textContent = text;
          target.setAttribute("aria-invalid", "true"); label.append(small);
        });
      }));
      status.textContent = problemText(res);
      const first = $('[aria-invalid="true"]', vitalsForm); if (first) first.focus();
    });
  }
  /* 誤入力: the table's readings the viewer may mark become buttons only when asked for. */
  const sheetSlot = $("#sheet-slot");
  $$("[data-mark-errors]").forEach(t => t.addEventListener("click", async () => {
    await loadSheet();
    const on = t.getAttribute("aria-pressed") !== "true";
    t.setAttribute("aria-pressed", String(on));
    sheetSlot.classList.toggle("marking", on);
    $$("[data-mark]", sheetSlot).forEach(cell => { if (on) { cell.setAttribute("role", "button"); cell.tabIndex = 0; } else { cell.removeAttribute("role"); cell.removeAttribute("tabindex"); } });
  }));
  if (sheetSlot) sheetSlot.addEventListener("click", async e => {
    const cell = e.target.closest("[data-mark]");
    if (!cell || !sheetSlot.classList.contains("marking")) return;
    const row = cell.closest("tr"), column = $$("thead th", sheetSlot)[cell.closest("td").cellIndex];
    const which = `${row.cells[0].textContent} ${column ? column.firstChild.textContent : ""} ${cell.firstChild.textContent}`;
    if (!confirm(`${which}\n${T.confirm_entered_in_error}`)) return;
    const res = await api("POST", `/api/v1/patients/${document.body.dataset.patient}/observations/${cell.dataset.reading}/entered-in-error`);
    if (res.status !== 200) { alert(problemText(res)); return; }
    delete $("#sheet-box").dataset.loaded;  // the table again, still open and still marking
    await loadSheet();
    $$("[data-mark]", sheetSlot).forEach(c => { c.setAttribute("role", "button"); c.tabIndex = 0; });
    refreshCharts();
  });
  const limitsForm = $("#thresholds-form");
  if (limitsForm) limitsForm.addEventListener("submit", async e => {
    e.preventDefault();
    const thresholds = {};
    $$("fieldset[data-kind]", limitsForm).forEach(fs => {
      const b = {};
      $$("input", fs).forEach(i => { if (i.value.trim()) b[i.name] = i.name === "within_days" ? Number(typedNumber(i.value)) : i.value.trim(); });
      if (!Object.keys(b).length) return;
      if (fs.dataset.part) (thresholds[fs.dataset.kind] ||= {})[fs.dataset.part] = b;
      else thresholds[fs.dataset.kind] = b;
    });
    clearErrors(limitsForm);
    const res = await api("PUT", `/api/v1/patients/${document.body.dataset.patient}/observations/thresholds`,
                          { thresholds }, { "If-Match": `"${limitsForm.dataset.version}"` });
    if (res.status === 200) { location.reload(); return; }
    const errs = ((res.data || {}).errors || {}).thresholds || {};
    Object.entries(errs).forEach(([kind, v]) => {
      const sets = Array.isArray(v) ? [[null, v]] : Object.entries(v);
      sets.forEach(([name, m]) => {
        const nested = m && !Array.isArray(m);
        (nested ? Object.entries(m) : [[name, m]]).forEach(([field, msgs]) => {
          const fs = $$(`fieldset[data-kind="${kind}"]`, limitsForm).find(f => !nested || f.dataset.part === name) || $(`fieldset[data-kind="${kind}"]`, limitsForm);
          const input = fs && ($(`input[name="${field}"]`, fs) || $("input", fs));
          if (!input) return;
          const small = document.createElement("small"); small.className = "field-error"; small.textContent = [].concat(msgs)[0];
          input.setAttribute("aria-invalid", "true"); input.closest("label").append(small);
        });
      });
    });
    $(".status", limitsForm).textContent = res.status === 412 ? T.thresholds_stale : problemText(res);
  });
  const importForm = $("#import-form");
  if (importForm) {
    let text = null;
    const url = `/api/v1/patients/${document.body.dataset.patient}/observations/import`;
    const show = data => {
      const box = $("#import-preview"); box.innerHTML = "";
      const table = document.createElement("table"); table.className = "grid readings";
      const head = table.createTHead().insertRow();
      T.import_columns.forEach(c => { const th = document.createElement("th"); th.textContent = c; head.append(th); });
      data.rows.forEach(r => {
        const tr = table.insertRow(-1); tr.className = r.errors ? "refused" : r.duplicate ? "duplicate" : "new";
        const value = r.components ? `${r.components.systolic}/${r.components.diastolic}` : (r.value ?? "");
        const why = r.errors ? Object.values(r.errors).map(m => [].concat(m)[0]).join(" ") : r.duplicate ? T.import_duplicate : T.import_new;
        [r.line, when(r.measured_at), T.kinds[r.kind] || r.kind || "", value, why].forEach(c => { tr.insertCell().textContent = c; });
      });
      box.append(table);
      const p = document.createElement("p");
      p.textContent = T.import_summary.replace("{new}", data.new).replace("{duplicates}", data.duplicates).replace("{refused}", data.refused)
        + (data.refused ? " " + T.import_fix_rows : "");
      box.append(p);
      $("[data-import-save]", importForm).hidden = !(data.new > 0 && data.refused === 0);
    };
    importForm.elements.csv.addEventListener("change", async () => {
      const file = importForm.elements.csv.files[0];
      if (!file) return;
      const bytes = await file.arrayBuffer();
      try { text = new TextDecoder("utf-8", { fatal: true }).decode(bytes); }
      catch (err) { text = new TextDecoder("shift_jis").decode(bytes); }  // Excel in Japan saves CSV as Shift_JIS
      $(".status", importForm).textContent = file.name;
      const res = await api("POST", url + "/preview", { csv: text });
      if (res.status === 200) show(res.data);
      else { $("#import-preview").textContent = ((res.data || {}).errors || {}).csv || problemText(res); }
    });
    importForm.addEventListener("submit", async e => {
      e.preventDefault();
      if (!text) return;
      const res = await create(importForm, url, { csv: text }, () => { $(".status", importForm).textContent = T.retrying; });
      if (res.status !== 201) { $(".status", importForm).textContent = problemText(res); return; }
      text = null; importForm.reset(); $("#import-preview").innerHTML = ""; $("[data-import-save]", importForm).hidden = true;
      $(".status", importForm).textContent = T.import_done.replace("{n}", res.data.saved.length);
      refreshCharts();
      const sheet = $("#sheet-box");
      if (sheet && sheet.dataset.loaded) { delete sheet.dataset.loaded; if (sheet.open) loadSheet(); }
    });
  }

  /* ---- live updates ----
     Every event carries the person's next seq, gapless. lastSeq is the last one applied
     in order; an event past a gap waits in `ahead` while we resume from lastSeq (the
     server replays what we missed from its store). We also resume on (re)connect, on
     focus, when the server says its message queue is back ("resync"), and every 30 s
     while idle. The seq in resume's acknowledgement is authoritative: what the server
     no longer shows us (e.g. after leaving a team) leaves no gap to chase. */
  if (window.io && document.body.dataset.live) {
    let lastSeq = document.body.dataset.seq ? Number(document.body.dataset.seq) : null;
    const ahead = new Map();
    let resuming = false, lastActivity = Date.now();
    const socket = window.io({ transports: ["websocket"] });
    const unavailable = on => { const b = $("#server-unavailable"); if (b) b.hidden = !on; };
    const resume = () => {
      if (lastSeq === null || resuming || !socket.connected) return;
      resuming = true;
      socket.timeout(10000).emit("resume", { since: lastSeq }, (err, ack) => {
        resuming = false; lastActivity = Date.now();
        if (err || !ack) { setTimeout(resume, 3000); return; }
        if (ack.error === "unavailable") { unavailable(true); setTimeout(resume, (ack.retry_after || 7) * 1000); return; }
        if (ack.error) return;
        unavailable(false);
        if (ack.seq > lastSeq) lastSeq = ack.seq;  // authoritative
        ahead.forEach((_, seq) => { if (seq <= lastSeq) ahead.delete(seq); });
        drain();
        if (ahead.size) resume();  // something beyond the replay is still missing
      });
    };
    const drain = () => {
      while (ahead.has(lastSeq + 1)) { const [n, ev] = ahead.get(lastSeq + 1); ahead.delete(lastSeq + 1); lastSeq = ev.seq; apply(n, ev); }
    };
    socket.on("connect", () => { unavailable(false); resume(); });
    socket.on("connect_error", err => { if (err && err.data && err.data.error === "unavailable") unavailable(true); });
    socket.on("resync", resume);
    window.addEventListener("focus", resume);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) resume(); });
    setInterval(() => { if (Date.now() - lastActivity > 30000) { lastActivity = Date.now(); resume(); } }, 5000);
    const handle = (name, ev) => {
      lastActivity = Date.now();
      if (lastSeq === null) lastSeq = ev.seq - 1;
      if (ev.seq <= lastSeq) return;  // already applied (a resume may repeat what arrived)
      if (ev.seq > lastSeq + 1) { ahead.set(ev.seq, [name, ev]); resume(); return; }
      lastSeq = ev.seq; apply(name, ev); drain();
    };
    const apply = (name, ev) => {
      if (document.body.dataset.live === "list") {
        const li = $(`li[data-patient="${ev.patient_id}"]`);
        if (li && (name === "note.created" || name === "note.seen")) {  // the unread counts move live
          const mine = ev.actor_id === document.body.dataset.me;
          const step = name === "note.created" ? (mine ? 0 : 1) : -1;
          const bump = (sel, by) => {
            const badge = $(sel, li), n = Math.max(0, Number(badge.dataset.unread ?? badge.dataset.unreadUrgent) + by);
            if ("unread" in badge.dataset) badge.dataset.unread = n; else badge.dataset.unreadUrgent = n;
            $("b", badge).textContent = n; badge.hidden = !n;
          };
          bump("[data-unread]", step);
          if (ev.urgent) bump("[data-unread-urgent]", step);
          if (step > 0 && ev.urgent) li.parentElement.prepend(li);  // 至急 未読 to the top, as the next load would show it
        }
        if (li && name !== "note.seen") {
          li.classList.add("updated"); flash(li);
          if (name === "observation.alert") {  // to the top, marked, as the next load would show it
            const badge = $(".badge.vital-alert", li) || Object.assign(document.createElement("span"), { className: "badge urgent vital-alert" });
            badge.textContent = T.vitals_alert_badge; $(".badges", li).prepend(badge);
            li.parentElement.prepend(li);
          }
        }
        return;
      }
      if (ev.patient_id !== document.body.dataset.patient) return;
      if (name === "record.updated") {
        const section = sectionEl(ev.section), form = section && $("form[data-section-form]", section);
        if (form && !form.hidden) {  // editing: do not touch the form; say who, the save will merge
          section.classList.add("stale");
          api("GET", `/api/v1/patients/${ev.patient_id}/record/${ev.section}`).then(r => {
            const d = r.data || {};
            if (r.status === 200 && d.version === ev.version) {
              $(".status", form).textContent = T.updated_by.replace("{who}", d.updated_by_name || "").replace("{when}", when(d.updated_at));
            }
          }).catch(() => {});
          return;
        }
        fragment(`/patients/${ev.patient_id}/sections/${ev.section}`).then(el => { section.replaceWith(el); wire(el); flash(el); });
      } else if (name === "note.created") {
        refreshTimeline(ev.note_id);
      } else if (name === "attachment.created") {
        if (ev.note_id) refreshTimeline(ev.note_id);
        if (ev.section) refreshSection(ev.section);
      } else if (name === "note.escalated") {  // 「15分未確認のため…へ通知しました」 appears on the note
        refreshTimeline(ev.note_id);
      } else if (name === "note.acked") {  // 既読 n/m moves on the author's page (only there: each refresh is an audited read)
        if ($(`#timeline li[data-note="${CSS.escape(ev.note_id)}"][data-mine]`)) refreshTimeline();
      } else if (name === "observation.alert") {  // a reading crossed a threshold: say so at once, then show it
        const banner = $("#vitals-alert-live");
        if (banner) { $("span", banner).textContent = T.kinds[ev.kind] || ev.kind; banner.hidden = false; }  // red already: no flash
        refreshCharts(ev.kind);
      } else if (name === "breakglass.opened") {  // someone off the team opened the record: say so at once
        const banner = $("#breakglass-live"); if (banner) { banner.hidden = false; flash(banner); }
        refreshTimeline();  // the entry with who, when and why
      }
    };
    ["record.updated", "note.created", "note.seen", "note.acked", "note.escalated", "attachment.created", "team.updated", "breakglass.opened",
     "access.after_reset", "observation.alert"]
      .forEach(n => socket.on(n, ev => handle(n, ev)));
  }
  /* The photo viewer: the photos on the page in order; swipe, ←/→, Esc or ✕. */
  const viewer = $("#viewer");
  if (viewer) {
    let photos = [], at = 0;
    const show = i => {
      at = (i + photos.length) % photos.length;
      const a = photos[at], img = $("img", viewer);
      img.src = a.dataset.photo; img.alt = a.dataset.caption || "";
      $("figcaption", viewer).textContent = [a.dataset.when, a.dataset.caption].filter(Boolean).join(" · ");
    };
    document.addEventListener("click", e => {
      const a = e.target.closest("a[data-photo]");
      if (!a) return;
      e.preventDefault(); photos = $$("a[data-photo]"); show(photos.indexOf(a)); viewer.showModal();
    });
    viewer.addEventListener("click", e => {
      const step = e.target.closest("[data-viewer-step]");
      if (step) show(at + Number(step.dataset.viewerStep));
      else if (e.target.closest("[data-viewer-close]") || e.target === viewer) viewer.close();
    });
    viewer.addEventListener("keydown", e => {
      if (e.key === "ArrowRight") show(at + 1);
      if (e.key === "ArrowLeft") show(at - 1);
    });
    let startX = null;
    viewer.addEventListener("touchstart", e => { startX = e.touches[0].clientX; }, { passive: true });
    viewer.addEventListener("touchend", e => {
      if (startX === null) return;
      const dx = e.changedTouches[0].clientX - startX; startX = null;
      if (Math.abs(dx) > 50) show(at + (dx < 0 ? 1 : -1));
    });
    viewer.addEventListener("close", () => $("img", viewer).removeAttribute("src"));
  }

  /* ---- the installable app and its notifications (account page) ----
     The service worker caches nothing (static/sw.js); it only shows pushes. */
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
  function keyBytes(text) {  // base64url → bytes, for applicationServerKey
    const raw = atob((text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(raw, c => c.charCodeAt(0));
  }
  async function currentSubscription() {
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) return null;
    const reg = await navigator.serviceWorker.ready;
    return reg.pushManager.getSubscription();
  }
  const pushForm = document.getElementById("push-subscribe");
  if (pushForm) {
    const supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
    pushForm.hidden = !supported;
    $("#push-unsupported").hidden = supported;
    currentSubscription().then(sub => {
      if (!sub) return;
      $$("#push-devices li[data-endpoint]").forEach(li => { $(".this-device", li).hidden = li.dataset.endpoint !== sub.endpoint; });
    }).catch(() => {});
    pushForm.addEventListener("submit", async e => {
      e.preventDefault();
      const status = $(".status", pushForm);
      status.textContent = T.saving;
      try {
        if (await Notification.requestPermission() !== "granted") { status.textContent = T.push_denied; return; }
        const reg = await navigator.serviceWorker.ready;
        const key = (await api("GET", "/api/v1/push/vapid-public-key")).data.public_key;
        const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
        const res = await api("POST", "/api/v1/push/subscriptions",
                              Object.assign(sub.toJSON(), { label: pushForm.label.value.trim() || null }));
        if (res.status < 300) location.reload();
        else status.textContent = problemText(res, pushForm);
      } catch (err) { status.textContent = T.push_failed; }
    });
  }
  $$("#push-devices .remove-device").forEach(button => button.addEventListener("click", async () => {
    const li = button.closest("li");
    const res = await api("DELETE", `/api/v1/push/subscriptions/${li.dataset.id}`);
    if (res.status !== 204 && res.status !== 404) return;
    const sub = await currentSubscription().catch(() => null);
    if (sub && sub.endpoint === li.dataset.endpoint) await sub.unsubscribe().catch(() => {});
    li.remove();
  }));
  // What I hear of: the checkboxes as the API's nested settings.
  jsonForm("notify-form", "/api/v1/users/me/notifications", "PUT", () => {
    $("#notify-form .status").textContent = T.saved;
  }, b => {
    const out = { push: { urgent: "push.urgent" in b, breakglass: "push.breakglass" in b,
                          mentions: "push.mentions" in b, changes: "push.changes" in b },
                  quiet_hours: "quiet" in b ? { start: b.quiet_start, end: b.quiet_end } : null };
    if ($('#notify-form [name="email.urgent"]')) out.email = { urgent: "email.urgent" in b, digest: "email.digest" in b };
    return out;
  });
  jsonForm("email-form", "/api/v1/users/me/email", "PUT");
  jsonForm("escalation-form", `/api/v1/patients/${pid}/escalation`, "PUT", () => {
    $("#escalation-form .status").textContent = T.saved;
  }, b => ({ after_minutes: Number(b.after_minutes), repeat_minutes: Number(b.repeat_minutes),
             call_list: $$('#escalation-form [name="call_list"]:checked').map(box => box.value) }));
  jsonForm("email-confirm", "/api/v1/users/me/email/confirm", "POST", () => { location.href = "/account"; });
  const confirmCode = $('#email-confirm [name="code"]');
  if (confirmCode) confirmCode.value = new URLSearchParams(location.hash.slice(1)).get("code") || "";
  const emailRemove = $("#email-remove");
  if (emailRemove) emailRemove.addEventListener("click", async () => {
    if ((await api("PUT", "/api/v1/users/me/email", { address: null })).status < 300) location.reload();
  });
})();
