#!/usr/bin/env node
// SyncTV WebSocket load client (bench/ws/run drives it; see bench/ws/README.md).
//
// One lean Node.js process opens every socket (the `ws` package), so sender and receivers share
// one monotonic clock (performance.now()). Scenarios:
//   fanout  N members of one room over the given nodes (round robin); the room creator sends
//           `playback` changes every --interval ms; every member records the arrival of each
//           event (matched by `version`). "last" = send -> arrival at the LAST member.
//   chat    R rooms of S members over the nodes; steps of offered chat load (members sending at
//           the per-user limit of 1/s); delivered frames/s, latency, CPU of each node.
//   idle    N sockets on ONE node over the mem rooms; RSS of the node before / after.
// Output: one JSON document on stdout (and --out FILE).
//
// --receiver ws | raw   how frames are read after each socket's `hello` (default ws).
//   ws   ws's own Receiver and 'message' event (the figures comparable with earlier runs and with
//        the earlier designs' figures, which were measured with a ws-style client).
//   raw  ws still opens the socket (handshake, subprotocols, origin) and reads the `hello`; then
//        the socket's bytes go to a minimal RFC 6455 frame parser (attachRaw below), which costs
//        the client far less CPU per frame: the floor the single client puts under "last" is
//        lower. Sending and closing stay with ws. bench/ws/run passes it to the fanout scenario
//        only (FANOUT_RECEIVER); it works the same for chat/idle/storm sockets, but their
//        figures were never taken with it. Recorded as client.receiver in the output.

'use strict';

const fs = require('fs');
const { performance } = require('perf_hooks');
const WebSocket = require('ws');

// --- arguments --------------------------------------------------------------------------------
function parseArgs(argv) {
  const a = {
    scenario: '', layout: '', ports: '8101,8102', pids: '', host: '127.0.0.1', out: '',
    n: 100, events: 60, interval: 250, deflate: false, concurrency: 32,
    rates: '250,500,1000', phase: 10, perRoom: 10, rooms: 0, roomSize: 0, settle: 6, label: '',
    extra: 0, maxConnectMs: 2000, receiver: 'ws',
    protocol: 'v2', fetch: 'all', inflight: 0, nodeTree: '', nodeTreeCommit: '', nodeTreeDiff: '', maxWait: 90,
  };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (k === 'deflate') { a.deflate = true; continue; }
    const key = k.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const v = argv[++i];
    a[key] = typeof a[key] === 'number' ? Number(v) : v;
  }
  a.ports = String(a.ports).split(',').filter(Boolean).map(Number);
  a.pids = String(a.pids).split(',').filter(Boolean).map(Number);
  if (a.inflight > 0) a.concurrency = a.inflight; // --inflight: handshakes in flight (alias)
  return a;
}
const args = parseArgs(process.argv);
if (!['ws', 'raw'].includes(args.receiver)) throw new Error(`--receiver ${args.receiver}: ws | raw`);
const RAW = args.receiver === 'raw';
if (!['v1', 'v2'].includes(args.protocol)) throw new Error(`--protocol ${args.protocol}: v1 | v2`);
// fill, v2: --fetch all (default) asks for every page of the member list after the hello, as the
// web page does; --fetch none asks for nothing (a client that shows the count and the first page),
// so the node CPU per connect is the connect and the presence batches alone.
if (!['all', 'none'].includes(args.fetch)) throw new Error(`--fetch ${args.fetch}: all | none`);
// --protocol v2 (default) offers synctv.v2 first and synctv.v1 as fallback (a v1-only server picks
// synctv.v1); v1 offers synctv.v1 only (every run before the option). What the server accepted is
// recorded per socket (ws.protocol) and summarised as `ws.protocol` in the output.
function offeredProtocols(token) {
  return args.protocol === 'v1' ? ['synctv.v1', `bearer.${token}`] : ['synctv.v2', 'synctv.v1', `bearer.${token}`];
}
const acceptedProtocols = {}; // accepted subprotocol -> sockets (every hello, reconnects included)
function noteProtocol(ws) { const p = ws.protocol || '(none)'; acceptedProtocols[p] = (acceptedProtocols[p] || 0) + 1; return p; }
const layout = JSON.parse(fs.readFileSync(args.layout, 'utf8'));
const ORIGIN = 'http://localhost:8000';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...m) => process.stderr.write(`[load ${args.scenario}${args.label ? ' ' + args.label : ''}] ${m.join(' ')}\n`);

// --- /proc readings ----------------------------------------------------------------------------
const CLK_TCK = 100; // getconf CLK_TCK on Linux x86_64
function cpuSeconds(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
}
function statusKiB(pid, key) {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : null;
}
function machineTicks() { // [busy, total] jiffies of the whole machine, from /proc/stat
  const f = fs.readFileSync('/proc/stat', 'utf8');
  const v = f.slice(0, f.indexOf('\n')).split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] || 0);
  const total = v.reduce((a, b) => a + b, 0);
  return [total - idle, total];
}
const lastCpu = new Map(); // pid -> last reading: a node that exited (move: node B) keeps its last value
function cpuSecondsKept(pid) {
  try { const v = cpuSeconds(pid); lastCpu.set(pid, v); return v; } catch (err) {
    if (lastCpu.has(pid)) return lastCpu.get(pid);
    throw err;
  }
}
function cpuSnap() {
  return { t: performance.now(), nodes: args.pids.map(cpuSecondsKept), client: process.cpuUsage(), machine: machineTicks() };
}
function cpuDelta(a, b) {
  const wall = (b.t - a.t) / 1000;
  const nodes = b.nodes.map((x, i) => x - a.nodes[i]);
  const client = ((b.client.user - a.client.user) + (b.client.system - a.client.system)) / 1e6;
  // Whole machine (all cores) busy time; minus nodes and client = PostgreSQL + Redis + anything
  // else running on the machine (other workloads distort every figure: see README).
  const machine = (b.machine[0] - a.machine[0]) / CLK_TCK;
  const rest = machine - client - nodes.reduce((x, y) => x + y, 0);
  return {
    wall_s: round(wall, 3),
    node_cpu_s: nodes.map((x) => round(x, 2)),
    node_cpu_pct: nodes.map((x) => round((100 * x) / wall, 1)),
    client_cpu_s: round(client, 2),
    client_cpu_pct: round((100 * client) / wall, 1),
    machine_busy_pct: round((100 * machine) / wall, 1), // of 100 * cores
    other_cpu_pct: round((100 * Math.max(0, rest)) / wall, 1), // PostgreSQL, Redis, the rest of the machine
  };
}
async function waitIdle(maxMs = 60000, quietMs = 1000) {
  // Until no frame arrived for quietMs and every node used < 5% CPU over the last 500 ms.
  const start = performance.now();
  while (performance.now() - start < maxMs) {
    const a = cpuSnap();
    await sleep(500);
    const b = cpuSnap();
    const busy = b.nodes.some((x, i) => x - a.nodes[i] > 0.025);
    if (!busy && performance.now() - lastFrameAt > quietMs) return round(performance.now() - start, 0);
  }
  return -1;
}

// --- statistics ---------------------------------------------------------------------------------
function round(x, d = 2) { const p = 10 ** d; return Math.round(x * p) / p; }
function pct(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}
function summary(values) {
  const s = Float64Array.from(values).sort();
  if (!s.length) return { n: 0 };
  let sum = 0; for (const v of s) sum += v;
  return {
    n: s.length, p50: round(pct(s, 50)), p90: round(pct(s, 90)), p99: round(pct(s, 99)),
    max: round(s[s.length - 1]), mean: round(sum / s.length),
  };
}

// --- sockets -------------------------------------------------------------------------------------
let lastFrameAt = performance.now();
const PREFIX = (t) => Buffer.from(`{"type":"${t}"`);
const P_PLAYBACK = PREFIX('playback');
const P_CHAT = PREFIX('chat');
const P_HELLO = PREFIX('hello');
const P_ERROR = PREFIX('error');
const counters = { frames: 0, errors: 0, rate_limited: 0, closed_early: 0 };
// --receiver raw: sockets whose reading the raw parser took over, chunks that still went through ws's
// Receiver after the hello (it was inside a frame), pings answered, protocol errors (socket closed).
if (RAW) Object.assign(counters, { raw_sockets: 0, raw_not_attached: 0, raw_chunks_via_ws: 0, raw_pings_answered: 0, raw_protocol_errors: 0 });

function startsWith(buf, prefix) {
  return buf.length >= prefix.length && buf.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}
function intAfter(buf, key) { // integer value after "key": in a JSON buffer (no full parse)
  const i = buf.indexOf(key);
  if (i < 0) return -1;
  let j = i + key.length, v = 0;
  for (; j < buf.length; j++) { const c = buf[j]; if (c < 48 || c > 57) break; v = v * 10 + (c - 48); }
  return v;
}

// --- the raw receive path (--receiver raw) ----------------------------------------------------------
// The client pays its per-frame CPU N times, one frame after the other, for every fan-out event:
// Node's own socket read (epoll, a read() per socket, a fresh buffer, the net.Socket stream's
// 'data' event) and, on top, ws's Receiver (a Writable stream: write(), a parse loop, a 'message'
// event on the Receiver and again on the WebSocket). With --receiver raw a socket keeps ws for
// the handshake and the `hello`; after that its net.Socket's 'data' events go to the minimal
// RFC 6455 parser below (server -> client frames only: never masked) instead of ws's Receiver:
// ws's share goes, Node's socket read stays. Sending stays with ws (its Sender only writes to the
// socket), closing too (ws.terminate() destroys the socket; ws's 'close'/'end'/'error' listeners
// on the socket stay in place).
const crypto = require('crypto');
const RCV_GET_INFO = 0; // ws/lib/receiver.js: the state between two frames

function receiverIdle(ws) {
  // ws's Receiver holds no byte of an unfinished frame, no fragment of an unfinished message, no
  // queued write and no deferred event: the next byte on the socket starts a new frame.
  const r = ws._receiver;
  return (
    !!r && r._state === RCV_GET_INFO && r._bufferedBytes === 0 && r._fragmented === 0 &&
    r._writableState.length === 0 && !r._loop && !r._errored && !ws._closeFrameReceived &&
    ws.readyState === WebSocket.OPEN
  );
}

function maskedFrame(opcode, payload) { // client -> server control frame (<= 125 bytes, masked)
  const len = Math.min(payload.length, 125);
  const out = Buffer.allocUnsafe(6 + len);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | len;
  crypto.randomFillSync(out, 2, 4);
  for (let i = 0; i < len; i++) out[6 + i] = payload[i] ^ out[2 + (i & 3)];
  return out;
}

// Take over the reading of `ws` (called from its `hello`, i.e. from inside ws's Receiver loop).
// ws's 'data' listener is replaced at once by a gate: until ws's Receiver is idle at a chunk
// boundary (normally the very next chunk; not if the hello's chunk ended inside a frame), chunks
// still go to the Receiver exactly as ws would pass them, and their frames still arrive through
// 'message'; from the first idle boundary on, every chunk goes to the raw parser.
// onText(payload, now) gets each text/binary message; onClose(code) a close frame or a protocol error
// (code -1), after which the socket is ended (close frame echoed) or destroyed.
function attachRaw(ws, onText, onClose) {
  const sock = ws._socket;
  if (!sock || ws._extensions['permessage-deflate']) return false; // compressed frames: stay with ws
  const wsData = sock.listeners('data');
  if (wsData.length !== 1 || wsData[0].name !== 'socketOnData') return false; // not the layout we know
  const socketOnData = wsData[0];
  let raw = false;
  let closed = false;
  let pending = null; // chunks of an unfinished frame (raw mode), and their total length
  let pendingLen = 0;
  let need = 0; // bytes the unfinished frame needs in all (0: header not complete yet)
  let fragOpcode = -1; // opcode of a fragmented message in progress, and its fragments
  let frags = null;

  function protocolError(what) {
    counters.raw_protocol_errors++;
    if (counters.raw_protocol_errors <= 3) log(`raw receiver: ${what}; closing the socket`);
    closed = true;
    onClose(-1);
    sock.destroy();
  }

  function parse(buf, now) {
    let off = 0;
    const end = buf.length;
    while (end - off >= 2) {
      const b0 = buf[off], b1 = buf[off + 1];
      let len = b1 & 0x7f, hdr = 2;
      if (len === 126) {
        if (end - off < 4) break;
        len = buf.readUInt16BE(off + 2); hdr = 4;
      } else if (len === 127) {
        if (end - off < 10) break;
        len = buf.readUInt32BE(off + 2) * 4294967296 + buf.readUInt32BE(off + 6); hdr = 10;
      }
      if (b1 & 0x80) { protocolError('masked frame from the server'); return; }
      if (b0 & 0x70) { protocolError('RSV bit set (no extension negotiated)'); return; }
      if (end - off < hdr + len) { need = hdr + len; break; }
      const payload = buf.subarray(off + hdr, off + hdr + len);
      off += hdr + len;
      const fin = (b0 & 0x80) !== 0, opcode = b0 & 0x0f;
      if (opcode === 0x1 || opcode === 0x2) { // text (binary: same treatment as ws's 'message')
        if (fragOpcode !== -1) { protocolError('new message inside a fragmented one'); return; }
        if (fin) onText(payload, now);
        else { fragOpcode = opcode; frags = [payload]; }
      } else if (opcode === 0x0) { // continuation
        if (fragOpcode === -1) { protocolError('continuation without a message'); return; }
        frags.push(payload);
        if (fin) { const m = Buffer.concat(frags); fragOpcode = -1; frags = null; onText(m, now); }
      } else if (opcode === 0x9) { // ping -> masked pong, same payload
        if (!fin || len > 125) { protocolError('bad ping frame'); return; }
        counters.raw_pings_answered++;
        sock.write(maskedFrame(0xa, payload));
      } else if (opcode === 0xa) { // pong: nothing to do
      } else if (opcode === 0x8) { // close: echo the code, end our side
        const code = len >= 2 ? payload.readUInt16BE(0) : 1005;
        closed = true;
        onClose(code);
        if (!sock.destroyed) sock.end(maskedFrame(0x8, len >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0)));
        return;
      } else { protocolError(`unknown opcode ${opcode}`); return; }
      if (closed) return;
    }
    if (off < end) {
      pending = [off === 0 ? buf : buf.subarray(off)];
      pendingLen = end - off;
    } else {
      pending = null; pendingLen = 0; need = 0;
    }
  }

  function rawData(chunk) {
    if (closed) return;
    const now = performance.now(); // once per 'data' event: every frame of this chunk "arrived" now
    lastFrameAt = now;
    if (pending !== null) {
      pending.push(chunk);
      pendingLen += chunk.length;
      if (need > 0 && pendingLen < need) return; // the unfinished frame is still incomplete
      const buf = Buffer.concat(pending, pendingLen);
      pending = null; pendingLen = 0; need = 0;
      parse(buf, now);
    } else {
      need = 0;
      parse(chunk, now);
    }
  }

  function gate(chunk) {
    if (!raw) {
      if (!receiverIdle(ws)) { // ws's Receiver is inside a frame: give it this chunk, as ws would
        if (!ws._receiver.write(chunk)) sock.pause(); // resumed by ws on the Receiver's 'drain'
        counters.raw_chunks_via_ws++;
        return;
      }
      raw = true;
      counters.raw_sockets++;
    }
    rawData(chunk);
  }

  // Removing a listener during a 'data' emit does not affect that emit (the listener array is
  // copied), so the chunk being parsed now finishes in ws's Receiver.
  sock.removeListener('data', socketOnData);
  sock.on('data', gate);
  return true;
}

// Open one socket; resolves with {ws, hello} on `hello`, rejects on anything else.
function openSocket(port, roomId, token, onFrame) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const ws = new WebSocket(`ws://${args.host}:${port}/ws/rooms/${roomId}/`, offeredProtocols(token), {
      origin: ORIGIN, perMessageDeflate: args.deflate, skipUTF8Validation: true, handshakeTimeout: 30000,
    });
    let hello = false;
    // Every frame after the hello, from ws's 'message' or from the raw parser.
    const handle = (buf, now) => {
      lastFrameAt = now;
      counters.frames++;
      if (startsWith(buf, P_ERROR)) {
        counters.errors++;
        if (buf.indexOf('"rate_limited"') >= 0) counters.rate_limited++;
      }
      if (onFrame) onFrame(buf, now);
    };
    const closedEarly = () => {
      if (ws._benchClosing || ws._benchCountedClosed) return;
      ws._benchCountedClosed = true;
      counters.closed_early++;
    };
    ws.on('message', (buf) => {
      const now = performance.now();
      if (!hello) {
        if (startsWith(buf, P_HELLO)) {
          lastFrameAt = now;
          counters.frames++;
          hello = true;
          noteProtocol(ws);
          const msg = JSON.parse(buf.toString());
          // --receiver raw: the frames after this one leave ws's Receiver (see attachRaw).
          if (RAW && !attachRaw(ws, handle, closedEarly)) counters.raw_not_attached++;
          // Keep only what the scenarios read: a 1,000-member room's hello is ~80 KiB of JSON (every
          // online member); 1,000 parsed copies kept for the whole run only grow the client's heap.
          const kept = { playback: { version: msg.playback && msg.playback.version } };
          resolve({ ws, port, hello: kept, connect_ms: now - t0, hello_bytes: buf.length });
          return;
        }
        if (startsWith(buf, P_ERROR)) {
          lastFrameAt = now;
          counters.frames++;
          reject(new Error(`refused: ${buf.toString().slice(0, 200)}`));
          return;
        }
      }
      handle(buf, now);
    });
    ws.on('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.on('error', (err) => { if (!hello) reject(err); });
    ws.on('close', (code) => {
      if (!hello) reject(new Error(`closed ${code} before hello`));
      else closedEarly();
    });
  });
}

// Open many sockets with at most `concurrency` handshakes in flight.
async function openMany(specs) {
  const results = new Array(specs.length);
  const errors = [];
  let next = 0;
  const t0 = performance.now();
  async function worker() {
    while (next < specs.length) {
      const i = next++;
      const s = specs[i];
      try {
        results[i] = await openSocket(s.port, s.room, s.token, s.onFrame);
      } catch (err) {
        errors.push(`${i}: ${err.message}`);
      }
      if ((i + 1) % 1000 === 0) log(`${i + 1}/${specs.length} opened`);
    }
  }
  await Promise.all(Array.from({ length: args.concurrency }, worker));
  const wall = performance.now() - t0;
  const ok = results.filter(Boolean);
  return {
    sockets: results,
    stats: {
      requested: specs.length, opened: ok.length, errors: errors.length, first_errors: errors.slice(0, 5),
      wall_s: round(wall / 1000, 2), per_s: round(ok.length / (wall / 1000), 1),
      connect_ms: summary(ok.map((r) => r.connect_ms)),
      hello_bytes_max: ok.reduce((m, r) => Math.max(m, r.hello_bytes), 0),
    },
  };
}
function closeAll(sockets) {
  for (const s of sockets) if (s) { s.ws._benchClosing = true; s.ws.terminate(); }
}

// --- scenario: fan-out of playback ------------------------------------------------------------------
async function fanout() {
  const room = layout.fanout;
  const n = Math.min(args.n, room.members.length);
  const E = args.events;
  const arrivals = Array.from({ length: n }, () => new Float64Array(E).fill(NaN));
  const sendAt = new Float64Array(E).fill(NaN);
  let v0 = null; // playback version before the first event (from the sender's hello)
  const dupes = { n: 0 };
  const specs = [];
  for (let i = 0; i < n; i++) {
    const u = layout.users[room.members[i]];
    const port = args.ports[i % args.ports.length];
    specs.push({
      port, room: room.id, token: u.token,
      onFrame: (buf, now) => {
        if (v0 === null || !startsWith(buf, P_PLAYBACK)) return;
        const k = intAfter(buf, '"version":') - v0 - 1;
        if (k >= 0 && k < E) { if (!isNaN(arrivals[i][k])) dupes.n++; else arrivals[i][k] = now; }
      },
    });
  }
  // The sender (room creator) first, alone: its hello gives the current version.
  const { sockets, stats: connect } = await openMany(specs);
  if (!sockets[0]) throw new Error('sender did not connect');
  const sender = sockets[0];
  const quiet_ms = await waitIdle();
  v0 = sender.hello.playback.version;
  log(`${connect.opened}/${n} connected in ${connect.wall_s}s; idle after ${quiet_ms} ms; sending ${E} events`);

  const before = cpuSnap();
  const t0 = performance.now() + 50;
  for (let k = 0; k < E; k++) {
    const due = t0 + k * args.interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    sendAt[k] = performance.now();
    sender.ws.send(JSON.stringify({ type: 'playback', playing: k % 2 === 0, position: 10 + k * 1.5 }));
  }
  // Until every member has every event (or 5 s after the last one).
  const deadline = performance.now() + 5000;
  const complete = () => arrivals.every((a, i) => !sockets[i] || !a.some(isNaN));
  while (performance.now() < deadline && !complete()) await sleep(20);
  const after = cpuSnap();

  const last = [], first = [], spread = [], all = [];
  const lastByNode = args.ports.map(() => []);
  let missing = 0;
  for (let k = 0; k < E; k++) {
    let mx = -Infinity, mn = Infinity;
    const mxNode = args.ports.map(() => -Infinity);
    for (let i = 0; i < n; i++) {
      if (!sockets[i]) continue;
      const t = arrivals[i][k];
      if (isNaN(t)) { missing++; continue; }
      const d = t - sendAt[k];
      all.push(d);
      if (d > mx) mx = d;
      if (d < mn) mn = d;
      const ni = i % args.ports.length;
      if (d > mxNode[ni]) mxNode[ni] = d;
    }
    last.push(mx); first.push(mn); spread.push(mx - mn);
    mxNode.forEach((v, ni) => lastByNode[ni].push(v));
  }
  const deliveries = all.length;
  const cpu = cpuDelta(before, after);
  const nodeCpu = cpu.node_cpu_s.reduce((a, b) => a + b, 0);
  closeAll(sockets);
  const drain_ms = await waitIdle(60000, 300);
  return {
    scenario: 'fanout', members: n, nodes: args.ports.length, events: E, interval_ms: args.interval,
    deflate: args.deflate, connect, quiet_before_ms: quiet_ms,
    last_ms: summary(last), first_ms: summary(first), spread_ms: summary(spread),
    last_ms_by_node: lastByNode.map(summary), delivery_ms: summary(all),
    deliveries, expected: E * connect.opened, missing, duplicates: dupes.n,
    cpu, node_cpu_us_per_delivery: round((nodeCpu * 1e6) / Math.max(1, deliveries), 1),
    client_cpu_us_per_delivery: round((cpu.client_cpu_s * 1e6) / Math.max(1, deliveries), 1),
    counters: { ...counters }, drain_after_close_ms: drain_ms,
    per_event_last_ms: last.map((x) => round(x, 2)),
  };
}

// --- scenario: chat throughput ---------------------------------------------------------------------
async function chat() {
  const rooms = layout.chat.slice(0, args.rooms || layout.chat.length);
  const size = args.roomSize || rooms[0].members.length;
  const rates = String(args.rates).split(',').map(Number);
  // seq -> [sendAt, firstArrival, lastArrival, deliveries]
  const MAXSEQ = rates.reduce((a, r) => a + r * (args.phase + 6), 0) + 1000;
  const sendAt = new Float64Array(MAXSEQ).fill(NaN);
  const lastAt = new Float64Array(MAXSEQ).fill(NaN);
  const got = new Uint16Array(MAXSEQ);
  let lat = [];
  const onFrame = (buf, now) => {
    if (!startsWith(buf, P_CHAT)) return;
    const i = buf.indexOf('"text":"m');
    if (i < 0) return;
    const seq = intAfter(buf, '"text":"m');
    if (seq <= 0 || seq >= MAXSEQ || isNaN(sendAt[seq])) return;
    got[seq]++;
    if (!(lastAt[seq] >= now)) lastAt[seq] = now;
    lat.push(now - sendAt[seq]);
  };
  const specs = [];
  const members = []; // [roomIndex][memberIndex] -> spec index
  rooms.forEach((room, r) => {
    members.push([]);
    for (let j = 0; j < Math.min(size, room.members.length); j++) {
      members[r].push(specs.length);
      specs.push({ port: args.ports[j % args.ports.length], room: room.id, token: layout.users[room.members[j]].token, onFrame, r });
    }
  });
  const { sockets, stats: connect } = await openMany(specs);
  const quiet_ms = await waitIdle();
  log(`${connect.opened}/${specs.length} connected in ${connect.wall_s}s; idle after ${quiet_ms} ms`);
  // Sender order: member 0 of every room, then member 1 of every room, ... (spread over rooms/nodes).
  const order = [];
  for (let j = 0; j < size; j++) for (let r = 0; r < rooms.length; r++) if (members[r][j] !== undefined) order.push(members[r][j]);

  let seq = 1;
  const phases = [];
  for (const rate of rates) {
    const senders = order.slice(0, Math.min(rate, order.length)).filter((i) => sockets[i]);
    const perSender = rate / senders.length; // msgs per second per sender (<= 1 stays within the limit)
    const total = Math.round(rate * args.phase);
    const firstSeq = seq;
    counters.rate_limited = 0;
    lat = [];
    const before = cpuSnap();
    const t0 = performance.now() + 20;
    for (let m = 0; m < total; m++) {
      const due = t0 + (m * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      const s = sockets[senders[m % senders.length]];
      sendAt[seq] = performance.now();
      s.ws.send(`{"type":"chat","text":"m${seq}"}`);
      seq++;
    }
    const sentWall = (performance.now() - t0) / 1000;
    const before2 = cpuSnap();
    // Drain: until every accepted message reached its room, or 5 s.
    const deadline = performance.now() + 5000;
    let lastDelivery = 0;
    while (performance.now() < deadline) {
      await sleep(50);
      if (performance.now() - lastFrameAt > 500) break;
    }
    const after = cpuSnap();
    let accepted = 0, deliveries = 0, complete = 0;
    const lastLat = [];
    for (let q = firstSeq; q < seq; q++) {
      if (got[q] > 0) {
        accepted++; deliveries += got[q];
        if (got[q] >= size) complete++;
        lastLat.push(lastAt[q] - sendAt[q]);
        if (lastAt[q] > lastDelivery) lastDelivery = lastAt[q];
      }
    }
    const span = (lastDelivery - t0) / 1000;
    const cpu = cpuDelta(before, before2); // while sending (steady state)
    const nodeCpu = cpu.node_cpu_s.reduce((a, b) => a + b, 0);
    phases.push({
      offered_msgs_per_s: rate, senders: senders.length, per_sender_per_s: round(perSender, 2),
      sent: seq - firstSeq, accepted, rate_limited: counters.rate_limited, complete_to_all_members: complete,
      send_wall_s: round(sentWall, 2), span_to_last_delivery_s: round(span, 2),
      accepted_msgs_per_s: round(accepted / span, 1), delivered_frames_per_s: round(deliveries / span, 1),
      deliveries, msg_last_ms: summary(lastLat), delivery_ms: summary(lat),
      cpu, node_cpu_us_per_accepted_msg: round((nodeCpu * 1e6) / Math.max(1, accepted), 1),
      node_cpu_us_per_delivery: round((nodeCpu * 1e6) / Math.max(1, deliveries), 1),
      cpu_incl_drain: cpuDelta(before, after),
    });
    log(`rate ${rate}/s: accepted ${accepted}/${seq - firstSeq}, ${round(deliveries / span, 0)} frames/s, last p50 ${phases.at(-1).msg_last_ms.p50} p99 ${phases.at(-1).msg_last_ms.p99} ms, node cpu ${cpu.node_cpu_pct}`);
    await waitIdle(20000, 500);
  }
  closeAll(sockets);
  const drain_ms = await waitIdle(60000, 300);
  return {
    scenario: 'chat', rooms: rooms.length, room_size: size, nodes: args.ports.length, deflate: args.deflate,
    phase_s: args.phase, connect, quiet_before_ms: quiet_ms, phases, counters: { ...counters }, drain_after_close_ms: drain_ms,
  };
}

// --- scenario: many rooms changing playback at once (the write path's shared locks) -----------------
async function storm() {
  // The creator of each chat room (it holds PLAY_CONTROL) sends `playback` changes at
  // --per-room changes/s (<= 20/s: the per-socket frame limit), all rooms at once, for --phase s.
  // Counted at the sender: each change comes back to it through the hub.
  const rooms = layout.chat.slice(0, args.rooms || layout.chat.length);
  const perRoom = Number(args.perRoom || 10);
  const sent = new Map(); // "room:k" -> send time
  const lat = [];
  let got = 0;
  const specs = rooms.map((room, r) => ({
    port: args.ports[r % args.ports.length], room: room.id, token: layout.users[room.members[0]].token,
    onFrame: (buf, now) => {
      if (!startsWith(buf, P_PLAYBACK)) return;
      const pos = buf.indexOf('"position":');
      const k = Math.round((parseFloat(buf.slice(pos + 11, pos + 30).toString()) - 1000) * 10);
      const t = sent.get(`${r}:${k}`);
      if (t !== undefined) { got++; lat.push(now - t); }
    },
  }));
  const { sockets, stats: connect } = await openMany(specs);
  await waitIdle();
  const total = Math.round(perRoom * args.phase);
  const before = cpuSnap();
  const t0 = performance.now() + 20;
  for (let k = 0; k < total; k++) {
    const due = t0 + (k * 1000) / perRoom;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    sockets.forEach((s, r) => {
      if (!s) return;
      sent.set(`${r}:${k}`, performance.now());
      // position encodes k (0.1 s steps from 1000 s), so the echo can be matched
      s.ws.send(`{"type":"playback","playing":${k % 2 === 0},"position":${1000 + k / 10}}`);
    });
  }
  const deadline = performance.now() + 5000;
  while (performance.now() < deadline && performance.now() - lastFrameAt < 500) await sleep(50);
  const after = cpuSnap();
  const span = (performance.now() - t0) / 1000;
  closeAll(sockets);
  return {
    scenario: 'storm', rooms: rooms.length, per_room_per_s: perRoom, offered_per_s: perRoom * rooms.length,
    sent: sent.size, applied: got, applied_per_s: round(got / span, 1), errors: counters.errors,
    rate_limited: counters.rate_limited, change_to_own_echo_ms: summary(lat), cpu: cpuDelta(before, after), connect,
  };
}

// --- scenario: idle sockets on one node (memory) ------------------------------------------------------
async function idle() {
  const pid = args.pids[0];
  const port = args.ports[0];
  const rooms = layout.mem;
  const n = args.n;
  const rss0 = statusKiB(pid, 'VmRSS');
  // Warm-up: one socket per room opened and closed, so lazy imports, the DB connection and the
  // per-room Redis subscription machinery exist before the baseline is taken.
  const warm = await openMany(rooms.slice(0, 5).map((room) => ({ port, room: room.id, token: layout.users[room.members[0]].token })));
  closeAll(warm.sockets);
  await sleep(500);
  await waitIdle(20000, 500);
  const rssBefore = statusKiB(pid, 'VmRSS');
  const specs = [];
  for (let k = 0; k < n; k++) {
    const room = rooms[k % rooms.length];
    const j = Math.floor(k / rooms.length) % room.members.length; // beyond 5,000: a user's 2nd socket
    specs.push({ port, room: room.id, token: layout.users[room.members[j]].token });
  }
  const before = cpuSnap();
  const { sockets, stats: connect } = await openMany(specs);
  const opened = cpuSnap();
  const quiet_ms = await waitIdle(90000);
  log(`${connect.opened}/${n} open on one node in ${connect.wall_s}s (${connect.errors} errors); idle after ${quiet_ms} ms`);
  await sleep(args.settle * 1000); // at least one presence heartbeat (5 s)
  const idleA = cpuSnap();
  await sleep(10000);
  const idleB = cpuSnap();
  const rssAfter = statusKiB(pid, 'VmRSS');
  // Then some traffic through every socket, as any socket in a real room gets: in each room one
  // member sends 5 chat messages of 1,500 characters of varied text (~8 KB to every member).
  // Memory touched only when a socket first carries data (compressor windows, buffers) shows up
  // here, not in the figure above.
  const roomSocket = new Map();
  sockets.forEach((sk, k) => { if (sk && !roomSocket.has(k % rooms.length)) roomSocket.set(k % rooms.length, sk); });
  const word = () => Math.random().toString(36).slice(2, 2 + 3 + Math.floor(Math.random() * 6));
  for (let m = 0; m < 5; m++) {
    for (const sk of roomSocket.values()) {
      let text = '';
      while (text.length < 1500) text += word() + ' ';
      sk.ws.send(JSON.stringify({ type: 'chat', text: text.slice(0, 1500) }));
    }
    await sleep(100);
  }
  await waitIdle(60000, 1000);
  await sleep(args.settle * 1000);
  const rssTraffic = statusKiB(pid, 'VmRSS');
  const rssAnon = statusKiB(pid, 'RssAnon');
  const hwm = statusKiB(pid, 'VmHWM');
  const threads = Number((fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Threads:\s+(\d+)/m) || [])[1]);
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  const alive = sockets.filter((sk) => sk && sk.ws.readyState === WebSocket.OPEN).length;
  const ms = (x) => round(x, 1);
  const result = {
    scenario: 'idle', node_port: port, requested: n, rooms: rooms.length, deflate: args.deflate, connect,
    connect_cpu: cpuDelta(before, opened), quiet_after_connect_ms: quiet_ms,
    alive_after_settle: alive, closed_early: counters.closed_early,
    rss_start_kib: rss0, rss_before_kib: rssBefore, rss_after_kib: rssAfter, rss_anon_after_kib: rssAnon, vm_hwm_kib: hwm,
    kib_per_socket: ms((rssAfter - rssBefore) / Math.max(1, alive)),
    rss_after_traffic_kib: rssTraffic,
    kib_per_socket_after_traffic: ms((rssTraffic - rssBefore) / Math.max(1, alive)),
    node_threads: threads, node_fds: fds,
    idle_cpu_10s: cpuDelta(idleA, idleB),
  };
  closeAll(sockets);
  return result;
}

// --- joins and moves (fill, move): sockets whose every frame is looked at -------------------------
// The type of a server frame: the encoder writes "type" first ({"type":"playback",...}).
const P_TYPE = Buffer.from('{"type":"');
function frameType(buf) {
  if (startsWith(buf, P_TYPE)) {
    const end = buf.indexOf(0x22, P_TYPE.length);
    if (end > 0) return buf.toString('latin1', P_TYPE.length, end);
  }
  try { return String(JSON.parse(buf.toString()).type); } catch { return '?'; }
}
const userIdOf = (m) => (m == null ? undefined : typeof m === 'number' ? m : m.user_id ?? (m.user ? m.user.id : m.id));

// Open one socket for fill/move. h.onHello(msg, buf, now) once; h.onFrame(type, buf, now) for every
// later frame; h.onClose(code, now) when it closes after its hello. Resolves {ws, protocol,
// connect_ms, hello_bytes} on the hello; rejects with err.kind = 'close <code>' (a refusal: the
// server accepts, sends `error`, closes with a 44xx/1013 code), 'http <status>' or the socket
// error's code (ECONNREFUSED...).
function openTracked(port, roomId, token, h) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const ws = new WebSocket(`ws://${args.host}:${port}/ws/rooms/${roomId}/`, offeredProtocols(token), {
      origin: ORIGIN, perMessageDeflate: args.deflate, skipUTF8Validation: true, handshakeTimeout: 30000,
    });
    let hello = false, done = false, refusal = '';
    const fail = (kind, message) => {
      if (done) return;
      done = true;
      const err = new Error(message || kind);
      err.kind = kind;
      reject(err);
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
    };
    ws.on('message', (buf) => {
      const now = performance.now();
      lastFrameAt = now;
      counters.frames++;
      if (!hello) {
        if (startsWith(buf, P_HELLO)) {
          hello = true; done = true;
          const protocol = noteProtocol(ws);
          const msg = JSON.parse(buf.toString());
          if (h.onHello) h.onHello(msg, buf, now);
          resolve({ ws, protocol, t0, connect_ms: now - t0, hello_bytes: buf.length });
          return;
        }
        if (startsWith(buf, P_ERROR)) { refusal = buf.toString().slice(0, 200); return; } // the close code follows
      }
      const type = frameType(buf);
      if (type === 'error') {
        counters.errors++;
        if (buf.indexOf('"rate_limited"') >= 0) counters.rate_limited++;
      }
      if (h.onFrame) h.onFrame(type, buf, now);
    });
    ws.on('unexpected-response', (_req, res) => fail(`http ${res.statusCode}`));
    ws.on('error', (err) => { if (!hello) fail(err.code || 'error', err.message); });
    ws.on('close', (code) => {
      if (!hello) fail(`close ${code}`, `closed ${code} before hello ${refusal}`);
      else if (h.onClose) h.onClose(code, performance.now(), ws);
    });
  });
}

// Run fn(i) for i in [0, count) with at most args.concurrency in flight.
async function pool(count, fn) {
  let next = 0;
  const worker = async () => { while (next < count) { const i = next++; await fn(i); } };
  await Promise.all(Array.from({ length: Math.min(args.concurrency, count) }, worker));
}

// --- scenario: fill a room (joins) ---------------------------------------------------------------
// N members of the fan-out room connect (alternating over the nodes, --concurrency/--inflight
// handshakes in flight); every frame each socket receives until --settle s after the last hello is
// counted by type, and each socket keeps the set of members it believes online (v1: the hello's
// members_online + member_joined/member_left; v2: the hello's first page + members_changed, and
// `members` requests for the rest while members_next is set). Correct = the socket ends with
// exactly the N members.
async function fill() {
  const room = layout.fanout;
  const n = Math.min(args.n, room.members.length);
  const idx = new Map(); // user id -> member index
  for (let i = 0; i < n; i++) idx.set(layout.users[room.members[i]].id, i);
  const KINDS = ['hello', 'member_joined', 'member_left', 'members_changed', 'other'];
  const frames = Object.fromEntries(KINDS.map((k) => [k, { count: 0, bytes: 0 }]));
  const otherTypes = {};
  const fetch = { requests: 0, request_bytes: 0, pages: 0, page_bytes: 0, members_in_pages: 0, sockets_fetching: 0, incomplete: 0 };
  const have = Array.from({ length: n }, () => new Uint8Array(n));
  const cnt = new Int32Array(n);
  const strangers = new Array(n).fill(null); // ids outside the N (Set, lazily)
  const serverCount = new Int32Array(n).fill(-1); // v2: the last members_count / count the server told
  const fetching = new Uint8Array(n); // v2: a `members` request outstanding
  const helloAt = new Float64Array(n).fill(NaN);
  const connectMs = [];
  let counting = true, largestHello = 0, helloPageMax = 0, helloWithNext = 0, closedEarly = 0;
  const sockets = new Array(n);
  const add = (s, m) => {
    const id = userIdOf(m);
    const j = idx.get(id);
    if (j === undefined) { (strangers[s] ||= new Set()).add(id); return; }
    if (!have[s][j]) { have[s][j] = 1; cnt[s]++; }
  };
  const del = (s, m) => {
    const id = userIdOf(m);
    const j = idx.get(id);
    if (j === undefined) { if (strangers[s]) strangers[s].delete(id); return; }
    if (have[s][j]) { have[s][j] = 0; cnt[s]--; }
  };
  const askMore = (s, ws, cursor) => {
    const text = JSON.stringify({ type: 'members', after: cursor, limit: 200 }); // limit: as the page asks (static/js/room.js)
    fetch.requests++; fetch.request_bytes += text.length;
    fetching[s] = 1;
    ws.send(text);
  };
  const handlers = (s) => ({
    onHello: (msg, buf, now) => {
      helloAt[s] = now;
      if (counting) { frames.hello.count++; frames.hello.bytes += buf.length; }
      largestHello = Math.max(largestHello, buf.length);
      const page = msg.members_online || [];
      helloPageMax = Math.max(helloPageMax, page.length);
      for (const m of page) add(s, m);
      if (typeof msg.members_count === 'number') serverCount[s] = msg.members_count;
      if (msg.members_next != null) helloWithNext++;
      if (msg.members_next != null && args.fetch === 'all') {
        fetch.sockets_fetching++;
        // the ws resolves right after onHello: send on the next tick
        setImmediate(() => { if (sockets[s]) askMore(s, sockets[s].ws, msg.members_next); });
      }
    },
    onFrame: (type, buf) => {
      const kind = KINDS.includes(type) && type !== 'hello' ? type : type === 'members_page' ? 'page' : 'other';
      if (kind === 'page') { fetch.pages++; fetch.page_bytes += buf.length; }
      else if (counting) {
        frames[kind].count++; frames[kind].bytes += buf.length;
        if (kind === 'other') otherTypes[type] = (otherTypes[type] || 0) + 1;
      }
      if (kind === 'member_joined') add(s, JSON.parse(buf.toString()).user);
      else if (kind === 'member_left') del(s, JSON.parse(buf.toString()).user);
      else if (kind === 'members_changed') {
        const msg = JSON.parse(buf.toString());
        for (const m of msg.joined || []) add(s, m);
        for (const m of msg.left || []) del(s, m);
        if (typeof msg.count === 'number') serverCount[s] = msg.count;
      } else if (kind === 'page') {
        const msg = JSON.parse(buf.toString());
        fetch.members_in_pages += (msg.members || []).length;
        for (const m of msg.members || []) add(s, m);
        if (typeof msg.count === 'number') serverCount[s] = msg.count;
        fetching[s] = 0;
        if (msg.next != null && sockets[s]) askMore(s, sockets[s].ws, msg.next);
      } else if (type === 'error' && fetching[s]) {
        fetching[s] = 0; fetch.incomplete++; // a `members` request the server did not take
      }
    },
    onClose: (_code, _now, ws) => { if (!ws._benchClosing) closedEarly++; },
  });
  // Warm-up, as for the idle scenario: one socket per node into a room of its own (the last
  // memory rooms: users outside the fan-out room), opened and closed, so the node's lazy imports,
  // its signing keys, database and Redis connections exist before the measurement. A node taking
  // a rush of joins (a room filling, a storm moving to it) has been running; what a room's first
  // join costs on a node (its roster, its reading) stays in the figure.
  const warmRooms = layout.mem.slice(-args.ports.length);
  const warm = await openMany(args.ports.map((port, k) => ({ port, room: warmRooms[k].id, token: layout.users[warmRooms[k].members[0]].token })));
  closeAll(warm.sockets);
  await sleep(500);
  await waitIdle(20000, 500);
  const errors = [];
  const before = cpuSnap();
  const t0 = performance.now();
  await pool(n, async (i) => {
    try {
      const r = await openTracked(args.ports[i % args.ports.length], room.id, layout.users[room.members[i]].token, handlers(i));
      sockets[i] = r;
      connectMs.push(r.connect_ms);
    } catch (err) { errors.push(`${i}: ${err.kind} ${err.message}`.slice(0, 200)); }
  });
  const opened = sockets.filter(Boolean).length;
  let lastHello = -Infinity;
  for (const t of helloAt) if (t > lastHello) lastHello = t;
  const atFill = cpuSnap(); // the pool ends with the last hello (each connect waits for its hello)
  const fillMs = lastHello - t0;
  // SETTLE s after the last hello, and until every `members` fetch is through (at most 10 s more).
  await sleep(Math.max(0, lastHello + args.settle * 1000 - performance.now()));
  const fetchDeadline = performance.now() + 10000;
  while (fetching.some(Boolean) && performance.now() < fetchDeadline) await sleep(20);
  counting = false;
  const settled = cpuSnap();
  const fillCpu = cpuDelta(before, atFill);
  const nodeCpu = fillCpu.node_cpu_s.reduce((a, b) => a + b, 0);
  let complete = 0, serverCountRight = 0, withStrangers = 0;
  const short = [];
  for (let s = 0; s < n; s++) {
    if (!sockets[s]) continue;
    const st = strangers[s] ? strangers[s].size : 0;
    if (st) withStrangers++;
    if (cnt[s] === n && st === 0) complete++; else short.push(cnt[s] + st - n);
    if (serverCount[s] === n) serverCountRight++;
  }
  const presence = frames.hello.count + frames.member_joined.count + frames.member_left.count + frames.members_changed.count;
  const presenceBytes = frames.hello.bytes + frames.member_joined.bytes + frames.member_left.bytes + frames.members_changed.bytes;
  log(`${opened}/${n} in ${round(fillMs / 1000, 2)} s (${args.protocol} offered, ${Object.keys(acceptedProtocols)} accepted); ` +
    `${presence} presence deliveries; ${complete}/${opened} sockets with all ${n} members`);
  closeAll(sockets);
  const drain_ms = await waitIdle(60000, 300);
  return {
    scenario: 'fill', members: n, nodes: args.ports.length, protocol_offered: args.protocol, settle_s: args.settle,
    members_fetched: args.fetch,
    inflight: args.concurrency,
    connect: { requested: n, opened, errors: errors.length, first_errors: errors.slice(0, 5), connect_ms: summary(connectMs) },
    fill_ms: round(fillMs, 1), connects_per_s: round(opened / (fillMs / 1000), 1),
    cpu: fillCpu, node_cpu_ms_per_connect: round((nodeCpu * 1000) / Math.max(1, opened), 2),
    client_cpu_ms_per_connect: round((fillCpu.client_cpu_s * 1000) / Math.max(1, opened), 2),
    cpu_fill_and_settle: cpuDelta(before, settled),
    frames, other_types: otherTypes, presence_deliveries: presence, presence_bytes: presenceBytes,
    frames_total: presence + frames.other.count, presence_deliveries_per_socket: round(presence / Math.max(1, opened), 1),
    largest_hello_bytes: largestHello, hello_page_max: helloPageMax, hellos_with_next: helloWithNext,
    members_fetch: fetch,
    sockets_with_all_members: complete, sockets_short: short.length,
    short_by: short.length ? summary(short.map((x) => Math.abs(x))) : null,
    sockets_with_unknown_members: withStrangers, sockets_server_count_right: serverCountRight,
    closed_early: closedEarly, drain_after_close_ms: drain_ms, counters: { ...counters },
  };
}

// --- scenario: a node stops while the room plays (move) ------------------------------------------
// N members over node A and node B (alternating; member 0, the room creator, is the sender, on A).
// After every hello and --settle s the sender changes playback every --interval ms (100); after
// 3 s of that node B (second of --pids) gets SIGTERM. Each client of B reconnects to A the way the
// page does: reconnect_after_ms + uniform [0, reconnect_window_ms] (no window from the server:
// [0, 1000] as static/js/socket.js) from the notice, then backoff on refusals.
async function move() {
  const room = layout.fanout;
  const n = Math.min(args.n, room.members.length);
  if (args.ports.length !== 2 || args.pids.length !== 2) throw new Error('move: --ports A,B --pids A,B');
  const [portA, portB] = args.ports;
  const pidB = args.pids[1];
  const interval = args.interval;
  const MAXV = 1 + Math.ceil(((args.maxWait + 60) * 1000) / interval);
  const sendAt = new Float64Array(MAXV).fill(NaN);
  let v0 = null, sent = 0, killAt = NaN, allBackAt = NaN, stopping = false, dupes = 0, maxK = -1;
  let positionUnmatched = 0;
  const senderRefused = {}; // error code -> changes of the sender the server refused (no version)
  const clients = [];
  for (let i = 0; i < n; i++) {
    clients.push({
      i, token: layout.users[room.members[i]].token, moves: i % 2 === 1, ws: null,
      got: new Uint8Array(MAXV), arrivals: [], lastPbBeforeNotice: NaN, noticeAt: NaN, notice: null,
      closeAt: NaN, closeCode: null, rehelloAt: NaN, rehelloVersion: null, firstPbAfter: NaN,
      attempts: 0, plannedDelay: NaN, gaveUp: false,
    });
  }
  const deliveries = []; // [k, latency ms, client index]
  const notices = [];
  const refusals = {}; // reason (close code / error) -> count
  const closes = {}; // close code of the moved clients' old socket -> count
  let closedWithoutNotice = 0, unexpectedCloses = 0;
  const onPlayback = (c, buf, now) => {
    if (v0 === null) return;
    const k = intAfter(buf, '"version":') - v0 - 1;
    if (k < 0 || k >= MAXV) return;
    if (c.got[k]) { dupes++; return; }
    c.got[k] = 1;
    c.gotCount = (c.gotCount || 0) + 1;
    if (k > maxK) maxK = k;
    c.arrivals.push(now);
    // The send it answers, from the position (10 + 1.5 × send index): a refused send makes no
    // version, so version k is not send k once the server refused one.
    const p = buf.indexOf('"position":');
    const j = p < 0 ? -1 : Math.round((parseFloat(buf.toString('latin1', p + 11, p + 40)) - 10) / 1.5);
    if (j >= 0 && j < MAXV && !isNaN(sendAt[j])) deliveries.push([j, now - sendAt[j], c.i]);
    else positionUnmatched++;
    if (isNaN(c.noticeAt)) c.lastPbBeforeNotice = now;
    if (!isNaN(c.rehelloAt) && isNaN(c.firstPbAfter)) c.firstPbAfter = now;
  };
  const reconnect = async (c) => {
    const ref = isNaN(c.noticeAt) ? c.closeAt : c.noticeAt;
    const after = c.notice ? Number(c.notice.reconnect_after_ms) || 2000 : 2000;
    const win = c.notice && c.notice.reconnect_window_ms != null ? Number(c.notice.reconnect_window_ms) : 1000;
    c.plannedDelay = after + Math.random() * win;
    await sleep(Math.max(0, ref + c.plannedDelay - performance.now()));
    let attempt = 1; // as the page after server_shutdown: the next backoff starts at 0.5-1 s
    while (!stopping) {
      c.attempts++;
      try {
        const r = await openTracked(portA, room.id, c.token, handlers(c, true));
        const old = c.ws;
        c.ws = r.ws;
        c.handedOver = true; // frames still arriving on the old socket are ignored
        if (old && old.readyState === WebSocket.OPEN) { old._benchClosing = true; old.close(1000); } // make before break
        return;
      } catch (err) {
        refusals[err.kind] = (refusals[err.kind] || 0) + 1;
        const ceiling = Math.min(15000, 500 * 2 ** attempt);
        attempt++;
        await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
      }
    }
    c.gaveUp = true;
  };
  const handlers = (c, again) => ({
    onHello: (msg, _buf, now) => {
      if (again) { c.rehelloAt = now; c.rehelloVersion = msg.playback && msg.playback.version; }
      else c.helloVersion = msg.playback && msg.playback.version;
    },
    onFrame: (type, buf, now) => {
      if (!again && c.handedOver) return;
      if (type === 'playback') onPlayback(c, buf, now);
      else if (type === 'error' && c.i === 0) {
        let code = '?';
        try { code = JSON.parse(buf.toString()).code || '?'; } catch { /* counted as '?' */ }
        senderRefused[code] = (senderRefused[code] || 0) + 1;
      } else if (type === 'server_shutdown') {
        const msg = JSON.parse(buf.toString());
        if (isNaN(c.noticeAt)) {
          c.noticeAt = now; c.notice = msg;
          // A draining node keeps this socket open: open the new one at its moment beside it.
          if (c.moves && Number(msg.drain_ms) > 0) { c.reconnecting = true; reconnect(c); }
        }
        if (notices.length < 3) notices.push(msg);
      }
    },
    onClose: (code, now, ws) => {
      if (ws._benchClosing) return;
      if (c.moves && !again && isNaN(c.closeAt)) {
        c.closeAt = now; c.closeCode = code;
        closes[code] = (closes[code] || 0) + 1;
        if (isNaN(c.noticeAt)) closedWithoutNotice++;
        if (!c.reconnecting) { c.reconnecting = true; reconnect(c); } // else: its handover is on its way
      } else { unexpectedCloses++; counters.closed_early++; }
    },
  });
  const errors = [];
  let initiallyOpened = 0;
  const t0 = performance.now();
  await pool(n, async (i) => {
    const c = clients[i];
    try { c.ws = (await openTracked(c.moves ? portB : portA, room.id, c.token, handlers(c, false))).ws; initiallyOpened++; }
    catch (err) { errors.push(`${i}: ${err.kind} ${err.message}`.slice(0, 200)); }
  });
  const connectWall = (performance.now() - t0) / 1000;
  const sender = clients[0];
  if (!sender.ws) throw new Error('sender did not connect');
  const quiet_ms = await waitIdle();
  await sleep(args.settle * 1000);
  v0 = sender.helloVersion;
  const moved = clients.filter((c) => c.moves && c.ws);
  const stayed = clients.filter((c) => !c.moves && c.ws && c.i !== 0);
  log(`${clients.filter((c) => c.ws).length}/${n} connected in ${round(connectWall, 1)} s (${moved.length} on B); ` +
    `playback every ${interval} ms; SIGTERM to node B (pid ${pidB}) in 3 s`);
  const snaps = { start: cpuSnap() };
  const tStart = performance.now() + 20;
  const sending = (async () => {
    for (let k = 0; k < MAXV && !stopping; k++) {
      const wait = tStart + k * interval - performance.now();
      if (wait > 0) await sleep(wait);
      if (stopping) break;
      sendAt[k] = performance.now();
      sender.ws.send(JSON.stringify({ type: 'playback', playing: k % 2 === 0, position: 10 + k * 1.5 }));
      sent++;
    }
  })();
  await sleep(Math.max(0, tStart + 3000 - performance.now()));
  snaps.kill = cpuSnap();
  killAt = performance.now();
  process.kill(pidB, 'SIGTERM');
  // Until every moved client has its new hello (or gave up / --max-wait s), then 2 s more.
  const deadline = killAt + args.maxWait * 1000;
  while (performance.now() < deadline && moved.some((c) => isNaN(c.rehelloAt) && !c.gaveUp)) await sleep(50);
  allBackAt = Math.max(...moved.map((c) => (isNaN(c.rehelloAt) ? -Infinity : c.rehelloAt)));
  snaps.back = cpuSnap();
  await sleep(2000);
  stopping = true;
  await sending;
  // Until every change sent is accounted for at the sender (its own copy of the event, or an
  // `error`: a refused change gets no version) and every client that stayed on A has every
  // version (a backlogged node delivers them seconds late); 30 s at most.
  const tLastSend = performance.now();
  const refusedCount = () => Object.values(senderRefused).reduce((a, b) => a + b, 0);
  const stayedComplete = () => stayed.every((c) => { for (let k = 0; k <= maxK; k++) if (!c.got[k]) return false; return true; });
  while (performance.now() - tLastSend < 30000 && !((sender.gotCount || 0) + refusedCount() >= sent && stayedComplete())) await sleep(50);
  await sleep(300);
  const drainAfterStopMs = performance.now() - tLastSend;
  snaps.end = cpuSnap();
  const sentK = maxK + 1; // the versions the sends made (refused sends make none)

  // Versions every client that stayed on A got as an event: the reference.
  const everyA = new Uint8Array(sentK).fill(1);
  for (const c of stayed) for (let k = 0; k < sentK; k++) if (!c.got[k]) everyA[k] = 0;
  let refCount = 0; for (let k = 0; k < sentK; k++) refCount += everyA[k];
  const noticeToHello = [], closeToHello = [], gap = [], missed = [], missedAfterHello = [], planned = [];
  let movedBack = 0;
  for (const c of moved) {
    if (!isNaN(c.plannedDelay)) planned.push(c.plannedDelay);
    if (isNaN(c.rehelloAt)) continue;
    movedBack++;
    if (!isNaN(c.noticeAt)) noticeToHello.push(c.rehelloAt - c.noticeAt);
    if (!isNaN(c.closeAt)) closeToHello.push(c.rehelloAt - c.closeAt);
    if (!isNaN(c.firstPbAfter) && !isNaN(c.lastPbBeforeNotice)) gap.push(c.firstPbAfter - c.lastPbBeforeNotice);
    let m = 0, ma = 0;
    for (let k = 0; k < sentK; k++) {
      if (!everyA[k] || c.got[k]) continue;
      m++;
      if (c.rehelloVersion !== null && v0 + 1 + k > c.rehelloVersion) ma++; // not covered by the new hello
    }
    missed.push(m); missedAfterHello.push(ma);
  }
  // Clients that stayed on A: send -> arrival, before the SIGTERM / from it to the last moved hello
  // / the 2 s after; and each one's longest silence between two playback events from the SIGTERM
  // to 2 s after the last moved hello.
  const phaseOf = (j) => (sendAt[j] < killAt ? 'before' : sendAt[j] <= allBackAt ? 'during' : 'after'); // j: send index
  const lat = { stayed: { before: [], during: [], after: [] }, moved: { before: [], during: [], after: [] } };
  for (const [j, d, i] of deliveries) lat[clients[i].moves ? 'moved' : 'stayed'][phaseOf(j)].push(d);
  const longestSilence = (c) => {
    let g = 0, prev = NaN;
    for (const t of c.arrivals) {
      if (t >= killAt && t <= allBackAt + 2000 && !isNaN(prev)) g = Math.max(g, t - prev);
      prev = t;
    }
    return g;
  };
  const stayedGap = stayed.map(longestSilence), stayedMissing = [];
  for (const c of stayed) {
    let miss = 0; for (let k = 0; k < sentK; k++) if (!c.got[k]) miss++;
    stayedMissing.push(miss);
  }
  const movedGap = moved.map(longestSilence); // with a drain: the moved clients' longest silence
  const sumLat = (o) => Object.fromEntries(Object.entries(o).map(([p, v]) => [p, summary(v)]));
  const result = {
    scenario: 'move', members: n, nodes: 2, protocol_offered: args.protocol, interval_ms: interval, settle_s: args.settle,
    connect: { requested: n, opened: initiallyOpened, errors: errors.length, first_errors: errors.slice(0, 5), wall_s: round(connectWall, 2) },
    quiet_before_ms: quiet_ms, moved: moved.length, stayed: stayed.length, sent, versions: sentK, sender_refused: senderRefused, duplicates: dupes,
    deliveries_without_send: positionUnmatched,
    server_shutdown: notices[0] || null, notices_received: moved.filter((c) => !isNaN(c.noticeAt)).length,
    closed_without_notice: closedWithoutNotice, old_socket_close_codes: closes,
    notice_to_close_ms: summary(moved.filter((c) => !isNaN(c.noticeAt) && !isNaN(c.closeAt)).map((c) => c.closeAt - c.noticeAt)),
    sigterm_to_last_close_ms: round(Math.max(...moved.map((c) => c.closeAt || -Infinity)) - killAt, 1),
    planned_delay_ms: summary(planned),
    moved_back: movedBack, gave_up: moved.filter((c) => c.gaveUp).length,
    attempts: moved.reduce((a, c) => a + c.attempts, 0), refusals,
    notice_to_hello_ms: summary(noticeToHello), close_to_hello_ms: summary(closeToHello),
    sigterm_to_last_hello_ms: round(allBackAt - killAt, 1),
    event_gap_ms: summary(gap), event_gap_measured: gap.length, moved_longest_silence_ms: summary(movedGap),
    versions_every_a_client_got: refCount,
    missed_as_event: summary(missed), missed_as_event_total: missed.reduce((a, b) => a + b, 0),
    missed_not_covered_by_hello_total: missedAfterHello.reduce((a, b) => a + b, 0),
    latency_ms: { stayed_on_a: sumLat(lat.stayed), moved: sumLat(lat.moved) },
    stayed_longest_silence_ms: summary(stayedGap), stayed_missing_events_total: stayedMissing.reduce((a, b) => a + b, 0),
    cpu: { before_kill: cpuDelta(snaps.start, snaps.kill), move: cpuDelta(snaps.kill, snaps.back), after: cpuDelta(snaps.back, snaps.end) },
    drain_after_last_send_ms: round(drainAfterStopMs, 0),
    unexpected_closes: unexpectedCloses, counters: { ...counters },
  };
  log(`moved ${movedBack}/${moved.length}; notice->hello p50 ${result.notice_to_hello_ms.p50} p99 ${result.notice_to_hello_ms.p99} ` +
    `max ${result.notice_to_hello_ms.max} ms; gap p50 ${result.event_gap_ms.p50} p99 ${result.event_gap_ms.p99} ms; refusals ${JSON.stringify(refusals)}`);
  closeAll(clients.map((c) => (c.ws ? { ws: c.ws } : null)));
  result.drain_after_close_ms = await waitIdle(60000, 300);
  return result;
}

(async () => {
  const run = { fanout, chat, idle, storm, fill, move }[args.scenario];
  if (!run) throw new Error(`unknown --scenario ${args.scenario}`);
  const result = await run();
  result.label = args.label || undefined;
  result.client = {
    node: process.version, ws: require('ws/package.json').version, concurrency: args.concurrency, receiver: args.receiver,
    protocol_offered: args.protocol,
  };
  // What the server accepted (the most frequent subprotocol over every hello), and the counts.
  const acc = Object.entries(acceptedProtocols).sort((x, y) => y[1] - x[1]);
  result.ws = { protocol: acc.length ? acc[0][0] : null, accepted: acceptedProtocols, offered: offeredProtocols('<token>').slice(0, -1) };
  // Where the nodes ran (bench/ws/run NODE_TREE): the tree, its HEAD and, if its tracked files differ
  // from HEAD, a short hash of `git diff HEAD` (untracked files are not seen).
  if (args.nodeTree) {
    result.node_tree = { path: args.nodeTree, commit: args.nodeTreeCommit || null, uncommitted_diff: args.nodeTreeDiff || null };
  }
  const text = JSON.stringify(result, null, 1);
  if (args.out) fs.writeFileSync(args.out, text);
  process.stdout.write(text + '\n');
  process.exit(0);
})().catch((err) => { log('FAILED', err.stack || err); process.exit(1); });
