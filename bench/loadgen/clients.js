// Thousands of Socket.IO clients in one Node process, for bench/fanout.py: a Python
// client costs the shared cores far more per connection and per event.
//
//   node clients.js config.json
// config.json: {"clients": [{"url": "http://127.0.0.1:port", "token": "..."}, ...]}
// Prints {"ready": n, "failed": k} once every client has connected (or failed). Then,
// on each line "report" on stdin, prints {"arrivals": [[client, name, key, seq, wallMs], ...]}
// (arrivals since the last report), and on "stop" disconnects everyone and exits.
const fs = require("fs");
const readline = require("readline");
const { io } = require("socket.io-client");

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const NAMES = ["record.updated", "note.created", "team.updated", "note.acked"];
const now = () => performance.timeOrigin + performance.now(); // wall clock, sub-millisecond
let arrivals = [];
const sockets = [];

function connect(index, { url, token }) {
  return new Promise((resolve) => {
    const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false, timeout: 60000 });
    for (const name of NAMES) {
      socket.on(name, (p) => {
        const t = now();
        arrivals.push([index, name, String(p.version ?? p.note_id ?? p.user_id ?? ""), p.seq, t]);
      });
    }
    socket.on("connect", () => resolve(true));
    socket.on("connect_error", () => resolve(false));
    sockets.push(socket);
  });
}

async function main() {
  let ready = 0, failed = 0;
  const wave = 100; // connect in waves: a burst of thousands of handshakes is not the load we measure
  for (let i = 0; i < config.clients.length; i += wave) {
    const results = await Promise.all(config.clients.slice(i, i + wave).map((c, j) => connect(i + j, c)));
    for (const ok of results) ok ? ready++ : failed++;
  }
  process.stdout.write(JSON.stringify({ ready, failed }) + "\n");
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === "report") {
      process.stdout.write(JSON.stringify({ arrivals }) + "\n");
      arrivals = [];
    } else if (line.trim() === "stop") {
      for (const s of sockets) s.disconnect();
      process.exit(0);
    }
  }
}

main();
