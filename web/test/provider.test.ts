import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { fromBase64, toBase64 } from 'lib0/buffer'
import { userFor } from '../src/presence'
import {
  ChunkAssembler, MAX_FRAME_DATA_CHARS, MESSAGE_AWARENESS, MESSAGE_QUERY_AWARENESS, MESSAGE_SYNC,
  PrdProvider, backoffDelay, encodeFrames, type AccessCheck, type WebSocketLike
} from '../src/provider'

/** A WebSocket double: the test plays the server through `server`. */
class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = []
  readyState = 0
  sent: Array<Record<string, any>> = []
  onopen: ((ev: any) => void) | null = null
  onmessage: ((ev: { data: unknown }) => void) | null = null
  onerror: ((ev: any) => void) | null = null
  onclose: ((ev: any) => void) | null = null
  closedWith: number | undefined
  constructor (readonly url: string) { FakeSocket.all.push(this) }
  send (data: string): void { this.sent.push(JSON.parse(data)) }
  close (code?: number): void { this.closedWith = code; this.readyState = 3 }
  open (): void { this.readyState = 1; this.onopen?.({}) }
  drop (): void { this.readyState = 3; this.onclose?.({ code: 1006 }) }
  receive (frame: object): void { this.onmessage?.({ data: JSON.stringify(frame) }) }
  receiveMessage (message: Uint8Array): void { for (const f of encodeFrames(message)) this.onmessage?.({ data: f }) }
  /** The y-messages sent (chunks joined), with the frame's id. */
  messages (): Array<{ bytes: Uint8Array, id: unknown }> {
    const out: Array<{ bytes: Uint8Array, id: unknown }> = []
    const assembler = new ChunkAssembler()
    for (const frame of this.sent.filter(f => f.action === 'y')) {
      const b64 = frame.chunk !== undefined ? assembler.add(frame.data, frame.chunk) : frame.data
      if (b64 !== null) out.push({ bytes: fromBase64(b64), id: frame.id })
    }
    return out
  }
}

const last = (): FakeSocket => FakeSocket.all[FakeSocket.all.length - 1]

/** Plays the server's side of the exchange with a real Y.Doc (what shared/prdtool/collab does). */
function serve (socket: FakeSocket, serverDoc: Y.Doc, from = 0): number {
  let messages = socket.messages()
  for (let k = from; k < messages.length; k++, messages = socket.messages()) {
    const { bytes, id } = messages[k]
    const decoder = decoding.createDecoder(bytes)
    if (decoding.readVarUint(decoder) !== MESSAGE_SYNC) continue
    const reply = encoding.createEncoder()
    encoding.writeVarUint(reply, MESSAGE_SYNC)
    const kind = syncProtocol.readSyncMessage(decoder, reply, serverDoc, 'client')
    if (kind === syncProtocol.messageYjsSyncStep1) {
      socket.receiveMessage(encoding.toUint8Array(reply)) // step 2
      socket.receiveMessage(encoding.encode(e => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeSyncStep1(e, serverDoc) }))
    } else if (id !== undefined) {
      socket.receive({ action: 'ack', id })
    }
  }
  return messages.length
}

const syncKind = (bytes: Uint8Array): [number, number] => {
  const d = decoding.createDecoder(bytes)
  const type = decoding.readVarUint(d)
  return [type, type === MESSAGE_SYNC ? decoding.readVarUint(d) : -1]
}

function make (doc = new Y.Doc(), opts: Partial<ConstructorParameters<typeof PrdProvider>[1]> = {}): PrdProvider {
  return new PrdProvider(doc, { url: 'ws://test/ws', prd: 'p1', token: 'tok', WebSocketImpl: FakeSocket, random: () => 0, ...opts })
}

beforeEach(() => { FakeSocket.all = []; vi.useFakeTimers() })
afterEach(() => { vi.useRealTimers() })

describe('frames', () => {
  it('wraps the exact y-protocols bytes in base64 JSON', () => {
    const doc = new Y.Doc()
    doc.getText('content').insert(0, 'hello')
    const message = encoding.encode(e => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeSyncStep1(e, doc) })
    const [frame] = encodeFrames(message, { id: 7 })
    expect(JSON.parse(frame)).toEqual({ action: 'y', data: toBase64(message), id: 7 })
  })

  it('splits base64 longer than 98,304 characters and joins the parts in order', () => {
    const message = new Uint8Array(200_000).map((_, i) => (i * 7919) % 251)
    const frames = encodeFrames(message, { id: 3 }).map(f => JSON.parse(f))
    expect(frames.length).toBe(Math.ceil(toBase64(message).length / MAX_FRAME_DATA_CHARS))
    for (const f of frames) {
      expect(f.data.length).toBeLessThanOrEqual(MAX_FRAME_DATA_CHARS)
      expect(f.id).toBe(3)
      expect(f.chunk.n).toBe(frames.length)
    }
    const assembler = new ChunkAssembler()
    const reversed = [...frames].reverse()
    const results = reversed.map(f => assembler.add(f.data, f.chunk))
    expect(results.slice(0, -1).every(r => r === null)).toBe(true)
    expect(fromBase64(results[results.length - 1] as string)).toEqual(message)
  })

  it('rejects bad chunk metadata and a part count that changes', () => {
    const assembler = new ChunkAssembler()
    expect(() => assembler.add('AA', { id: 'bad id!', i: 0, n: 2 })).toThrow()
    expect(() => assembler.add('AA', { id: 'x', i: 2, n: 2 })).toThrow()
    expect(() => assembler.add('AA', { id: 'x', i: 0, n: 171 })).toThrow()
    expect(assembler.add('AA', { id: 'x', i: 0, n: 2 })).toBeNull()
    expect(() => assembler.add('AA', { id: 'x', i: 1, n: 3 })).toThrow()
  })

  it('drops an incomplete set after its timeout', () => {
    const assembler = new ChunkAssembler(1000)
    expect(assembler.add('AA', { id: 'x', i: 0, n: 2 }, 0)).toBeNull()
    expect(assembler.add('BB', { id: 'x', i: 1, n: 2 }, 5000)).toBeNull() // the first part was dropped
    expect(assembler.add('AA', { id: 'x', i: 0, n: 2 }, 5001)).toBe('AABB')
  })

  it('backs off exponentially with jitter, up to the maximum', () => {
    expect(backoffDelay(0, 250, 10_000, () => 0)).toBe(125)
    expect(backoffDelay(0, 250, 10_000, () => 1)).toBe(250)
    expect(backoffDelay(3, 250, 10_000, () => 1)).toBe(2000)
    expect(backoffDelay(20, 250, 10_000, () => 1)).toBe(10_000)
    expect(backoffDelay(20, 250, 10_000, () => 0)).toBe(5000)
  })
})

describe('PrdProvider', () => {
  it('connects with the PRD and token in the query, and opens with sync step 1 and a presence query', async () => {
    const doc = new Y.Doc()
    make(doc)
    await vi.advanceTimersByTimeAsync(0)
    const socket = last()
    expect(socket.url).toBe('ws://test/ws?prd=p1&token=tok')
    socket.open()
    const [step1, ...rest] = socket.messages()
    expect(step1.bytes).toEqual(encoding.encode(e => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeSyncStep1(e, doc) }))
    expect(step1.id).toBeUndefined()
    expect(rest.map(m => syncKind(m.bytes)[0])).toEqual([MESSAGE_AWARENESS, MESSAGE_QUERY_AWARENESS])
  })

  it('syncs both ways, is "synced" after answering the server, and "acked" once the server stores it', async () => {
    const doc = new Y.Doc()
    doc.getText('content').insert(0, 'local ')
    const serverDoc = new Y.Doc()
    serverDoc.getText('content').insert(0, 'server')
    const provider = make(doc)
    const events: string[] = []
    provider.on('synced', () => events.push('synced'))
    provider.on('acked', () => events.push('acked'))
    await vi.advanceTimersByTimeAsync(0)
    last().open()
    serve(last(), serverDoc)
    expect(provider.synced).toBe(true)
    expect(events).toEqual(['synced', 'acked']) // our step 2 was acknowledged
    expect(doc.getText('content').toString()).toBe(serverDoc.getText('content').toString())
    expect(serverDoc.getText('content').toString()).toContain('local ')
    const step2 = last().messages().find(m => syncKind(m.bytes)[1] === syncProtocol.messageYjsSyncStep2)
    expect(typeof step2?.id).toBe('number')
  })

  it('sends each local edit as an update with an id, tracks it until acknowledged, and can resend it', async () => {
    const doc = new Y.Doc()
    const serverDoc = new Y.Doc()
    const provider = make(doc)
    await vi.advanceTimersByTimeAsync(0)
    const socket = last()
    socket.open()
    let seen = serve(socket, serverDoc)
    doc.getText('content').insert(0, 'typed')
    const update = socket.messages().at(-1) as { bytes: Uint8Array, id: number }
    expect(syncKind(update.bytes)).toEqual([MESSAGE_SYNC, syncProtocol.messageYjsUpdate])
    expect(provider.unacked.size).toBe(1)
    doc.getText('content').insert(5, ' more')
    doc.getText('content').insert(10, ' and more')
    expect(provider.unacked.size).toBe(3)
    seen = socket.messages().length // as if the server never got these three
    // the backlog goes out again as ONE merged update, whose ack settles all three
    expect(provider.resendUnacked()).toBe(3)
    const resent = socket.messages().slice(seen)
    expect(resent).toHaveLength(1)
    expect(syncKind(resent[0].bytes)).toEqual([MESSAGE_SYNC, syncProtocol.messageYjsUpdate])
    expect(provider.unacked.size).toBe(1)
    serve(socket, serverDoc, seen)
    expect(provider.unacked.size).toBe(0)
    expect(serverDoc.getText('content').toString()).toBe('typed more and more')
  })

  it('fetches an update it missed (a relay that never arrived) with a sync step 1', async () => {
    const doc = new Y.Doc()
    const serverDoc = new Y.Doc()
    make(doc, { gapRepairMs: 1000 })
    await vi.advanceTimersByTimeAsync(0)
    const socket = last()
    socket.open()
    let seen = serve(socket, serverDoc)
    // Another author types twice; the server stores both, but only the second relay reaches us.
    const author = new Y.Doc()
    const updates: Uint8Array[] = []
    author.on('update', (u: Uint8Array) => updates.push(u))
    author.getText('content').insert(0, 'first ')
    author.getText('content').insert(6, 'second')
    updates.forEach(u => Y.applyUpdate(serverDoc, u))
    socket.receiveMessage(encoding.encode(e => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeUpdate(e, updates[1]) }))
    expect(doc.getText('content').toString()).toBe('') // parked: its predecessor is missing
    expect(socket.messages().length).toBe(seen)
    await vi.advanceTimersByTimeAsync(1000)
    const asked = socket.messages().slice(seen)
    expect(asked.map(m => syncKind(m.bytes))).toEqual([[MESSAGE_SYNC, syncProtocol.messageYjsSyncStep1]])
    seen = serve(socket, serverDoc, seen)
    expect(doc.getText('content').toString()).toBe('first second')
    await vi.advanceTimersByTimeAsync(5000)
    expect(socket.messages().slice(seen).filter(m => syncKind(m.bytes)[1] === syncProtocol.messageYjsSyncStep1)).toEqual([])
  })

  it('applies remote updates (also chunked) without sending them back', async () => {
    const doc = new Y.Doc()
    make(doc)
    await vi.advanceTimersByTimeAsync(0)
    const socket = last()
    socket.open()
    const remote = new Y.Doc()
    remote.getText('content').insert(0, 'x'.repeat(150_000))
    const message = encoding.encode(e => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeUpdate(e, Y.encodeStateAsUpdate(remote)) })
    expect(encodeFrames(message).length).toBeGreaterThan(1)
    const before = socket.sent.length
    socket.receiveMessage(message)
    expect(doc.getText('content').length).toBe(150_000)
    expect(socket.sent.length).toBe(before)
  })

  it('reconnects with backoff after losing the connection and uploads offline edits with the resync', async () => {
    const doc = new Y.Doc()
    const serverDoc = new Y.Doc()
    const provider = make(doc)
    const statuses: string[] = []
    provider.on('status', ({ status }: { status: string }) => statuses.push(status))
    await vi.advanceTimersByTimeAsync(0)
    last().open()
    serve(last(), serverDoc)
    last().drop()
    expect(provider.status).toBe('disconnected')
    doc.getText('content').insert(0, 'written offline') // not sent: no connection
    await vi.advanceTimersByTimeAsync(124)
    expect(FakeSocket.all.length).toBe(1)
    await vi.advanceTimersByTimeAsync(2) // 250 ms × 2^0 × (0.5 + 0/2) = 125 ms
    expect(FakeSocket.all.length).toBe(2)
    last().open()
    serve(last(), serverDoc)
    expect(serverDoc.getText('content').toString()).toBe('written offline')
    expect(statuses).toEqual(['connected', 'disconnected', 'connecting', 'connected'])
  })

  it('stops retrying when a refused upgrade turns out to be a lost session or lost access', async () => {
    for (const verdict of ['unauthorized', 'forbidden'] as AccessCheck[]) {
      FakeSocket.all = []
      const checkAccess = vi.fn(async () => verdict)
      const provider = make(new Y.Doc(), { checkAccess })
      const denied: unknown[] = []
      provider.on('status', (s: { status: string }) => { if (s.status === 'denied') denied.push(s) })
      await vi.advanceTimersByTimeAsync(0)
      last().drop() // closed before opening: the upgrade was refused
      await vi.advanceTimersByTimeAsync(60_000)
      expect(checkAccess).toHaveBeenCalledTimes(1)
      expect(denied).toEqual([{ status: 'denied', reason: verdict }])
      expect(FakeSocket.all.length).toBe(1)
    }
  })

  it('stops for good when the server ends the session or revokes access (notices before closing)', async () => {
    for (const [type, reason] of [['session-ended', 'unauthorized'], ['access-revoked', 'forbidden']]) {
      FakeSocket.all = []
      const provider = make(new Y.Doc())
      const statuses: unknown[] = []
      provider.on('status', s => statuses.push(s))
      await vi.advanceTimersByTimeAsync(0)
      last().open()
      last().receive({ action: 'notice', type, reason: 'revoked', prd: 'p1' })
      last().drop()
      await vi.advanceTimersByTimeAsync(60_000)
      expect(FakeSocket.all.length).toBe(1)
      expect(statuses.at(-1)).toEqual({ status: 'denied', reason })
    }
  })

  it('keeps retrying when the upgrade failed but access is fine (a network error)', async () => {
    const provider = make(new Y.Doc(), { checkAccess: async () => 'unknown' })
    await vi.advanceTimersByTimeAsync(0)
    last().drop()
    await vi.advanceTimersByTimeAsync(200)
    expect(FakeSocket.all.length).toBe(2)
    expect(provider.status).toBe('connecting')
  })

  it('asks for a fresh token on every attempt', async () => {
    let n = 0
    make(new Y.Doc(), { token: async () => `t${++n}` })
    await vi.advanceTimersByTimeAsync(0)
    last().drop()
    await vi.advanceTimersByTimeAsync(200)
    expect(FakeSocket.all.map(s => new URL(s.url).searchParams.get('token'))).toEqual(['t1', 't2'])
  })

  it('reports a refused update as a failed save and keeps it for a resend', async () => {
    const doc = new Y.Doc()
    const provider = make(doc)
    const failed: unknown[] = []
    provider.on('save-failed', f => failed.push(f))
    await vi.advanceTimersByTimeAsync(0)
    last().open()
    doc.getText('content').insert(0, 'a')
    const id = last().messages().at(-1)?.id
    last().receive({ action: 'error', code: 'internal_error', message: 'boom', id })
    expect(failed).toHaveLength(1)
    expect(provider.unacked.has(id as number)).toBe(true)
  })

  it('exchanges presence with y-protocols awareness messages', async () => {
    const doc = new Y.Doc()
    const provider = make(doc)
    await vi.advanceTimersByTimeAsync(0)
    last().open()
    provider.awareness?.setLocalStateField('user', { name: 'alice', color: '#000' })
    await vi.advanceTimersByTimeAsync(100)
    const mine = last().messages().filter(m => syncKind(m.bytes)[0] === MESSAGE_AWARENESS).at(-1)
    const peer = new awarenessProtocol.Awareness(new Y.Doc())
    const d = decoding.createDecoder(mine?.bytes as Uint8Array)
    decoding.readVarUint(d)
    awarenessProtocol.applyAwarenessUpdate(peer, decoding.readVarUint8Array(d), 'server')
    expect(peer.getStates().get(doc.clientID)).toEqual({ user: { name: 'alice', color: '#000' } })

    const bob = new awarenessProtocol.Awareness(new Y.Doc())
    bob.setLocalStateField('user', { name: 'bob' })
    last().receiveMessage(encoding.encode(e => {
      encoding.writeVarUint(e, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(bob, [bob.clientID]))
    }))
    // Peers' states are sanitised on receipt: a missing or unsafe colour becomes bob's palette colour.
    expect(provider.awareness?.getStates().get(bob.clientID)).toEqual({ user: userFor('bob') })
    last().receive({ action: 'notice', type: 'peer-left', username: 'bob', clients: [bob.clientID] })
    expect(provider.awareness?.getStates().has(bob.clientID)).toBe(false)
  })

  it('sends our presence at most every 100 ms, always the latest', async () => {
    const doc = new Y.Doc()
    const provider = make(doc)
    await vi.advanceTimersByTimeAsync(0)
    last().open()
    const count = (): number => last().messages().filter(m => syncKind(m.bytes)[0] === MESSAGE_AWARENESS).length
    await vi.advanceTimersByTimeAsync(1000)
    const before = count()
    for (let i = 0; i < 20; i++) provider.awareness?.setLocalStateField('cursor', i) // a burst of cursor moves
    expect(count()).toBe(before + 1) // the first at once
    await vi.advanceTimersByTimeAsync(100)
    expect(count()).toBe(before + 2) // then one with the latest state
    const latest = last().messages().filter(m => syncKind(m.bytes)[0] === MESSAGE_AWARENESS).at(-1) as { bytes: Uint8Array }
    const peer = new awarenessProtocol.Awareness(new Y.Doc())
    const d = decoding.createDecoder(latest.bytes)
    decoding.readVarUint(d)
    awarenessProtocol.applyAwarenessUpdate(peer, decoding.readVarUint8Array(d), 'server')
    expect(peer.getStates().get(doc.clientID)).toEqual({ cursor: 19 })
  })

  it('stops cleanly: says goodbye, closes, and never reconnects', async () => {
    const doc = new Y.Doc()
    const provider = make(doc)
    await vi.advanceTimersByTimeAsync(0)
    const socket = last()
    socket.open()
    provider.awareness?.setLocalStateField('user', { name: 'alice' })
    provider.destroy()
    const goodbye = socket.messages().at(-1) as { bytes: Uint8Array }
    expect(syncKind(goodbye.bytes)[0]).toBe(MESSAGE_AWARENESS)
    const d = decoding.createDecoder(goodbye.bytes)
    decoding.readVarUint(d)
    const peer = new awarenessProtocol.Awareness(new Y.Doc())
    peer.states.set(doc.clientID, { user: { name: 'alice' } })
    peer.meta.set(doc.clientID, { clock: 0, lastUpdated: 0 })
    awarenessProtocol.applyAwarenessUpdate(peer, decoding.readVarUint8Array(d), 'server')
    expect(peer.getStates().has(doc.clientID)).toBe(false) // the goodbye removes us at the peers
    expect(socket.closedWith).toBe(1000)
    doc.getText('content').insert(0, 'after')
    await vi.advanceTimersByTimeAsync(60_000)
    expect(FakeSocket.all.length).toBe(1)
    expect(provider.status).toBe('disconnected')
  })

  it('drops a silent connection at the next ping and reconnects', async () => {
    make(new Y.Doc(), { pingIntervalMs: 1000 })
    await vi.advanceTimersByTimeAsync(0)
    last().open()
    await vi.advanceTimersByTimeAsync(1000) // ping sent
    expect(last().sent.at(-1)?.action).toBe('ping')
    await vi.advanceTimersByTimeAsync(1000) // nothing heard: reconnect
    await vi.advanceTimersByTimeAsync(200)
    expect(FakeSocket.all.length).toBe(2)
  })
})
