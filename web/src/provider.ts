// The browser's Yjs provider for the PRD Tool WebSocket protocol (DESIGN 3.2, docs/protocol.md).
// A port of scripts/node-yclient/provider.mjs to the platform WebSocket (no node:events), with
// resend of unacknowledged updates and an access check when an upgrade is refused.
//
//   - every y-websocket message (sync step 1 / step 2 / update, awareness, query-awareness) travels
//     as the text frame {"action":"y","data":"<base64 of the exact y-protocols bytes>"};
//   - base64 longer than 98,304 characters is cut into {"action":"y","data":part,"chunk":{id,i,n}}
//     frames, and such frames from the server are joined before decoding;
//   - on every (re)connection the client sends sync step 1 and answers the server's step 1 with its
//     step 2, so edits made offline are uploaded (the server stores each update once);
//   - document updates carry an "id"; the server answers {"action":"ack","id"} once stored. Updates
//     not acknowledged stay in `unacked` and can be resent (resendUnacked), and a reconnect resyncs.
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { toBase64, fromBase64 } from 'lib0/buffer'
import { sanitizeAwarenessUpdate } from './peers'

export const MESSAGE_SYNC = 0
export const MESSAGE_AWARENESS = 1
export const MESSAGE_AUTH = 2
export const MESSAGE_QUERY_AWARENESS = 3
export const MAX_FRAME_DATA_CHARS = 98_304
export const MAX_CHUNKS = 170
const CHUNK_ID = /^[A-Za-z0-9_-]{1,64}$/

export type ProviderStatus = 'connecting' | 'connected' | 'disconnected' | 'denied'
export type AccessCheck = 'ok' | 'unauthorized' | 'forbidden' | 'unknown'

export interface ChunkInfo { id: string, i: number, n: number }
export interface Frame { action?: string, [key: string]: unknown }

/** Joins chunked "y" frames (the counterpart of the server's chunk assembler). */
export class ChunkAssembler {
  private sets = new Map<string, { n: number, started: number, parts: Map<number, string>, chars: number }>()
  private buffered = 0

  constructor (private readonly timeoutMs = 60_000, private readonly maxSets = 8,
    private readonly maxBufferedChars = 2 * MAX_CHUNKS * MAX_FRAME_DATA_CHARS) {}

  private drop (id: string): void {
    const set = this.sets.get(id)
    if (set !== undefined) {
      this.buffered -= set.chars
      this.sets.delete(id)
    }
  }

  /** Takes one part; returns the whole base64 text once its set is complete, else null. Throws on bad input. */
  add (data: string, chunk: unknown, now = Date.now()): string | null {
    for (const [id, set] of this.sets) if (now - set.started > this.timeoutMs) this.drop(id)
    const { id, i, n } = (chunk ?? {}) as Partial<ChunkInfo>
    if (typeof id !== 'string' || !CHUNK_ID.test(id) || !Number.isInteger(i) || !Number.isInteger(n) ||
        (i as number) < 0 || (i as number) >= (n as number) || (n as number) > MAX_CHUNKS ||
        data.length > MAX_FRAME_DATA_CHARS) {
      throw new Error('bad chunk metadata')
    }
    let set = this.sets.get(id)
    if (set === undefined) {
      if (this.sets.size >= this.maxSets) throw new Error(`more than ${this.maxSets} incomplete chunk sets`)
      set = { n: n as number, started: now, parts: new Map(), chars: 0 }
      this.sets.set(id, set)
    } else if (set.n !== n) {
      this.drop(id)
      throw new Error(`chunk ${id} changed its part count`)
    }
    if (set.parts.has(i as number)) return null // a duplicate part
    if (this.buffered + data.length > this.maxBufferedChars) {
      this.drop(id)
      throw new Error('too many buffered chunk characters')
    }
    set.parts.set(i as number, data)
    set.chars += data.length
    this.buffered += data.length
    if (set.parts.size < set.n) return null
    this.drop(id)
    return Array.from({ length: set.n }, (_, k) => set.parts.get(k)).join('')
  }
}

let chunkCounter = 0
const chunkId = (): string => `c${Date.now().toString(36)}${(chunkCounter++).toString(36)}${Math.random().toString(36).slice(2, 8)}`

/** The JSON text frames carrying one y-websocket message: one frame, or chunk frames of ≤ 98,304 characters. */
export function encodeFrames (message: Uint8Array, extra: Record<string, unknown> = {}): string[] {
  const b64 = toBase64(message)
  if (b64.length <= MAX_FRAME_DATA_CHARS) return [JSON.stringify({ action: 'y', data: b64, ...extra })]
  const n = Math.ceil(b64.length / MAX_FRAME_DATA_CHARS)
  if (n > MAX_CHUNKS) throw new Error(`a ${message.length}-byte message is too large to send`)
  const id = chunkId()
  return Array.from({ length: n }, (_, i) => JSON.stringify({
    action: 'y',
    data: b64.slice(i * MAX_FRAME_DATA_CHARS, (i + 1) * MAX_FRAME_DATA_CHARS),
    chunk: { id, i, n },
    ...extra
  }))
}

/** Exponential backoff with jitter: 0.5–1 × min(max, base × 2^attempt). */
export function backoffDelay (attempt: number, baseMs = 250, maxMs = 10_000, random = Math.random): number {
  return Math.min(maxMs, baseMs * 2 ** attempt) * (0.5 + random() / 2)
}

type Listener = (detail: any) => void

/** A few named events, without node:events (works in browsers and in Vitest). */
class Emitter {
  private listeners = new Map<string, Set<Listener>>()
  on (name: string, fn: Listener): () => void {
    let set = this.listeners.get(name)
    if (set === undefined) this.listeners.set(name, set = new Set())
    set.add(fn)
    return () => set.delete(fn)
  }

  protected emit (name: string, detail?: unknown): void {
    for (const fn of [...(this.listeners.get(name) ?? [])]) fn(detail)
  }
}

export interface WebSocketLike {
  readyState: number
  send: (data: string) => void
  close: (code?: number) => void
  onopen: ((ev: any) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onerror: ((ev: any) => void) | null
  onclose: ((ev: any) => void) | null
}

export interface ProviderOptions {
  /** The WebSocket endpoint (e.g. ws://127.0.0.1:3000/ws), or a function giving it. */
  url: string | (() => string | Promise<string>)
  prd: string
  /** The access token, or a function giving a fresh one (called before every connection attempt). */
  token: string | (() => string | Promise<string>)
  /** After a connection fails before opening: may we still read the PRD? 'unauthorized'/'forbidden' stop retrying. */
  checkAccess?: () => Promise<AccessCheck>
  WebSocketImpl?: new (url: string) => WebSocketLike
  connect?: boolean
  awareness?: boolean
  baseBackoffMs?: number
  maxBackoffMs?: number
  pingIntervalMs?: number
  /** Our presence is sent at most this often (default 100 ms). */
  awarenessThrottleMs?: number
  /** A remote update that cannot be applied yet (its predecessor never arrived: a relay the server
   * could not deliver) triggers a sync step 1 after this delay, fetching what is missing (default 1 s). */
  gapRepairMs?: number
  random?: () => number
}

/**
 * Events: 'status' ({status, reason?}), 'synced' (the sync exchange of a connection is complete: the
 * server's step 2 is applied and our step 2 sent), 'acked' (every update sent is acknowledged),
 * 'unacked' (number of unacknowledged updates changed), 'save-failed' (an update of ours was refused or
 * failed to store), 'error-frame', 'notice', 'ai', 'warning'.
 */
export class PrdProvider extends Emitter {
  readonly doc: Y.Doc
  readonly awareness: awarenessProtocol.Awareness | null
  status: ProviderStatus = 'disconnected'
  synced = false
  /** Updates (and step 2 replies) sent but not yet acknowledged, by frame id. */
  readonly unacked = new Map<number, Uint8Array>()
  private ws: WebSocketLike | null = null
  private shouldConnect = false
  private attempts = 0
  private nextId = 1
  private assembler = new ChunkAssembler()
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private pingTimer: ReturnType<typeof setInterval> | null = null
  private heardSincePing = true
  private awarenessTimer: ReturnType<typeof setTimeout> | null = null
  private lastAwarenessSent = 0
  private gotStep2 = false
  private sentStep2 = false
  private gapTimer: ReturnType<typeof setTimeout> | null = null
  private readonly opts: Required<Pick<ProviderOptions, 'baseBackoffMs' | 'maxBackoffMs' | 'pingIntervalMs' | 'awarenessThrottleMs' | 'gapRepairMs' | 'random'>> & ProviderOptions

  constructor (doc: Y.Doc, opts: ProviderOptions) {
    super()
    this.doc = doc
    this.opts = { baseBackoffMs: 250, maxBackoffMs: 10_000, pingIntervalMs: 60_000, awarenessThrottleMs: 100, gapRepairMs: 1000, random: Math.random, ...opts }
    this.awareness = opts.awareness === false ? null : new awarenessProtocol.Awareness(doc)
    doc.on('update', this.onDocUpdate)
    this.awareness?.on('update', this.onAwarenessUpdate)
    if (opts.connect !== false) this.connect()
  }

  get connected (): boolean { return this.isOpen() }

  private readonly onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin !== this) this.sendTracked(syncMessage(e => syncProtocol.writeUpdate(e, update)))
  }

  /**
   * Our presence (cursor) changes with every keystroke: it is sent at most every `awarenessThrottleMs`
   * (the latest state, trailing), so typing costs about one frame a keystroke, within the server's
   * per-connection frame rate (docs/protocol.md).
   */
  private readonly onAwarenessUpdate = ({ added, updated, removed }: { added: number[], updated: number[], removed: number[] }): void => {
    if (!added.concat(updated, removed).includes(this.doc.clientID) || this.awarenessTimer !== null) return
    const wait = this.lastAwarenessSent + this.opts.awarenessThrottleMs - Date.now()
    if (wait <= 0) return this.sendAwareness()
    this.awarenessTimer = setTimeout(() => this.sendAwareness(), wait)
  }

  private sendAwareness (): void {
    if (this.awarenessTimer !== null) clearTimeout(this.awarenessTimer)
    this.awarenessTimer = null
    if (this.awareness === null || !this.isOpen()) return
    this.lastAwarenessSent = Date.now()
    this.send(this.awarenessMessage([this.doc.clientID]))
  }

  /** Connects, and keeps reconnecting with backoff until disconnect() or destroy(). */
  connect (): void {
    this.shouldConnect = true
    if (this.ws === null && this.retryTimer === null && this.status !== 'connecting') void this.open()
  }

  /** Closes the socket (like losing the network); edits keep accumulating and upload on the next connect. */
  disconnect (): void {
    this.shouldConnect = false
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
    const ws = this.ws
    if (ws !== null) {
      this.closed()
      ws.close(1000)
    }
  }

  /** Clean stop (logout, leaving the page): says goodbye to peers, closes, detaches from the doc. */
  destroy (): void {
    if (this.awareness !== null && this.isOpen()) {
      awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'destroy')
      this.sendAwareness() // the goodbye goes out now, not after the throttle
    }
    this.disconnect()
    this.doc.off('update', this.onDocUpdate)
    this.awareness?.off('update', this.onAwarenessUpdate)
    this.awareness?.destroy()
  }

  /**
   * Sends every unacknowledged update again, merged into one update (one frame, or one chunk set:
   * a backlog must not trip the server's frame rate limit). Its ack settles all of them; the server
   * stores what it already has only once. Returns how many updates were pending.
   */
  resendUnacked (): number {
    if (!this.isOpen() || this.unacked.size === 0) return 0
    const pending = this.unacked.size
    const updates = [...this.unacked.values()].map(message => {
      const decoder = decoding.createDecoder(message)
      decoding.readVarUint(decoder) // MESSAGE_SYNC
      decoding.readVarUint(decoder) // step 2 or update: both carry an update
      return decoding.readVarUint8Array(decoder)
    })
    this.unacked.clear()
    this.sendTracked(syncMessage(e => syncProtocol.writeUpdate(e, Y.mergeUpdates(updates))))
    return pending
  }

  /** Drops this connection and starts a new one at once (a full resync). */
  reconnect (): void {
    const ws = this.ws
    if (ws !== null) {
      this.closed()
      ws.close(4000)
    }
    this.attempts = 0
    this.shouldConnect = true
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
    void this.open()
  }

  private async open (): Promise<void> {
    this.setStatus('connecting')
    let ws: WebSocketLike
    try {
      const token = typeof this.opts.token === 'function' ? await this.opts.token() : this.opts.token
      const url = typeof this.opts.url === 'function' ? await this.opts.url() : this.opts.url
      if (!this.shouldConnect) return this.setStatus('disconnected')
      const Impl = this.opts.WebSocketImpl ?? (globalThis.WebSocket as unknown as new (url: string) => WebSocketLike)
      ws = this.ws = new Impl(`${url}?${new URLSearchParams({ prd: this.opts.prd, token }).toString()}`)
    } catch (error) {
      this.emit('warning', error)
      this.setStatus('disconnected')
      return this.retry()
    }
    let opened = false
    ws.onopen = () => {
      if (this.ws !== ws) return
      opened = true
      this.gotStep2 = this.sentStep2 = false
      this.setStatus('connected')
      this.send(syncMessage(e => syncProtocol.writeSyncStep1(e, this.doc)))
      const local = this.awareness?.getLocalState()
      if (this.awareness !== null && local != null) this.awareness.setLocalState(local) // a new clock: peers accept it again
      if (this.awareness !== null) this.send(encoding.encode(e => encoding.writeVarUint(e, MESSAGE_QUERY_AWARENESS)))
      this.heardSincePing = true
      this.pingTimer = setInterval(() => this.ping(), this.opts.pingIntervalMs)
    }
    ws.onmessage = event => {
      if (this.ws !== ws) return
      this.heardSincePing = true
      this.onFrame(String(event.data))
    }
    ws.onclose = () => {
      if (this.ws !== ws) return
      this.closed()
      if (!opened && this.opts.checkAccess !== undefined) {
        // Browsers hide the HTTP status of a refused upgrade: ask the HTTP API whether we may still read.
        void this.opts.checkAccess().then(access => {
          if (access === 'unauthorized' || access === 'forbidden') {
            this.deny(access)
          } else {
            this.retry()
          }
        }, () => this.retry())
        return
      }
      this.retry()
    }
  }

  private closed (): void {
    this.ws = null
    if (this.gapTimer !== null) clearTimeout(this.gapTimer) // the next connection's sync covers it
    this.gapTimer = null
    if (this.pingTimer !== null) clearInterval(this.pingTimer)
    this.pingTimer = null
    if (this.awarenessTimer !== null) clearTimeout(this.awarenessTimer)
    this.awarenessTimer = null
    this.synced = false
    this.assembler = new ChunkAssembler()
    // Acks are per connection; what was not acknowledged is uploaded again by the next sync exchange.
    if (this.unacked.size > 0) {
      this.unacked.clear()
      this.emit('unacked', 0)
    }
    if (this.awareness !== null) {
      const peers = [...this.awareness.getStates().keys()].filter(id => id !== this.doc.clientID)
      awarenessProtocol.removeAwarenessStates(this.awareness, peers, this)
      peers.forEach(id => this.awareness?.meta.delete(id))
    }
    this.setStatus('disconnected')
  }

  private ping (): void {
    if (!this.heardSincePing) { // silent, half-open connection: start over
      const ws = this.ws
      this.closed()
      ws?.close()
      return this.retry()
    }
    this.heardSincePing = false
    if (this.isOpen()) this.ws?.send(JSON.stringify({ action: 'ping', id: this.nextId++ }))
  }

  private retry (): void {
    if (!this.shouldConnect || this.retryTimer !== null) return
    const delay = backoffDelay(this.attempts++, this.opts.baseBackoffMs, this.opts.maxBackoffMs, this.opts.random)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (this.shouldConnect) void this.open()
    }, delay)
  }

  private setStatus (status: ProviderStatus, detail: Record<string, unknown> = {}): void {
    this.status = status
    this.emit('status', { status, ...detail })
  }

  private onFrame (text: string): void {
    let frame: Frame
    try {
      frame = JSON.parse(text)
    } catch {
      return this.emit('warning', new Error('a frame that is not JSON'))
    }
    switch (frame?.action) {
      case 'y': {
        let b64: string | null = typeof frame.data === 'string' ? frame.data : null
        if (b64 === null) return this.emit('warning', new Error('a "y" frame without data'))
        if (frame.chunk !== undefined) {
          try {
            b64 = this.assembler.add(b64, frame.chunk)
          } catch (error) {
            return this.emit('warning', error)
          }
          if (b64 === null) return
        }
        try {
          this.onMessage(fromBase64(b64))
        } catch (error) {
          this.emit('warning', error)
        }
        return
      }
      case 'ack':
        return this.settle(frame.id)
      case 'error':
        // One of our updates was refused or failed to store: it stays unacknowledged (resendUnacked retries it).
        if (typeof frame.id === 'number' && this.unacked.has(frame.id)) this.emit('save-failed', frame)
        return this.emit('error-frame', frame)
      case 'notice':
        if (frame.type === 'peer-left' && Array.isArray(frame.clients)) this.peerLeft(frame.clients as number[])
        this.emit('notice', frame)
        // The server closes the connection after these: do not come back. (After 'session-expired'
        // and a lowered 'role-changed' it closes too, and a reconnect with a fresh token is right.)
        if (frame.type === 'session-ended') this.deny('unauthorized')
        if (frame.type === 'access-revoked' || frame.type === 'prd-deleted') this.deny('forbidden')
        return
      case 'ai': return this.emit('ai', frame)
      case 'pong': return
      default:
        if (frame?.message !== undefined) { // API Gateway's own answer when a route fails
          if (this.unacked.size > 0) this.emit('save-failed', { code: 'gateway', ...frame })
          return this.emit('error-frame', { code: 'gateway', ...frame })
        }
        this.emit('warning', new Error(`an unknown frame: ${text.slice(0, 100)}`))
    }
  }

  private deny (reason: 'unauthorized' | 'forbidden'): void {
    this.disconnect()
    this.setStatus('denied', { reason })
  }

  private settle (id: unknown): void {
    if (typeof id !== 'number' || !this.unacked.delete(id)) return
    this.emit('unacked', this.unacked.size)
    if (this.unacked.size === 0) this.emit('acked')
  }

  private onMessage (bytes: Uint8Array): void {
    const decoder = decoding.createDecoder(bytes)
    const type = decoding.readVarUint(decoder)
    if (type === MESSAGE_SYNC) {
      const reply = encoding.createEncoder()
      encoding.writeVarUint(reply, MESSAGE_SYNC)
      const kind = syncProtocol.readSyncMessage(decoder, reply, this.doc, this)
      if (encoding.length(reply) > 1) { // our step 2, answering the server's step 1
        this.sendTracked(encoding.toUint8Array(reply))
        this.sentStep2 = true
      }
      if (kind === syncProtocol.messageYjsSyncStep2) this.gotStep2 = true
      if (!this.synced && this.gotStep2 && this.sentStep2) {
        this.synced = true
        this.attempts = 0
        this.emit('synced')
      }
      if (kind !== syncProtocol.messageYjsSyncStep1) this.repairGaps()
    } else if (type === MESSAGE_AWARENESS && this.awareness !== null) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, sanitizeAwarenessUpdate(decoding.readVarUint8Array(decoder)), this)
    } else if (type === MESSAGE_QUERY_AWARENESS && this.awareness?.getLocalState() != null) {
      this.send(this.awarenessMessage([this.doc.clientID]))
    } else if (type === MESSAGE_AUTH) {
      decoding.readVarUint(decoder)
      this.emit('error-frame', { action: 'error', code: 'permission_denied', message: decoding.readVarString(decoder) })
    }
  }

  /**
   * Relays are best effort: the server stores every update before relaying it, but a post that fails
   * leaves this client without that update, and Yjs parks every later update of the same author as
   * pending. When that happens, ask the server (sync step 1) for what is missing.
   */
  private repairGaps (): void {
    const store = this.doc.store
    if ((store.pendingStructs === null && store.pendingDs === null) || this.gapTimer !== null) return
    this.gapTimer = setTimeout(() => {
      this.gapTimer = null
      const stillMissing = this.doc.store.pendingStructs !== null || this.doc.store.pendingDs !== null
      if (stillMissing && this.isOpen()) {
        this.emit('warning', new Error('missed an update: resyncing'))
        this.send(syncMessage(e => syncProtocol.writeSyncStep1(e, this.doc)))
      }
    }, this.opts.gapRepairMs)
  }

  /** A peer's connection closed: drop its presence (the server's removal may carry a stale clock). */
  private peerLeft (clients: number[]): void {
    if (this.awareness === null) return
    const gone = clients.filter(id => id !== this.doc.clientID && this.awareness?.states.has(id))
    if (gone.length > 0) awarenessProtocol.removeAwarenessStates(this.awareness, gone, this)
    const local = this.awareness.getLocalState()
    if (clients.includes(this.doc.clientID) && local != null) this.awareness.setLocalState(local)
  }

  private awarenessMessage (clients: number[]): Uint8Array {
    return encoding.encode(e => {
      encoding.writeVarUint(e, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(this.awareness as awarenessProtocol.Awareness, clients))
    })
  }

  /** A document update (or step 2) sent with an id, kept until the server acknowledges it. */
  private sendTracked (message: Uint8Array): void {
    if (!this.isOpen()) return // offline: the next sync exchange uploads it
    const id = this.nextId++
    this.unacked.set(id, message)
    this.emit('unacked', this.unacked.size)
    this.send(message, { id })
  }

  private send (message: Uint8Array, extra: Record<string, unknown> = {}): void {
    if (!this.isOpen()) return
    let frames: string[]
    try {
      frames = encodeFrames(message, extra)
    } catch (error) {
      return this.emit('warning', error)
    }
    for (const frame of frames) this.ws?.send(frame)
  }

  private isOpen (): boolean {
    return this.ws !== null && this.ws.readyState === 1
  }
}

function syncMessage (write: (e: encoding.Encoder) => void): Uint8Array {
  return encoding.encode(e => {
    encoding.writeVarUint(e, MESSAGE_SYNC)
    write(e)
  })
}
