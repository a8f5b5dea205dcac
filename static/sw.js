/* Renkei's service worker (docs/ARCHITECTURE.md, "Push and e-mail" and "The offline outbox").
 * It caches nothing: every page holds patient data and must come from the server behind
 * sign-in. It turns a push into a notification and opens the page it names, and when the
 * connection returns (Background Sync) it sends what the signed-in person left waiting in
 * the outbox, even with the tab closed.
 * A push carries a kind and identifiers, never a name or clinical text, so the text
 * shown is fixed per kind. */
"use strict";
importScripts("/static/outbox.js");

const TEXTS = {
  "note.urgent": "至急の連絡があります",
  "note.escalated": "至急の連絡が未確認です。確認してください",
  "observation.alert": "担当利用者のバイタルが閾値を超えました",
  "breakglass.opened": "担当利用者に緊急時アクセスがありました",
  "note.mention": "あなた宛ての連絡があります",
  "patient.updated": "担当利用者の記録が更新されました",
};

const URGENT = new Set(["note.urgent", "observation.alert"]);

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function samePath(url) {
  // Only a page of this site is opened: a message can never send someone elsewhere.
  try {
    const target = new URL(url, self.location.origin);
    return target.origin === self.location.origin ? target.pathname + target.search : "/";
  } catch (e) { return "/"; }
}

self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  const text = TEXTS[data.kind] || "新しいお知らせがあります";
  event.waitUntil(self.registration.showNotification("Renkei", {
    body: text,
    icon: "/static/icons/renkei-192.png",
    tag: (data.kind || "renkei") + ":" + (data.patient_id || ""),
    renotify: URGENT.has(data.kind),
    requireInteraction: URGENT.has(data.kind),
    data: {url: samePath(data.url)},
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = event.notification.data && event.notification.data.url || "/";
  event.waitUntil(self.clients.matchAll({type: "window", includeUncontrolled: true}).then((windows) => {
    for (const w of windows) {
      if (new URL(w.url).pathname === url && "focus" in w) return w.focus();
    }
    return self.clients.openWindow(url);
  }));
});

// The outbox: the key comes from the server for whoever is signed in on this device now;
// nobody signed in (401) means nothing is sent until the next sign-in opens a page.
async function sendWaiting() {
  let got;
  try {
    got = await fetch("/api/v1/users/me/outbox-key", {credentials: "same-origin", headers: {"Accept": "application/json"}});
  } catch (e) { throw new Error("offline"); }  // the browser tries the sync again later
  if (!got.ok) return;
  const given = await got.json();
  const box = await self.RenkeiOutbox.Outbox.open(given);
  const csrf = given.csrf_token;
  const results = await self.RenkeiOutbox.flush(box, csrf);
  if (results.some((r) => r.state === "wait")) throw new Error("not yet");
  // Open pages say so: 投稿しました beside the note box, the note in the timeline.
  const posted = results.filter((r) => r.state === "sent" && r.entry.item.kind === "note")
    .map((r) => ({patient: r.entry.item.patient, note_id: r.res && r.res.data ? r.res.data.id : null}));
  const windows = await self.clients.matchAll({type: "window"});
  windows.forEach((w) => w.postMessage({outbox: "sent", posted}));
}

self.addEventListener("sync", (event) => {
  if (event.tag === "renkei-outbox") event.waitUntil(sendWaiting());
});
