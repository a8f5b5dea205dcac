/* The offline outbox (docs/ARCHITECTURE.md, "The offline outbox"), shared by the pages
   (app.js) and the service worker (sw.js, which sends when the tab is closed).

   Notes, section edits and a note's files that could not be sent wait in IndexedDB, each
   item sealed with AES-GCM under this device's key for the signed-in person — a key
   the server derives and hands to the page (and to the service worker) after sign-in,
   which is never stored here. A stored item is {n, kid, iv, ct}: no text, no patient,
   no kind in the clear. Items sealed for someone else (a colleague on a shared tablet)
   are skipped: they wait for that person's next sign-in. Sending keeps the rules of the
   live page: a note's Idempotency-Key (and its files' keys, derived from it) make a
   second send a replay, and an edit carries If-Match of the version it was made on. */
"use strict";
self.RenkeiOutbox = (() => {
  const DB = "renkei-outbox", STORE = "items", LOCK = "renkei-outbox";

  const fromB64 = text => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), c => c.charCodeAt(0));
  function request(r) { return new Promise((ok, fail) => { r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); }); }
  let opened = null;
  function db() {
    opened = opened || new Promise((ok, fail) => {
      const r = indexedDB.open(DB, 1);
      r.onupgradeneeded = () => r.result.createObjectStore(STORE, { keyPath: "n", autoIncrement: true });
      r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error);
    });
    return opened;
  }
  async function store(mode) { return (await db()).transaction(STORE, mode).objectStore(STORE); }

  // Plaintext: 4 bytes of JSON length, the item's JSON, then its files' bytes in order.
  async function pack(item, files) {
    const list = await Promise.all((files || []).map(async f => ({ name: f.name, type: f.type, bytes: new Uint8Array(await f.arrayBuffer()) })));
    const json = new TextEncoder().encode(JSON.stringify(Object.assign({}, item, {
      files: list.map(f => ({ name: f.name, type: f.type, size: f.bytes.length })) })));
    const out = new Uint8Array(4 + json.length + list.reduce((s, f) => s + f.bytes.length, 0));
    new DataView(out.buffer).setUint32(0, json.length); out.set(json, 4);
    let at = 4 + json.length;
    list.forEach(f => { out.set(f.bytes, at); at += f.bytes.length; });
    return out;
  }
  function unpack(plain) {
    const bytes = new Uint8Array(plain), length = new DataView(bytes.buffer).getUint32(0);
    const item = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length)));
    let at = 4 + length;
    const files = item.files.map(f => { const b = bytes.slice(at, at + f.size); at += f.size; return new File([b], f.name, { type: f.type }); });
    return { item, files };
  }

  class Outbox {
    constructor(keys) { this.keys = keys; this.durable = true; }  // [{id, key: CryptoKey}], the current one first
    static async open(given) {  // {"user_id", "keys"} as the server hands them over
      const keys = await Promise.all((given.keys || []).map(async k => ({
        id: k.id, key: await crypto.subtle.importKey("raw", fromB64(k.key), "AES-GCM", false, ["encrypt", "decrypt"]) })));
      const box = new Outbox(keys);
      box.userId = given.user_id;
      return box;
    }
    async seal(item, files, n) {
      const { id, key } = this.keys[0], iv = crypto.getRandomValues(new Uint8Array(12));
      const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: new TextEncoder().encode(id) }, key, await pack(item, files));
      return Object.assign(n === undefined ? {} : { n }, { kid: id, iv, ct });
    }
    // Sealed first: an IndexedDB transaction ends at the first await on anything else.
    async add(item, files) { const row = await this.seal(item, files); return request((await store("readwrite")).add(row)); }
    async replace(n, item, files) { const row = await this.seal(item, files, n); return request((await store("readwrite")).put(row)); }
    async remove(n) { return request((await store("readwrite")).delete(n)); }
    async open(row) {  // {n, item, files}, or null: someone else's, sealed before a rotation ended, or tampered
      const k = row && this.keys.find(x => x.id === row.kid);
      if (!k) return null;
      try {
        const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: row.iv, additionalData: new TextEncoder().encode(row.kid) }, k.key, row.ct);
        return Object.assign({ n: row.n }, unpack(plain));
      } catch (e) { return null; }
    }
    // This person's items on this device, oldest first: [{n, item, files}].
    async own() {
      const rows = await request((await store("readonly")).getAll()), out = [];
      for (const row of rows) { const e = await this.open(row); if (e) out.push(e); }
      return out;
    }
    async get(n) { return this.open(await request((await store("readonly")).get(n))); }
  }

  // Where IndexedDB or WebCrypto is missing (a page over plain HTTP), items wait in page
  // memory only, as before: nothing is kept, and the page asks before it is left.
  class MemoryOutbox {
    constructor() { this.items = new Map(); this.next = 1; }
    async add(item, files) { const n = this.next++; this.items.set(n, { item, files: files || [] }); return n; }
    async replace(n, item, files) { this.items.set(n, { item, files: files || [] }); }
    async remove(n) { this.items.delete(n); }
    async own() { return [...this.items].map(([n, v]) => ({ n, item: JSON.parse(JSON.stringify(v.item)), files: v.files })); }
    async get(n) { return (await this.own()).find(e => e.n === n) || null; }
  }

  // One request; null when the network failed. 503 and "still running" are waits too.
  async function call(method, url, csrf, headers, body) {
    try {
      const r = await fetch(url, { method, credentials: "same-origin", body,
        headers: Object.assign({ "X-CSRFToken": csrf, "Accept": "application/json" }, headers) });
      let data = null;
      if (r.status !== 204) { try { data = await r.json(); } catch (e) { data = null; } }
      return { status: r.status, data, retryAfter: Number(r.headers.get("Retry-After")) || 0 };
    } catch (e) { return null; }
  }
  // Not yet: offline, busy, still running — or signed out (the next sign-in sends it).
  const waits = res => res === null || res.status === 503 || res.status === 401 || (res.status === 409 && res.retryAfter > 0);
  const json = body => ({ headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

  /* Was a note whose first try is older than the server keeps its Idempotency-Key
     (24 h, docs/API.md) posted after all? Looked for by its text among the patient's
     notes (searched on the server), by its author. Found: its id; not: null. */
  const KEPT_MS = 23 * 3600 * 1000;
  async function postedBefore(box, item, csrf) {
    const j = json({ text: item.body.body.slice(0, 100), limit: 50 });
    const res = await call("POST", `/api/v1/patients/${item.patient}/notes/search`, csrf, j.headers, j.body);
    if (waits(res)) return undefined;
    if (res.status !== 200) return null;  // refused: the note will be refused too, and said so
    const found = res.data.items.find(n => n.author_id === box.userId && n.body === item.body.body);
    return found ? found.id : null;
  }

  /* Send one waiting item. Returns {state: "sent" | "wait" | "refused" | "conflict", res}.
     A refused note or an edit that met a conflict is marked so and not sent again: the
     patient's page shows it (the text back in the box; the merge). A posted note whose
     files are not all sent stays, marked with its id. */
  async function send(box, entry, csrf, hooks) {
    const { n, item, files } = entry, base = `/api/v1/patients/${item.patient}`;
    const mark = async (state, res) => {
      item.held = { state, status: res.status, data: res.data };
      await box.replace(n, item, files);
      return { state, res };
    };
    if (item.kind === "section") {
      const j = json({ content: item.content });
      const res = await call("PUT", `${base}/record/${item.section}`, csrf, Object.assign(j.headers, { "If-Match": `"${item.base.version}"` }), j.body);
      if (waits(res)) return { state: "wait", res };
      if (res.status === 200) { await box.remove(n); return { state: "sent", res }; }
      return mark(res.status === 412 ? "conflict" : "refused", res);
    }
    if (item.kind === "note") {
      if (!item.note_id && item.tried_at && Date.now() - item.tried_at > KEPT_MS) {
        const id = await postedBefore(box, item, csrf);
        if (id === undefined) return { state: "wait", res: null };
        if (id) item.note_id = id; else { item.key = crypto.randomUUID(); item.tried_at = 0; }  // never arrived: a new try
      }
      if (!item.note_id) {
        if (!item.tried_at) { item.tried_at = Date.now(); await box.replace(n, item, files); }
        const j = json(item.body);
        const res = await call("POST", `${base}/notes`, csrf, Object.assign(j.headers, { "Idempotency-Key": item.key }), j.body);
        if (waits(res)) return { state: "wait", res };
        if (res.status !== 201) return mark("refused", res);
        item.note_id = res.data.id; item.sent_files = 0;
        if (files.length) await box.replace(n, item, files);
        // The patient's page uploads the files itself (progress, retry) and removes the item.
        if (hooks && hooks.posted && hooks.posted(entry)) return { state: "sent", res, files: files.length > 0 };
      }
      for (let i = item.sent_files; i < files.length; i++) {
        const form = new FormData();
        form.append("file", files[i], files[i].name); form.append("note_id", item.note_id);
        if (item.series) form.append("series", item.series);
        const res = await call("POST", `${base}/attachments`, csrf, { "Idempotency-Key": `${item.key}-file-${i}` }, form);
        if (waits(res)) return { state: "wait", res };
        item.sent_files = i + 1;  // refused files are let go: the note is posted, the page shows what is missing
        if (i + 1 < files.length) await box.replace(n, item, files);
      }
      await box.remove(n);
      return { state: "sent" };
    }
    await box.remove(n);  // a kind this version does not know: never sent
    return { state: "refused" };
  }

  /* A page that is sending an item itself (an open section's edit, with its merge; a
     posted note's files) holds a Web Lock named for it; every sender takes an item's
     lock, if free, for as long as it sends it. The lock goes with the page, so an item
     is never stuck behind a closed tab. */
  const itemLock = n => `${LOCK}-item-${n}`;
  function hold(n) {
    if (!(self.navigator && navigator.locks)) return () => {};
    let release;
    const held = new Promise(done => { release = done; });
    navigator.locks.request(itemLock(n), () => held);
    return release;
  }
  function whileFree(n, fn) {
    if (!(self.navigator && navigator.locks)) return fn();
    return navigator.locks.request(itemLock(n), { ifAvailable: true }, lock => (lock ? fn() : { state: "held" }));
  }
  async function heldItems() {
    if (!(self.navigator && navigator.locks)) return new Set();
    return new Set((await navigator.locks.query()).held.map(l => l.name));
  }

  /* Send everything this person has waiting, oldest first, one sender at a time on the
     device (a page and the service worker may both try). `skip(entry)` leaves items a
     page is handling itself; items marked refused or in conflict wait for the patient's
     page. Returns the results. */
  async function flush(box, csrf, hooks) {
    const run = async () => {
      const results = [];
      for (const entry of await box.own()) {
        if (entry.item.held || (hooks && hooks.skip && hooks.skip(entry))) continue;
        const result = await whileFree(entry.n, async () => {
          const now = await box.get(entry.n);  // as it is now: sent or taken meanwhile, it is not sent again
          return now && !now.item.held ? send(box, now, csrf, hooks) : { state: "held" };
        });
        if (result.state === "held") continue;
        results.push(Object.assign({ entry }, result));
        if (result.state === "wait") break;  // offline or busy: the rest wait in order
      }
      return results;
    };
    return self.navigator && navigator.locks ? navigator.locks.request(LOCK, run) : run();
  }

  return { Outbox, MemoryOutbox, flush, hold, heldItems };
})();
