// Edit -> peer latency: E editors (stock Yjs 13 docs in this one Node process) type into one
// document through a server, each at R edits/s; every peer's Y.Doc is watched until its state
// vector reaches each edit's clock (DESIGN §4), so each edit yields E-1 samples.
//
//   node editors.mjs --kind ours|yws|hocuspocus --url <ws url> [--doc <name>] [--prd <id>
//        --tokens t1,t2] [--editors 10] [--rate 5] [--seconds 20] [--warmup 3] [--drain 30]
//
// Transports (the client side of each server's own protocol; the servers run unmodified):
//   ours        DESIGN §3.2: each y-websocket message base64-wrapped in {"action":"y","data":...}
//               JSON text frames (chunked above 98,304 characters), `${url}?prd=&token=`;
//   yws         @y/websocket-server: the y-websocket binary messages, `${url}/${doc}`;
//   hocuspocus  @hocuspocus/provider (its own client, default settings) against @hocuspocus/server.
// For ours and yws the sync logic is y-websocket's provider's (y-protocols/sync: step 1 on open,
// readSyncMessage for every sync message, every local update sent as an update message) without
// awareness, which none of the servers needs to relay a document update.
//
// Prints one JSON object on stdout: {samples: [ms...], edits, expected, missing, ...}; progress on stderr.

import { performance } from 'node:perf_hooks'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import WebSocket from 'ws'
import { HocuspocusProvider } from '@hocuspocus/provider'

const MAX_FRAME_DATA_CHARS = 98304
const MESSAGE_SYNC = 0

function parseArgs (argv) {
  const args = { editors: 10, rate: 5, seconds: 20, warmup: 3, drain: 30, doc: 'bench', tokens: '', prd: '' }
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '')
    args[key] = argv[i + 1]
  }
  for (const k of ['editors', 'rate', 'seconds', 'warmup', 'drain']) args[k] = Number(args[k])
  if (!['ours', 'yws', 'hocuspocus'].includes(args.kind) || !args.url) {
    throw new Error('usage: editors.mjs --kind ours|yws|hocuspocus --url <ws url> ...')
  }
  return args
}

const log = (...parts) => process.stderr.write(parts.join(' ') + '\n')

/** y-websocket's provider sync logic over a pluggable framing (binary or our JSON base64). */
class MiniProvider {
  constructor (doc, url, framing) {
    this.doc = doc
    this.framing = framing
    this.synced = false
    this.errors = 0
    this.chunks = new Map()
    this.ws = new WebSocket(url)
    this.ws.binaryType = 'arraybuffer'
    this.opened = new Promise((resolve, reject) => {
      this.ws.on('open', resolve)
      this.ws.on('error', reject)
    })
    this.syncedPromise = new Promise(resolve => { this._resolveSynced = resolve })
    this.ws.on('open', () => {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, MESSAGE_SYNC)
      syncProtocol.writeSyncStep1(encoder, doc)
      this.send(encoding.toUint8Array(encoder))
    })
    this.ws.on('message', (data, isBinary) => this.receive(data, isBinary))
    this.ws.on('close', () => { this.closed = true })
    this.onUpdate = (update, origin) => {
      if (origin === this) return
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, MESSAGE_SYNC)
      syncProtocol.writeUpdate(encoder, update)
      this.send(encoding.toUint8Array(encoder))
    }
    doc.on('update', this.onUpdate)
  }

  send (message) {
    if (this.ws.readyState !== WebSocket.OPEN) return
    if (this.framing === 'binary') {
      this.ws.send(message)
      return
    }
    const data = Buffer.from(message).toString('base64')
    if (data.length <= MAX_FRAME_DATA_CHARS) {
      this.ws.send(JSON.stringify({ action: 'y', data }))
      return
    }
    const n = Math.ceil(data.length / MAX_FRAME_DATA_CHARS)
    const id = Math.random().toString(36).slice(2)
    for (let i = 0; i < n; i++) {
      const part = data.slice(i * MAX_FRAME_DATA_CHARS, (i + 1) * MAX_FRAME_DATA_CHARS)
      this.ws.send(JSON.stringify({ action: 'y', data: part, chunk: { id, i, n } }))
    }
  }

  receive (data, isBinary) {
    let message
    if (this.framing === 'binary') {
      message = new Uint8Array(data)
    } else {
      const frame = JSON.parse(isBinary ? Buffer.from(data).toString() : data.toString())
      if (frame.action === 'error') { this.errors++; log('error frame', JSON.stringify(frame)); return }
      if (frame.action !== 'y') return // acks, notices, pongs
      if (frame.chunk) {
        const set = this.chunks.get(frame.chunk.id) || []
        set[frame.chunk.i] = frame.data
        this.chunks.set(frame.chunk.id, set)
        if (set.filter(p => p !== undefined).length < frame.chunk.n) return
        this.chunks.delete(frame.chunk.id)
        message = new Uint8Array(Buffer.from(set.join(''), 'base64'))
      } else {
        message = new Uint8Array(Buffer.from(frame.data, 'base64'))
      }
    }
    const decoder = decoding.createDecoder(message)
    const type = decoding.readVarUint(decoder)
    if (type !== MESSAGE_SYNC) return // awareness / auth: not used here
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_SYNC)
    const syncType = syncProtocol.readSyncMessage(decoder, encoder, this.doc, this)
    if (encoding.length(encoder) > 1) this.send(encoding.toUint8Array(encoder))
    if (syncType === syncProtocol.messageYjsSyncStep2 && !this.synced) {
      this.synced = true
      this._resolveSynced()
    }
  }

  async whenSynced () { await this.opened; await this.syncedPromise }

  destroy () { this.doc.off('update', this.onUpdate); this.ws.close() }
}

class HocuspocusEditor {
  constructor (doc, url, name) {
    this.doc = doc
    this.errors = 0
    this.syncedPromise = new Promise(resolve => {
      this.provider = new HocuspocusProvider({
        url, name, document: doc, WebSocketPolyfill: WebSocket, onSynced: () => resolve()
      })
    })
  }

  async whenSynced () { await this.syncedPromise }

  destroy () { this.provider.destroy() }
}

function connectEditor (args, index) {
  const doc = new Y.Doc()
  doc.getText('content')
  doc.getMap('meta')
  if (args.kind === 'yws') return new MiniProvider(doc, `${args.url.replace(/\/$/, '')}/${args.doc}`, 'binary')
  if (args.kind === 'ours') {
    const tokens = args.tokens.split(',')
    const token = tokens[index % tokens.length]
    return new MiniProvider(doc, `${args.url}?prd=${encodeURIComponent(args.prd)}&token=${encodeURIComponent(token)}`, 'json')
  }
  return new HocuspocusEditor(doc, args.url, args.doc)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms) })
  ])
}

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const E = args.editors
  const connectStart = performance.now()
  const editors = []
  for (let i = 0; i < E; i++) editors.push(connectEditor(args, i))
  await withTimeout(Promise.all(editors.map(e => e.whenSynced())), 60000, 'connect and sync')
  const connectMs = performance.now() - connectStart
  log(`connected and synced ${E} editors in ${connectMs.toFixed(0)} ms`)

  const docs = editors.map(e => e.doc)
  const clients = docs.map(d => d.clientID)
  // pending[i]: edits of editor i in order, {target clock, t0, measured}; cursor[j][i]: next of i's edits peer j waits for
  const pending = docs.map(() => [])
  const cursor = docs.map(() => docs.map(() => 0))
  const samples = []
  const sampleStarts = [] // each sample's edit time (ms since the epoch): where in the run the tail falls
  let measuring = false
  let measuredEdits = 0
  let resolved = 0
  let expected = 0

  docs.forEach((doc, j) => {
    doc.on('update', () => {
      const now = performance.now()
      for (let i = 0; i < E; i++) {
        if (i === j) continue
        const state = Y.getState(doc.store, clients[i])
        const edits = pending[i]
        let k = cursor[j][i]
        while (k < edits.length && edits[k].target <= state) {
          if (edits[k].measured) { samples.push(now - edits[k].t0); sampleStarts.push(performance.timeOrigin + edits[k].t0); resolved++ }
          k++
        }
        cursor[j][i] = k
      }
    })
  })

  const rnd = (() => { let s = 42; return () => { s = (s * 1103515245 + 12345) & 0x7fffffff; return s / 0x7fffffff } })()
  const alphabet = 'abcdefghijklmnopqrstuvwxyz '
  const edit = (i) => {
    const text = docs[i].getText('content')
    const pos = Math.floor(rnd() * (text.length + 1))
    const t0 = performance.now()
    text.insert(pos, alphabet[Math.floor(rnd() * alphabet.length)])
    pending[i].push({ target: Y.getState(docs[i].store, clients[i]), t0, measured: measuring })
    if (measuring) { measuredEdits++; expected += E - 1 }
  }

  // Each editor types on its own clock, every 1000/rate ms, phases spread evenly.
  const period = 1000 / args.rate
  const totalSeconds = args.warmup + args.seconds
  const start = performance.now()
  const timers = []
  let stopAt = start + totalSeconds * 1000
  const running = editors.map((_e, i) => new Promise(resolve => {
    let k = 0
    const tick = () => {
      const due = start + (i / E) * period + k * period
      if (due >= stopAt) { resolve(); return }
      const delay = Math.max(0, due - performance.now())
      timers[i] = setTimeout(() => { edit(i); k++; tick() }, delay)
    }
    tick()
  }))
  setTimeout(() => { measuring = true; log('measuring') }, args.warmup * 1000)
  await Promise.all(running)
  stopAt = 0
  log(`typing done: ${measuredEdits} measured edits; draining`)
  const drainEnd = performance.now() + args.drain * 1000
  while (resolved < expected && performance.now() < drainEnd) await sleep(50)
  const drainMs = performance.now() - (start + totalSeconds * 1000)

  const contents = docs.map(d => d.getText('content').toString())
  const converged = contents.every(c => c === contents[0])
  const errors = editors.reduce((n, e) => n + (e.errors || 0), 0)
  for (const e of editors) e.destroy()
  const written = new Promise(resolve => process.stdout.write(JSON.stringify({
    kind: args.kind,
    editors: E,
    rate: args.rate,
    seconds: args.seconds,
    warmup: args.warmup,
    connect_ms: connectMs,
    edits: measuredEdits,
    expected,
    samples,
    sample_starts: sampleStarts,
    missing: expected - resolved,
    drain_ms: drainMs,
    converged,
    doc_length: contents[0].length,
    error_frames: errors
  }) + '\n', resolve)) // a pipe is written asynchronously: exiting before it is drained cuts the line
  await written
  process.exit(0)
}

main().catch(err => { log(err && err.stack ? err.stack : String(err)); process.exit(1) })
