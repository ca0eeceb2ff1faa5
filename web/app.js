// SPDX-License-Identifier: MIT
// web/app.js: the lipsync page's logic. One WebSocket to the gateway (/ws, docs/API.md
// "WebSocket gateway") carries a lipsync.v1 Stream: float32 16 kHz audio and JSON control up,
// JPEG frames with a 40-byte header and JSON events down. Frames and audio are scheduled on one
// clock, the AudioContext's: frame i is shown at t0 + i x 40 ms (the server numbers frames on a
// 25 fps timeline), and an utterance's audio starts at the time of its first frame minus that
// frame's offset into the utterance, so lips and sound stay together. Idle frames (the avatar
// breathing while nobody speaks) come on the same timeline.
'use strict';

const FRAME_S = 0.04;      // one frame at 25 fps
const PLAYOUT_S = 0.12;    // frames are shown this long after the first one arrived (jitter)
const CHUNK = 8000;        // samples per audio message (0.5 s at 16 kHz)
const RATE = 16000;

const $ = (id) => document.getElementById(id);
const view = $('view');
const g = view.getContext('2d');

const st = {
  ws: null,
  ctx: null,            // AudioContext (created on the first user action or at load)
  audioClock: false,    // true once ctx.currentTime is seen advancing
  avatars: [],
  tts: false,
  open: false,
  base: null,           // clock time of frame index 0
  lastIndex: -1,
  utts: [],             // utterance u (1-based) = utts[u - 1]: {kind, pcm, t0, started}
  queue: [],            // decoded frames waiting for their time: {due, bmp, index}
  sending: [],          // uploaded utterances still being sent, oldest first
  sources: [],          // audio playing or scheduled (stopped by an interrupt)
  expectClosed: 0,      // streams the page closed itself (their 'closed' is no news)
  opens: 0,             // streams opened on this page
  mic: null,
  // statistics
  drawn: 0, dropped: 0, drawTimes: [], serverLat: [], firstLat: null, rtt: null,
  frames: 0, speechFrames: 0, idleFrames: 0, probe: null, probes: [],
  gapDrops: 0, lateDrops: 0, tickDrops: 0, rebases: 0, played: 0, scheduledAt: null,
};

function log(msg, bad) {
  const el = $('log');
  if (bad) msg = 'error: ' + msg;
  el.textContent = (el.textContent + msg + '\n').slice(-4000);
  el.scrollTop = el.scrollHeight;
}

function setStatus(text, bad) {
  $('status').textContent = text;
  $('status').className = bad ? 'status bad' : 'status';
}

// ---- clock ---------------------------------------------------------------------------------
function ensureAudio() {
  if (!st.ctx) {
    st.ctx = new (window.AudioContext || window.webkitAudioContext)();
    const t = st.ctx.currentTime;
    // Some headless or muted setups never start the audio clock: then frames use the page
    // clock (performance.now) and audio, if any, plays unsynchronised.
    setTimeout(() => { st.audioClock = st.ctx.currentTime > t; }, 300);
  }
  if (st.ctx.state === 'suspended') st.ctx.resume().catch(() => {});
  return st.ctx;
}

function now() {
  return st.audioClock ? st.ctx.currentTime : performance.now() / 1000;
}

// ---- connection ----------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(proto + '//' + location.host + '/ws');
  ws.binaryType = 'arraybuffer';
  st.ws = ws;
  ws.onopen = () => { setStatus('connected'); send({type: 'list'}); };
  ws.onclose = (e) => {
    st.open = false;
    setStatus('disconnected (' + e.code + (e.reason ? ': ' + e.reason : '') + '); retrying', true);
    setTimeout(connect, 2000);
  };
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') onJson(JSON.parse(e.data));
    else onBinary(e.data);
  };
}

function send(obj) {
  if (st.ws && st.ws.readyState === WebSocket.OPEN) st.ws.send(JSON.stringify(obj));
}

function openStream() {
  if (!st.ws || st.ws.readyState !== WebSocket.OPEN) return;
  if (st.open) {
    send({type: 'close'});
    st.expectClosed++;
  }
  st.base = null;
  st.lastIndex = -1;
  st.utts = [];
  st.sending = [];
  st.queue.forEach((f) => f.bmp.close());
  st.queue = [];
  send({type: 'open', avatar: $('avatar').value, latency: $('latency').value,
        idle: true, paced: true});
}

function onJson(m) {
  switch (m.type) {
  case 'avatars': {
    st.avatars = m.avatars;
    st.tts = m.tts;
    const sel = $('avatar');
    sel.textContent = '';
    for (const a of m.avatars) {
      const o = document.createElement('option');
      o.value = a.id;
      o.textContent = a.id + ' (' + a.frame_count + ' frames)';
      if (a.id === m.default) o.selected = true;
      sel.appendChild(o);
    }
    $('say').disabled = !m.tts;
    $('ttsnote').textContent = m.tts ? 'Text-to-speech: espeak-ng on the server.'
                                     : 'Text-to-speech: not installed on the server.';
    if (m.avatars.length) openStream();
    else setStatus('the server has no avatars', true);
    break;
  }
  case 'event':
    if (m.kind === 'opened') {
      st.open = true;
      st.opens++;
      view.width = m.width;
      view.height = m.height;
      setStatus('streaming ' + m.avatar + ' (' + m.width + 'x' + m.height + ')');
    } else if (m.kind === 'behind') {
      st.dropped += m.dropped;
    } else if (m.kind === 'utterance_end' && m.frames === 0) {
      log('utterance ' + m.utterance + ': ' + m.message);
    }
    break;
  case 'closed':
    if (st.expectClosed > 0) { st.expectClosed--; break; }
    st.open = false;
    setStatus('stream ended: ' + m.status + '; reopening', m.status !== 'OK');
    if (m.status !== 'OK') log('stream ended: ' + m.status + ': ' + m.details, true);
    // The avatar should never freeze: a stream the server ended is opened again.
    setTimeout(() => { if (!st.open) openStream(); }, 1000);
    break;
  case 'pong':
    st.rtt = performance.now() - m.t;
    break;
  case 'error':
    log(m.message, true);
    break;
  default:
    break;
  }
}

function onBinary(buf) {
  if (buf.byteLength < 8) return;
  const magic = String.fromCharCode(...new Uint8Array(buf, 0, 4));
  if (magic === 'LSF1' && buf.byteLength >= 40) onFrame(buf);
  else if (magic === 'LSA1') {
    // Text-to-speech audio: it belongs to the oldest "say" still waiting for its audio.
    const u = st.utts.find((x) => x.kind === 'say' && !x.pcm);
    if (u) u.pcm = new Float32Array(buf.slice(8));
  }
}

// ---- frames --------------------------------------------------------------------------------
function onFrame(buf) {
  const dv = new DataView(buf);
  const index = dv.getUint32(4, true);
  const speech = (dv.getUint32(16, true) & 1) === 1;
  const utt = dv.getInt32(20, true);
  const uf = dv.getInt32(24, true);
  const lat = dv.getFloat32(28, true);
  const avatarFrame = dv.getInt32(32, true);
  const t = now();
  st.frames++;
  if (speech) st.speechFrames++; else st.idleFrames++;
  if (st.lastIndex >= 0 && index > st.lastIndex + 1) {
    st.dropped += index - st.lastIndex - 1;
    st.gapDrops += index - st.lastIndex - 1;
  }
  st.lastIndex = index;
  // One timeline: frame i at base + i x 40 ms. Re-anchor when frames come much later than their
  // slot (the network stalled) or far earlier (the clocks drifted apart).
  if (st.base === null || st.base + index * FRAME_S < t - 0.25 ||
      st.base + index * FRAME_S > t + 2) {
    if (st.base !== null) st.rebases++;
    st.base = t + PLAYOUT_S - index * FRAME_S;
  }
  const due = st.base + index * FRAME_S;
  if (speech) {
    st.serverLat.push(lat);
    if (st.serverLat.length > 50) st.serverLat.shift();
    const u = st.utts[utt - 1];
    if (u) u.played = Math.max(u.played || 0, uf + 1);
    if (u && !u.started) {
      u.started = true;
      st.firstLat = performance.now() - u.t0;
      if (u.pcm) playAt(u.pcm, due, uf * FRAME_S);
    }
  }
  if (due < t - FRAME_S) { // its slot has passed: showing it now would break sync
    st.dropped++;
    st.lateDrops++;
    return;
  }
  const blob = new Blob([new Uint8Array(buf, 40)], {type: 'image/jpeg'});
  createImageBitmap(blob).then((bmp) => {
    st.queue.push({due, bmp, index, speech, avatarFrame});
  }).catch(() => { st.dropped++; });
}

function playAt(pcm, when, offset) {
  if (!st.audioClock) return;
  const ctx = st.ctx;
  const b = ctx.createBuffer(1, pcm.length, RATE);
  b.copyToChannel(pcm, 0);
  const src = ctx.createBufferSource();
  src.buffer = b;
  src.connect(ctx.destination);
  const t = ctx.currentTime;
  if (when < t) { offset += t - when; when = t; }
  if (offset < b.duration) {
    src.start(when, offset);
    st.sources.push(src);
    src.onended = () => { st.sources = st.sources.filter((x) => x !== src); };
    st.played++;
    st.scheduledAt = {when, offset};
  }
}

function drawTick() {
  const t = now();
  // Frames more than one slot late are skipped; otherwise one frame per tick (ticks come every
  // few ms), so a frame whose decode finished a little late is shown late, not dropped.
  while (st.queue.length > 1 && st.queue[0].due < t - FRAME_S) {
    st.queue.shift().bmp.close();
    st.dropped++;
    st.tickDrops++;
  }
  const show = st.queue.length && st.queue[0].due <= t ? st.queue.shift() : null;
  if (show) {
    g.drawImage(show.bmp, 0, 0, view.width, view.height);
    show.bmp.close();
    st.drawn++;
    st.drawTimes.push(performance.now());
    if (st.probe) {
      // Test hook: a checksum of a region (e.g. the mouth) of every drawn frame.
      const p = st.probe;
      const d = g.getImageData(p.x, p.y, p.w, p.h).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4) sum += d[i] + 2 * d[i + 1] + 3 * d[i + 2];
      st.probes.push({index: show.index, speech: show.speech, af: show.avatarFrame, sum});
    }
  }
  // Frames arrive in index order, so the queue stays sorted.
}

function updateStats() {
  const t = performance.now();
  while (st.drawTimes.length && st.drawTimes[0] < t - 1000) st.drawTimes.shift();
  $('fps').textContent = String(st.drawTimes.length);
  $('drawn').textContent = String(st.drawn);
  $('dropped').textContent = String(st.dropped);
  $('latency_first').textContent = st.firstLat === null ? '–' : st.firstLat.toFixed(0) + ' ms';
  const sl = st.serverLat;
  $('latency_server').textContent = sl.length ?
    (sl.reduce((a, b) => a + b, 0) / sl.length).toFixed(0) + ' ms' : '–';
  $('latency_playout').textContent = (PLAYOUT_S * 1000).toFixed(0) + ' ms' +
    (st.audioClock ? '' : ' (page clock)');
  $('rtt').textContent = st.rtt === null ? '–' : st.rtt.toFixed(0) + ' ms';
}

// ---- audio in ------------------------------------------------------------------------------
// A whole utterance (uploaded file): its audio is kept to be played with its frames. It is
// sent at most AHEAD_S ahead of the frames that came back, so that control messages (interrupt)
// never queue behind minutes of audio and the server's backlog stays small.
const AHEAD_S = 8;
function sendUtterance(pcm) {
  if (!st.open) { log('not connected to a stream yet', true); return; }
  const u = {kind: 'file', pcm, t0: performance.now(), started: false, sent: 0, played: 0};
  st.utts.push(u);
  st.sending.push(u);
  feed();
}

function feed() {
  while (st.sending.length && st.ws.readyState === WebSocket.OPEN) {
    const u = st.sending[0];
    if (u.sent >= u.pcm.length) {
      send({type: 'end'});
      st.sending.shift();
      continue;
    }
    if (u.sent / RATE - u.played * FRAME_S > AHEAD_S) return; // wait for frames
    const n = Math.min(CHUNK, u.pcm.length - u.sent);
    st.ws.send(u.pcm.slice(u.sent, u.sent + n).buffer);
    u.sent += n;
  }
}

// Decodes any format the browser knows and resamples to 16 kHz mono with an offline context.
async function decodeTo16k(arrayBuf) {
  const ctx = ensureAudio();
  const a = await ctx.decodeAudioData(arrayBuf);
  const n = Math.max(1, Math.ceil(a.duration * RATE));
  const off = new OfflineAudioContext(1, n, RATE);
  const src = off.createBufferSource();
  src.buffer = a;
  src.connect(off.destination);
  src.start();
  const r = await off.startRendering();
  return r.getChannelData(0);
}

async function onFile() {
  const f = $('file').files[0];
  if (!f) return;
  try {
    const pcm = await decodeTo16k(await f.arrayBuffer());
    sendUtterance(pcm);
    log('sent ' + f.name + ': ' + (pcm.length / RATE).toFixed(2) + ' s');
  } catch (e) {
    log('cannot decode ' + f.name + ': ' + e.message, true);
  }
  $('file').value = '';
}

function onSay(e) {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || !st.tts || !st.open) return;
  ensureAudio();
  st.utts.push({kind: 'say', pcm: null, t0: performance.now(), started: false});
  send({type: 'say', text});
  $('text').value = '';
}

// Microphone: a ScriptProcessor hands blocks at the context rate; they are resampled to
// 16 kHz by linear interpolation with the fractional position carried across blocks.
async function toggleMic() {
  if (st.mic) {
    st.mic.proc.disconnect();
    st.mic.src.disconnect();
    st.mic.stream.getTracks().forEach((t) => t.stop());
    st.mic = null;
    send({type: 'end'});
    $('mic').textContent = 'Start microphone';
    return;
  }
  if (!st.open) return;
  const ctx = ensureAudio();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1,
      echoCancellation: true, noiseSuppression: true}});
  } catch (e) {
    log('microphone: ' + e.message, true);
    return;
  }
  const src = ctx.createMediaStreamSource(stream);
  const proc = ctx.createScriptProcessor(2048, 1, 1);
  const mute = ctx.createGain();
  mute.gain.value = 0;
  const step = ctx.sampleRate / RATE;
  let pos = 0;
  let prev = 0;
  proc.onaudioprocess = (ev) => {
    const x = ev.inputBuffer.getChannelData(0);
    const out = new Float32Array(Math.ceil((x.length - pos) / step) + 1);
    let k = 0;
    for (; pos < x.length; pos += step) {
      const i = Math.floor(pos);
      const fr = pos - i;
      const a = i === 0 && fr < 0 ? prev : x[i];
      const b = i + 1 < x.length ? x[i + 1] : x[i];
      out[k++] = a + (b - a) * fr;
    }
    pos -= x.length;
    prev = x[x.length - 1];
    if (k && st.ws.readyState === WebSocket.OPEN) st.ws.send(out.slice(0, k).buffer);
  };
  src.connect(proc);
  proc.connect(mute);
  mute.connect(ctx.destination);
  st.mic = {stream, src, proc};
  // The speaker hears themself already: no playback for microphone utterances.
  st.utts.push({kind: 'mic', pcm: null, t0: performance.now(), started: false});
  $('mic').textContent = 'Stop microphone';
}

// ---- wiring --------------------------------------------------------------------------------
$('file').addEventListener('change', onFile);
$('sayform').addEventListener('submit', onSay);
$('mic').addEventListener('click', toggleMic);
// Interrupt: the server drops the utterance's pending frames; the page stops sending the rest
// of an upload and silences what it scheduled.
function interrupt() {
  send({type: 'interrupt'});
  st.sending = [];
  st.sources.forEach((x) => { try { x.stop(); } catch (e) { /* not started */ } });
  st.sources = [];
}
$('interrupt').addEventListener('click', interrupt);
$('avatar').addEventListener('change', openStream);
$('latency').addEventListener('change', openStream);
document.addEventListener('click', ensureAudio); // browsers start audio on a user gesture
setInterval(drawTick, 5);
setInterval(feed, 100);
setInterval(updateStats, 250);
setInterval(() => send({type: 'ping', t: performance.now()}), 2000);
ensureAudio();
connect();

// For tests and the curious: the page's state.
window.lipsync = st;
