// A Yjs provider for the PRD Tool WebSocket protocol (DESIGN 3.2), built on stock yjs + y-protocols + lib0.
//
// The protocol is y-websocket's, wrapped in JSON:
//   - every y-websocket message (sync step 1 / step 2 / update, awareness, query-awareness) travels as
//     the text frame {"action":"y","data":"<base64 of the message bytes>"};
//   - base64 longer than 98,304 characters is cut into parts sent as
//     {"action":"y","data":"<part>","chunk":{"id":"<id>","i":0,"n":3}} and joined in order by the receiver;
//   - the client speaks first (sync step 1); the server answers with step 2 and its own step 1, which the
//     client answers with step 2 (that is how edits made offline reach the server);
//   - a "y" frame may carry an "id"; the server then acknowledges it with {"action":"ack","id":...} once the
//     update is stored;
//   - the server also sends {"action":"error","code","message"}, {"action":"notice","type",...},
//     {"action":"pong","id"} (answer to {"action":"ping","id"}) and {"action":"ai",...} frames.
//
// Usage:
//   const doc = new Y.Doc()
//   const provider = new PrdProvider(doc, { url: 'ws://127.0.0.1:3000/ws', prd: prdId, token })
//   provider.on('synced', () => console.log(doc.getText('content').toString()))
//
// Events: 'status' ({status: 'connecting'|'connected'|'disconnected'|'denied'}), 'synced' (first step 2 of
// each connection), 'saved' (every update sent so far is acknowledged), 'error-frame' (error frames, and
// the gateway's own {"message": "Internal server error", ...}), 'notice', 'ai', 'warning' (frames this
// client could not use), 'connection-error' (the socket failed; it retries unless the upgrade was refused).

import { EventEmitter } from 'node:events'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as buffer from 'lib0/buffer'
import * as random from 'lib0/random'

export const MESSAGE_SYNC = 0
export const MESSAGE_AWARENESS = 1
export const MESSAGE_AUTH = 2
export const MESSAGE_QUERY_AWARENESS = 3

export const MAX_FRAME_DATA_CHARS = 98_304 // 96 KiB of base64 per frame (DESIGN 3.2)
export const MAX_CHUNKS = 170 // 170 x 98,304 base64 characters stay within 16 MiB
const CHUNK_ID = /^[A-Za-z0-9_-]{1,64}$/

/** Joins chunked "y" frames (the counterpart of protocol.py's ChunkAssembler). */
export class ChunkAssembler {
  constructor ({ timeoutMs = 30_000, maxSets = 8, maxBufferedChars = 2 * MAX_CHUNKS * MAX_FRAME_DATA_CHARS } = {}) {
    Object.assign(this, { timeoutMs, maxSets, maxBufferedChars })
    this.sets = new Map() // id -> { n, started, parts: Map<i, data>, chars }
    this.buffered = 0
  }

  drop (id) {
    const set = this.sets.get(id)
    if (set) {
      this.buffered -= set.chars
      this.sets.delete(id)
    }
  }

  /** Takes one part; returns the whole base64 text when the part completes its set, else null. Throws on bad input. */
  add (data, chunk, now = Date.now()) {
    for (const [id, set] of this.sets) if (now - set.started > this.timeoutMs) this.drop(id)
    const { id, i, n } = chunk ?? {}
    if (typeof id !== 'string' || !CHUNK_ID.test(id) || !Number.isInteger(i) || !Number.isInteger(n) ||
        i < 0 || i >= n || n > MAX_CHUNKS || data.length > MAX_FRAME_DATA_CHARS) {
      throw new Error('bad chunk metadata')
    }
    let set = this.sets.get(id)
    if (!set) {
      if (this.sets.size >= this.maxSets) throw new Error(`more than ${this.maxSets} incomplete chunk sets`)
      set = { n, started: now, parts: new Map(), chars: 0 }
      this.sets.set(id, set)
    } else if (set.n !== n) {
      this.drop(id)
      throw new Error(`chunk ${id} changed its part count`)
    }
    if (set.parts.has(i)) {
      if (set.parts.get(i) !== data) {
        this.drop(id)
        throw new Error(`chunk ${id} part ${i} arrived twice with different data`)
      }
      return null
    }
    if (this.buffered + data.length > this.maxBufferedChars) {
      this.drop(id)
      throw new Error('too many buffered chunk characters')
    }
    set.parts.set(i, data)
    set.chars += data.length
    this.buffered += data.length
    if (set.parts.size < set.n) return null
    this.drop(id)
    return Array.from({ length: n }, (_, k) => set.parts.get(k)).join('')
  }
}

/** The JSON text frames carrying one y-websocket message (one frame, or chunk frames). */
export const encodeFrames = (message, extra = {}) => {
  const b64 = buffer.toBase64(message)
  if (b64.length <= MAX_FRAME_DATA_CHARS) return [JSON.stringify({ action: 'y', data: b64, ...extra })]
  const n = Math.ceil(b64.length / MAX_FRAME_DATA_CHARS)
  if (n > MAX_CHUNKS) throw new Error(`a ${message.length}-byte message is too large to send`)
  const id = random.uuidv4()
  return Array.from({ length: n }, (_, i) => JSON.stringify({
    action: 'y',
    data: b64.slice(i * MAX_FRAME_DATA_CHARS, (i + 1) * MAX_FRAME_DATA_CHARS),
    chunk: { id, i, n },
    ...extra
  }))
}

// The ws package (it reports the HTTP status of a refused upgrade); elsewhere the platform's WebSocket.
const loadWebSocket = async () => {
  try {
    return (await import('ws')).WebSocket
  } catch {
    return globalThis.WebSocket
  }
}

export class PrdProvider extends EventEmitter {
  /**
   * @param {Y.Doc} doc
   * @param {object} opts
   * @param {string} opts.url          the WebSocket endpoint, e.g. ws://127.0.0.1:3000/ws
   * @param {string} opts.prd          the PRD id
   * @param {string | (() => string | Promise<string>)} opts.token  an access token, or a function giving a fresh one
   * @param {boolean} [opts.awareness=true]  keep an Awareness (presence) and exchange it
   * @param {any} [opts.WebSocketImpl] a WHATWG-style WebSocket class (default: the ws package, else the global one)
   * @param {boolean} [opts.connect=true]
   * @param {number} [opts.maxBackoffMs=10000]
   * @param {number} [opts.pingIntervalMs=60000] pings keep API Gateway's 10-minute idle timeout away; a ping
   *   unanswered (no frame at all) by the next one means the connection is dead: reconnect
   */
  constructor (doc, { url, prd, token, awareness = true, WebSocketImpl, connect = true,
    maxBackoffMs = 10_000, pingIntervalMs = 60_000 } = {}) {
    super()
    Object.assign(this, { doc, url, prd, token, WebSocketImpl, maxBackoffMs, pingIntervalMs })
    this.awareness = awareness ? new awarenessProtocol.Awareness(doc) : null
    this.ws = null
    this.status = 'disconnected'
    this.synced = false
    this.shouldConnect = false
    this.attempts = 0 // failed attempts since the last successful sync, for the backoff
    this.pending = new Set() // ids of update frames not yet acknowledged on this connection
    this.nextId = 1
    this.assembler = new ChunkAssembler()
    this._retryTimer = null
    this._pingTimer = null
    this._heardSincePing = true

    this._onDocUpdate = (update, origin) => {
      if (origin !== this) this._sendUpdate(update) // remote updates are applied with origin = this
    }
    this._onAwarenessUpdate = ({ added, updated, removed }) => {
      const mine = added.concat(updated, removed).includes(doc.clientID)
      if (mine) this._send(this._awarenessMessage([doc.clientID]))
    }
    doc.on('update', this._onDocUpdate)
    this.awareness?.on('update', this._onAwarenessUpdate)
    if (connect) this.connect()
  }

  /** Connects (and keeps reconnecting with backoff until disconnect() or destroy()). */
  connect () {
    this.shouldConnect = true
    if (!this.ws && !this._retryTimer && this.status !== 'connecting') this._open()
  }

  /** Closes the socket without saying goodbye (like losing the network); edits keep accumulating locally. */
  disconnect () {
    this.shouldConnect = false
    clearTimeout(this._retryTimer)
    this._retryTimer = null
    const ws = this.ws
    if (ws) {
      this._closed()
      ws.close(1000)
    }
  }

  /** Says goodbye (removes this client's presence), closes, and detaches from the doc. */
  destroy () {
    if (this.awareness && this._isOpen()) {
      awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'destroy') // sent by the handler
    }
    this.disconnect()
    this.doc.off('update', this._onDocUpdate)
    this.awareness?.off('update', this._onAwarenessUpdate)
    this.awareness?.destroy()
  }

  async _open () {
    this._setStatus('connecting')
    let ws
    try {
      const token = typeof this.token === 'function' ? await this.token() : this.token
      const WebSocketImpl = this.WebSocketImpl ?? await loadWebSocket()
      if (!this.shouldConnect) return this._setStatus('disconnected') // disconnect() while we waited
      const query = new URLSearchParams({ prd: this.prd, token })
      ws = this.ws = new WebSocketImpl(`${this.url}?${query}`)
    } catch (error) {
      this.emit('connection-error', error)
      this._setStatus('disconnected')
      return this._retry()
    }
    let refused = null
    ws.onopen = () => {
      if (this.ws !== ws) return
      this._setStatus('connected')
      this._send(this._syncStep1())
      if (this.awareness?.getLocalState() != null) {
        // A new clock, so that peers which saw us leave accept the state again; the handler sends it.
        this.awareness.setLocalState(this.awareness.getLocalState())
      }
      if (this.awareness) this._send(encoding.encode(e => encoding.writeVarUint(e, MESSAGE_QUERY_AWARENESS)))
      this._heardSincePing = true
      this._pingTimer = setInterval(() => this._ping(), this.pingIntervalMs)
    }
    ws.onmessage = event => {
      if (this.ws !== ws) return
      this._heardSincePing = true
      this._onFrame(String(event.data))
    }
    ws.onerror = event => {
      // ws reports a refused upgrade as "Unexpected server response: 401"; 401/403 will not get better by retrying
      const status = /Unexpected server response: (\d+)/.exec(event.message ?? '')?.[1]
      if (status === '401' || status === '403') refused = Number(status)
      if (this.ws === ws) this.emit('connection-error', event.error ?? new Error(event.message ?? 'WebSocket error'))
    }
    ws.onclose = () => {
      if (this.ws !== ws) return // disconnect() already cleaned up
      this._closed(refused)
      this._retry()
    }
  }

  _closed (refused = null) {
    this.ws = null
    clearInterval(this._pingTimer)
    this.synced = false
    this.pending.clear() // not lost: the next sync exchange uploads whatever the server lacks
    this.assembler = new ChunkAssembler() // chunk sets do not span connections
    if (this.awareness) {
      // Forget the peers' presence (and their clocks, so that their next announcement is accepted).
      const peers = [...this.awareness.getStates().keys()].filter(id => id !== this.doc.clientID)
      awarenessProtocol.removeAwarenessStates(this.awareness, peers, this)
      peers.forEach(id => this.awareness.meta.delete(id))
    }
    if (refused) this.shouldConnect = false
    this._setStatus(refused ? 'denied' : 'disconnected', refused ? { httpStatus: refused } : {})
  }

  _ping () {
    if (!this._heardSincePing) { // a silent, half-open connection: drop it and start over
      const ws = this.ws
      this._closed()
      ws?.terminate ? ws.terminate() : ws?.close()
      return this._retry()
    }
    this._heardSincePing = false
    this._sendJson({ action: 'ping', id: this.nextId++ })
  }

  _retry () {
    if (!this.shouldConnect) return
    // Exponential backoff with jitter: 0.5-1 x min(max, 250 ms x 2^attempts).
    const delay = Math.min(this.maxBackoffMs, 250 * 2 ** this.attempts++) * (0.5 + Math.random() / 2)
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null
      if (this.shouldConnect) this._open()
    }, delay)
  }

  _setStatus (status, detail = {}) {
    this.status = status
    this.emit('status', { status, ...detail })
  }

  _onFrame (text) {
    let frame
    try {
      frame = JSON.parse(text)
    } catch {
      return this.emit('warning', new Error('a frame that is not JSON'))
    }
    switch (frame?.action) {
      case 'y': {
        let b64 = frame.data
        if (typeof b64 !== 'string') return this.emit('warning', new Error('a "y" frame without data'))
        if (frame.chunk !== undefined) {
          try {
            b64 = this.assembler.add(b64, frame.chunk)
          } catch (error) {
            return this.emit('warning', error)
          }
          if (b64 === null) return // more parts to come
        }
        try {
          this._onMessage(buffer.fromBase64(b64))
        } catch (error) {
          this.emit('warning', error)
        }
        return
      }
      case 'ack':
        if (this.pending.delete(frame.id) && this.pending.size === 0) this.emit('saved')
        return
      case 'error': return this.emit('error-frame', frame)
      case 'notice':
        if (frame.type === 'peer-left' && Array.isArray(frame.clients)) this._peerLeft(frame.clients)
        return this.emit('notice', frame)
      case 'ai': return this.emit('ai', frame)
      case 'pong': return
      default:
        // API Gateway's own answer when a route fails: {"message": "Internal server error", "connectionId", ...}
        if (frame?.message !== undefined) return this.emit('error-frame', { code: 'gateway', ...frame })
        this.emit('warning', new Error(`an unknown frame: ${text.slice(0, 100)}`))
    }
  }

  _onMessage (bytes) {
    const decoder = decoding.createDecoder(bytes)
    const type = decoding.readVarUint(decoder)
    if (type === MESSAGE_SYNC) {
      const reply = encoding.createEncoder()
      encoding.writeVarUint(reply, MESSAGE_SYNC)
      // Answers step 1 with step 2 (into `reply`); applies step 2 and updates with this provider as origin.
      const kind = syncProtocol.readSyncMessage(decoder, reply, this.doc, this, error => this.emit('warning', error))
      if (encoding.length(reply) > 1) this._sendTracked(encoding.toUint8Array(reply))
      if (kind === syncProtocol.messageYjsSyncStep2 && !this.synced) {
        this.synced = true
        this.attempts = 0
        this.emit('synced')
      }
    } else if (type === MESSAGE_AWARENESS && this.awareness) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this)
    } else if (type === MESSAGE_QUERY_AWARENESS && this.awareness?.getLocalState() != null) {
      this._send(this._awarenessMessage([this.doc.clientID]))
    } else if (type === MESSAGE_AUTH) { // y-websocket's "permission denied" (our server uses error frames instead)
      decoding.readVarUint(decoder)
      this.emit('error-frame', { action: 'error', code: 'permission_denied', message: decoding.readVarString(decoder) })
    }
  }

  /**
   * A peer's connection closed. The server also sends an awareness removal, but at the last clock it
   * recorded (it records at most once a second), which y-protocols ignores when the peer's state moved on
   * since; so drop those clients here. Their clocks are kept: only a newer announcement brings them back.
   * If one of them is us (we reconnected before the old connection's $disconnect ran), announce again.
   */
  _peerLeft (clients) {
    if (!this.awareness) return
    const gone = clients.filter(id => id !== this.doc.clientID && this.awareness.states.has(id))
    if (gone.length > 0) awarenessProtocol.removeAwarenessStates(this.awareness, gone, this)
    if (clients.includes(this.doc.clientID) && this.awareness.getLocalState() != null) {
      this.awareness.setLocalState(this.awareness.getLocalState())
    }
  }

  _syncStep1 () {
    return encoding.encode(e => {
      encoding.writeVarUint(e, MESSAGE_SYNC)
      syncProtocol.writeSyncStep1(e, this.doc)
    })
  }

  _awarenessMessage (clients) {
    return encoding.encode(e => {
      encoding.writeVarUint(e, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients))
    })
  }

  _sendUpdate (update) {
    this._sendTracked(encoding.encode(e => {
      encoding.writeVarUint(e, MESSAGE_SYNC)
      syncProtocol.writeUpdate(e, update)
    }))
  }

  /** Sends a document update (or step 2) with an id, so the server acknowledges it once stored. */
  _sendTracked (message) {
    if (!this._isOpen()) return // offline: the next sync exchange uploads it
    const id = this.nextId++
    this.pending.add(id)
    this._send(message, { id })
  }

  _send (message, extra = {}) {
    if (!this._isOpen()) return
    let frames
    try {
      frames = encodeFrames(message, extra)
    } catch (error) {
      return this.emit('warning', error)
    }
    for (const frame of frames) this.ws.send(frame)
  }

  _sendJson (obj) {
    if (this._isOpen()) this.ws.send(JSON.stringify(obj))
  }

  _isOpen () {
    return this.ws !== null && this.ws.readyState === 1 // OPEN
  }
}

export { Y }
