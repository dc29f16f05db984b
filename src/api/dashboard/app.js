// The dashboard: live streams, sessions with a kick button, hook health, a player. Reads the
// server's own API (/api/v1) and /metrics once a second while the page is open.
"use strict";

const REFRESH_MS = 1000;
let server = null;
let player = null;
let lastHooks = null;

function token() {
  return sessionStorage.getItem("streamgate-token") || "";
}

async function api(path, method = "GET") {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(path, { method, headers });
  document.getElementById("token").style.display = response.status === 401 ? "block" : "none";
  if (response.status === 401) throw new Error("the API needs its token");
  return response;
}

function text(el, value) {
  if (el.textContent !== value) el.textContent = value;
}

function kbits(bits) {
  return bits >= 1e6 ? (bits / 1e6).toFixed(2) + " Mbit/s" : Math.round(bits / 1e3) + " kbit/s";
}

function bytes(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + " GB";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " MB";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " kB";
  return n + " B";
}

function age(sinceMs) {
  let s = Math.max(0, Math.floor((Date.now() - sinceMs) / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  const two = (v) => String(v).padStart(2, "0");
  return h ? `${h}h ${two(m)}m ${two(s)}s` : `${m}m ${two(s)}s`;
}

// Rows keyed by `key(item)`: new ones are made by `make`, every one is brought up to date by
// `fill`, and rows whose item is gone are removed (so a button under the pointer stays put).
function reconcile(tbody, items, key, make, fill, emptyText, columns) {
  const seen = new Set();
  for (const item of items) {
    const k = key(item);
    seen.add(k);
    let row = tbody.querySelector(`tr[data-key="${CSS.escape(k)}"]`);
    if (!row) {
      row = make(item);
      row.dataset.key = k;
      tbody.appendChild(row);
    }
    fill(row, item);
  }
  for (const row of [...tbody.querySelectorAll("tr[data-key]")]) {
    if (!seen.has(row.dataset.key)) row.remove();
  }
  let empty = tbody.querySelector("tr.empty");
  if (items.length === 0 && !empty) {
    empty = document.createElement("tr");
    empty.className = "empty";
    empty.innerHTML = `<td colspan="${columns}">${emptyText}</td>`;
    tbody.appendChild(empty);
  } else if (items.length > 0 && empty) {
    empty.remove();
  }
}

function playUrls(stream) {
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  const path = `${stream.app}/${stream.name}`;
  const urls = [];
  const l = server ? server.listeners : {};
  if (l.rtmp) urls.push(`rtmp://${host}:${l.rtmp}/${path}`);
  if (l.httpflv) urls.push(`http://${host}:${l.httpflv}/${path}.flv`);
  if (l.rtsp) urls.push(`rtsp://${host}:${l.rtsp}/${path}`);
  if (l.srt) urls.push(`srt://${host}:${l.srt}?streamid=#!::r=${path},m=request`);
  return urls;
}

function watch(stream) {
  if (!server || !server.listeners.httpflv) {
    alert("HTTP-FLV is not enabled: the page plays streams over HTTP-FLV.");
    return;
  }
  if (player) {
    player.destroy();
    player = null;
  }
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  const url = `http://${host}:${server.listeners.httpflv}/${stream.app}/${stream.name}.flv`;
  const video = document.getElementById("video");
  player = mpegts.createPlayer({ type: "flv", isLive: true, url });
  player.attachMediaElement(video);
  player.load();
  const started = player.play();
  if (started && started.catch) started.catch(() => {});
  document.getElementById("watching").textContent = `${stream.app}/${stream.name}`;
  document.getElementById("player").style.display = "block";
}

function renderStreams(streams) {
  const tbody = document.querySelector("#streams tbody");
  reconcile(
    tbody,
    streams,
    (s) => `${s.app}/${s.name}`,
    (s) => {
      const row = document.createElement("tr");
      row.dataset.stream = `${s.app}/${s.name}`;
      row.innerHTML =
        '<td class="name"></td><td class="video"></td><td class="audio"></td>' +
        '<td class="num bitrate"></td><td class="num uptime"></td><td class="players"></td>' +
        '<td><button class="watch">Watch</button></td>';
      row.querySelector("button.watch").addEventListener("click", () => watch(s));
      return row;
    },
    (row, s) => {
      const name = row.querySelector("td.name");
      if (!name.firstChild) {
        name.innerHTML = `<b></b><div class="urls"></div>`;
      }
      text(name.querySelector("b"), `${s.app}/${s.name}`);
      const urls = name.querySelector(".urls");
      const want = playUrls(s).join("\n");
      if (urls.dataset.urls !== want) {
        urls.dataset.urls = want;
        urls.innerHTML = "";
        for (const u of playUrls(s)) {
          const code = document.createElement("code");
          code.textContent = u;
          code.title = "Click to copy";
          code.addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(u));
          urls.appendChild(code);
        }
      }
      const v = s.video;
      text(
        row.querySelector("td.video"),
        v ? `${v.codec} ${v.width && v.height ? v.width + "x" + v.height : ""} ${v.frame_rate.toFixed(1)} fps`.replace(/\s+/g, " ") : "none",
      );
      const a = s.audio;
      text(
        row.querySelector("td.audio"),
        a ? `${a.codec} ${a.sample_rate ? a.sample_rate + " Hz" : ""} ${a.channels ? a.channels + " ch" : ""}`.replace(/\s+/g, " ").trim() : "none",
      );
      text(row.querySelector("td.bitrate"), kbits(s.bitrate));
      text(row.querySelector("td.uptime"), age(s.since));
      text(
        row.querySelector("td.players"),
        Object.entries(s.players)
          .map(([p, n]) => `${p} ${n}`)
          .join(" · "),
      );
    },
    "No live stream.",
    7,
  );
}

function renderSessions(sessions) {
  const tbody = document.querySelector("#sessions tbody");
  reconcile(
    tbody,
    sessions,
    (s) => String(s.clientid),
    (s) => {
      const row = document.createElement("tr");
      row.dataset.clientid = String(s.clientid);
      row.innerHTML =
        '<td class="num clientid"></td><td class="protocol"></td><td class="role"></td>' +
        '<td class="addr"></td><td class="stream"></td><td class="num since"></td>' +
        '<td class="num in"></td><td class="num out"></td><td class="num dropped"></td>' +
        '<td><button class="kick">Kick</button></td>';
      row.querySelector("button.kick").addEventListener("click", async () => {
        await api(`/api/v1/sessions/${s.clientid}`, "DELETE");
        refresh();
      });
      return row;
    },
    (row, s) => {
      text(row.querySelector("td.clientid"), String(s.clientid));
      text(row.querySelector("td.protocol"), s.protocol);
      text(row.querySelector("td.role"), s.role);
      text(row.querySelector("td.addr"), s.addr);
      text(row.querySelector("td.stream"), s.app ? `${s.app}/${s.name}` : "");
      text(row.querySelector("td.since"), age(s.since));
      text(row.querySelector("td.in"), bytes(s.bytes_in));
      text(row.querySelector("td.out"), bytes(s.bytes_out));
      text(row.querySelector("td.dropped"), String(s.frames_dropped));
    },
    "No session.",
    10,
  );
}

// The hook counters of a /metrics page: calls by result, and the latency histogram's buckets
// summed over every protocol, call and result.
function hookCounters(page) {
  const calls = { allow: 0, deny: 0, timeout: 0, error: 0 };
  const buckets = new Map();
  let count = 0;
  for (const line of page.split("\n")) {
    let m = line.match(/^streamgate_hook_calls_total\{([^}]*)\} (\S+)/);
    if (m) {
      const result = (m[1].match(/result="([^"]*)"/) || [])[1];
      if (result in calls) calls[result] += Number(m[2]);
      continue;
    }
    m = line.match(/^streamgate_hook_duration_seconds_bucket\{([^}]*)\} (\S+)/);
    if (m) {
      const le = (m[1].match(/le="([^"]*)"/) || [])[1];
      buckets.set(le, (buckets.get(le) || 0) + Number(m[2]));
      continue;
    }
    m = line.match(/^streamgate_hook_duration_seconds_count\{[^}]*\} (\S+)/);
    if (m) count += Number(m[1]);
  }
  return { calls, buckets, count, at: Date.now() };
}

function quantile(buckets, count, q) {
  if (!count) return null;
  const bounds = [...buckets.entries()]
    .map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n])
    .sort((a, b) => a[0] - b[0]);
  for (const [le, n] of bounds) if (n >= q * count) return le;
  return Infinity;
}

function ms(seconds) {
  if (seconds === null) return "–";
  if (seconds === Infinity) return "> 10 s";
  return `≤ ${Math.round(seconds * 1000)} ms`;
}

function renderHooks(page) {
  const now = hookCounters(page);
  const total = Object.values(now.calls).reduce((a, b) => a + b, 0);
  let rate = "–";
  if (lastHooks) {
    const before = Object.values(lastHooks.calls).reduce((a, b) => a + b, 0);
    const dt = (now.at - lastHooks.at) / 1000;
    if (dt > 0) rate = ((total - before) / dt).toFixed(1);
  }
  lastHooks = now;
  const denyRate = total ? ((100 * now.calls.deny) / total).toFixed(1) + " %" : "–";
  const cells = [
    ["Calls / s", rate],
    ["Calls", String(total)],
    ["p50 latency", ms(quantile(now.buckets, now.count, 0.5))],
    ["p99 latency", ms(quantile(now.buckets, now.count, 0.99))],
    ["Deny rate", denyRate],
    ["Errors", `${now.calls.timeout} timeouts, ${now.calls.error} unreachable`],
  ];
  const box = document.getElementById("hooks");
  if (!box.children.length) {
    for (const [label] of cells) {
      const div = document.createElement("div");
      div.innerHTML = `<span></span><b></b>`;
      div.querySelector("span").textContent = label;
      box.appendChild(div);
    }
  }
  cells.forEach(([, value], i) => text(box.children[i].querySelector("b"), value));
}

async function refresh() {
  try {
    if (!server) {
      server = await (await api("/api/v1/server")).json();
      text(document.getElementById("node"), `node ${server.node} · ${server.version}`);
    }
    const [streams, sessions, metrics] = await Promise.all([
      api("/api/v1/streams").then((r) => r.json()),
      api("/api/v1/sessions?limit=1000").then((r) => r.json()),
      fetch("/metrics").then((r) => r.text()),
    ]);
    renderStreams(streams.streams);
    renderSessions(sessions.sessions);
    renderHooks(metrics);
    text(document.getElementById("updated"), "updated " + new Date().toLocaleTimeString());
  } catch (e) {
    text(document.getElementById("updated"), String(e.message || e));
  }
}

document.getElementById("token-save").addEventListener("click", () => {
  sessionStorage.setItem("streamgate-token", document.getElementById("token-input").value);
  server = null;
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
