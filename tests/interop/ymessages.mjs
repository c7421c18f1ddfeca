#!/usr/bin/env node
// y-websocket messages made and read by the real Yjs libraries, for tests/unit/test_protocol_interop.py.
//
//   node ymessages.mjs generate   prints JSON: messages written by y-protocols' own encoders (on real
//                                 Y.Doc edits and Awareness instances), each with its expected decoded
//                                 fields; lib0 primitive encodings; a large message cut into chunk frames
//                                 as DESIGN 3.2 describes.  All bytes are base64.
//   node ymessages.mjs apply      reads {"steps": [{"message": b64} | {"frames": [frame text, ...]}]} on
//                                 stdin (made by the Python codec), feeds every message to y-protocols as
//                                 the y-websocket provider does (readSyncMessage into a Y.Doc,
//                                 applyAwarenessUpdate, readAuthMessage) and prints per-step results and the
//                                 resulting document and awareness states as JSON.
//
// Output is deterministic: documents use fixed client ids.
import { readFileSync } from 'node:fs'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { toBase64, fromBase64 } from 'lib0/buffer'

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const MESSAGE_AUTH = 2
const MESSAGE_QUERY_AWARENESS = 3
const MAX_FRAME_DATA_CHARS = 98304

const b64 = (bytes) => toBase64(bytes)

const version = (name) => {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url)
  return JSON.parse(readFileSync(url, 'utf8')).version
}

const newDoc = (clientID) => {
  const doc = new Y.Doc()
  doc.clientID = clientID
  return doc
}

const docView = (doc) => ({
  text: doc.getText('content').toString(),
  meta: doc.getMap('meta').toJSON()
})

const message = (write) => {
  const encoder = encoding.createEncoder()
  write(encoder)
  return encoding.toUint8Array(encoder)
}

/** DESIGN 3.2 framing, written independently of the Python codec. */
const toFrames = (bytes, id) => {
  const data = b64(bytes)
  if (data.length <= MAX_FRAME_DATA_CHARS) return [JSON.stringify({ action: 'y', data })]
  const n = Math.ceil(data.length / MAX_FRAME_DATA_CHARS)
  const frames = []
  for (let i = 0; i < n; i++) {
    const part = data.slice(i * MAX_FRAME_DATA_CHARS, (i + 1) * MAX_FRAME_DATA_CHARS)
    frames.push(JSON.stringify({ action: 'y', data: part, chunk: { id, i, n } }))
  }
  return frames
}

const fromFrames = (texts) => {
  const frames = texts.map((t) => JSON.parse(t))
  if (frames.length === 1 && frames[0].chunk === undefined) return fromBase64(frames[0].data)
  const n = frames[0].chunk.n
  const parts = new Array(n)
  for (const f of frames) {
    if (f.action !== 'y' || f.chunk.id !== frames[0].chunk.id || f.chunk.n !== n) throw new Error('inconsistent chunk set')
    parts[f.chunk.i] = f.data
  }
  if (parts.some((p) => p === undefined) || frames.length !== n) throw new Error('incomplete chunk set')
  return fromBase64(parts.join(''))
}

const generate = () => {
  const cases = []

  // --- sync -------------------------------------------------------------------------------------------
  const empty = newDoc(100)
  cases.push({
    name: 'sync_step1_empty_doc',
    kind: 'sync_step1',
    message: b64(message((e) => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeSyncStep1(e, empty) })),
    state_vector: b64(Y.encodeStateVector(empty))
  })
  cases.push({
    name: 'sync_step2_empty_doc',
    kind: 'sync_step2',
    message: b64(message((e) => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeSyncStep2(e, empty) })),
    update: b64(Y.encodeStateAsUpdate(empty)),
    ...docView(empty)
  })

  const alice = newDoc(1)
  const bob = newDoc(2)
  const updates = []
  alice.on('update', (update) => updates.push(update))
  alice.getText('content').insert(0, '# Zoë’s PRD 🚀\n\nGoals: ship.\n')
  alice.getMap('meta').set('title', 'Zoë’s PRD 🚀')
  alice.getMap('meta').set('status', 'draft')
  const beforeBob = Y.encodeStateVector(alice)
  const aliceBase = Y.encodeStateAsUpdate(alice)
  Y.applyUpdate(bob, Y.encodeStateAsUpdate(alice))
  bob.getText('content').insert(bob.getText('content').length, '\n## Non-goals\n\n- 東京\n')
  Y.applyUpdate(alice, Y.encodeStateAsUpdate(bob, beforeBob))
  alice.getText('content').delete(2, 4) // a delete set
  alice.getMap('meta').set('owner', 'alice')

  cases.push({
    name: 'sync_step1_edited_doc',
    kind: 'sync_step1',
    message: b64(message((e) => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeSyncStep1(e, alice) })),
    state_vector: b64(Y.encodeStateVector(alice))
  })
  cases.push({
    name: 'sync_step2_full',
    kind: 'sync_step2',
    message: b64(message((e) => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeSyncStep2(e, alice) })),
    update: b64(Y.encodeStateAsUpdate(alice)),
    ...docView(alice)
  })
  cases.push({
    name: 'sync_step2_diff',
    kind: 'sync_step2',
    message: b64(message((e) => {
      encoding.writeVarUint(e, MESSAGE_SYNC)
      syncProtocol.writeSyncStep2(e, alice, beforeBob)
    })),
    update: b64(Y.encodeStateAsUpdate(alice, beforeBob)),
    base_update: b64(aliceBase), // the document the diff applies to
    ...docView(alice)
  })
  updates.forEach((update, k) => {
    cases.push({
      name: `sync_update_${k}`,
      kind: 'sync_update',
      message: b64(message((e) => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeUpdate(e, update) })),
      update: b64(update)
    })
  })

  // A message whose base64 needs several frames (DESIGN 3.2 chunking).
  const big = newDoc(3)
  let para = ''
  for (let i = 0; i < 4000; i++) para += `Line ${i}: requirement ${(i * 7919) % 10007} — ünïcödé ✓\n`
  big.getText('content').insert(0, para)
  const bigMessage = message((e) => { encoding.writeVarUint(e, MESSAGE_SYNC); syncProtocol.writeSyncStep2(e, big) })
  cases.push({
    name: 'sync_step2_large',
    kind: 'sync_step2',
    message: b64(bigMessage),
    update: b64(Y.encodeStateAsUpdate(big)),
    frames: toFrames(bigMessage, 'js-chunk-1'),
    ...docView(big)
  })

  // --- awareness ----------------------------------------------------------------------------------------
  const a1 = new awarenessProtocol.Awareness(newDoc(11))
  const a2 = new awarenessProtocol.Awareness(newDoc(4294967295)) // largest uint32 client id
  a1.setLocalState({ user: { name: 'Zoë 😀', color: '#ff8800' }, cursor: { anchor: 3, head: 7 }, note: 'a "quoted"\n\\ line' })
  a2.setLocalState({ user: { name: '東京 ✓', color: '#0088ff' }, cursor: null })
  awarenessProtocol.applyAwarenessUpdate(a1, awarenessProtocol.encodeAwarenessUpdate(a2, [a2.clientID]), 'test')
  cases.push({
    name: 'awareness_two_clients',
    kind: 'awareness',
    message: b64(message((e) => {
      encoding.writeVarUint(e, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(a1, [a1.clientID, a2.clientID]))
    })),
    entries: [a1.clientID, a2.clientID].map((id) => ({ client_id: id, clock: a1.meta.get(id).clock, state: a1.states.get(id) || null }))
  })
  // Client 2 leaves (setLocalState(null) bumps its clock), client 1 learns about it.
  a2.setLocalState(null)
  awarenessProtocol.applyAwarenessUpdate(a1, awarenessProtocol.encodeAwarenessUpdate(a2, [a2.clientID]), 'test')
  cases.push({
    name: 'awareness_one_removed',
    kind: 'awareness',
    message: b64(message((e) => {
      encoding.writeVarUint(e, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(a1, [a1.clientID, a2.clientID]))
    })),
    entries: [a1.clientID, a2.clientID].map((id) => ({ client_id: id, clock: a1.meta.get(id).clock, state: a1.states.get(id) || null }))
  })
  cases.push({
    name: 'awareness_no_clients',
    kind: 'awareness',
    message: b64(message((e) => {
      encoding.writeVarUint(e, MESSAGE_AWARENESS)
      encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(a1, []))
    })),
    entries: []
  })
  a1.destroy()
  a2.destroy()

  // --- auth and query awareness (y-websocket writes the latter as a bare varUint) -------------------------
  cases.push({
    name: 'permission_denied',
    kind: 'permission_denied',
    message: b64(message((e) => { encoding.writeVarUint(e, MESSAGE_AUTH); authProtocol.writePermissionDenied(e, 'read-only: Zoë 🔒') })),
    reason: 'read-only: Zoë 🔒'
  })
  cases.push({
    name: 'query_awareness',
    kind: 'query_awareness',
    message: b64(message((e) => { encoding.writeVarUint(e, MESSAGE_QUERY_AWARENESS) }))
  })

  // --- lib0 primitives ----------------------------------------------------------------------------------
  const uints = [0, 1, 127, 128, 255, 256, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1,
    2 ** 32, 2 ** 35 + 12345, 2 ** 49, 2 ** 53 - 1, 2 ** 53]
  const strings = ['', 'a', 'hello world', 'Zoë', '东京', '😀🚀', '\u0000\u007f\u0080\u07ff\u0800\uffff', '\ufeffbom',
    '\ud800 lone high', 'lone low \udc00', 'x'.repeat(40000) + 'é', 'é'.repeat(20000)]
  const primitives = {
    var_uint: uints.map((n) => ({ value: n, bytes: b64(message((e) => encoding.writeVarUint(e, n))) })),
    // Strings travel as JSON, which keeps lone surrogates as \ud800 escapes; Python reads them back exactly.
    var_string: strings.map((s) => ({ value: s, bytes: b64(message((e) => encoding.writeVarString(e, s))) })),
    // What lib0 reads from a redundant (non-minimal) varUint: it tolerates them; our codec refuses them.
    lenient_reads: [[0x80, 0x00], [0xff, 0x80, 0x00]].map((arr) => ({
      bytes: b64(new Uint8Array(arr)),
      value: decoding.readVarUint(decoding.createDecoder(new Uint8Array(arr)))
    }))
  }

  return {
    versions: { yjs: version('yjs'), 'y-protocols': version('y-protocols'), lib0: version('lib0') },
    cases,
    primitives
  }
}

const apply = (input) => {
  const doc = newDoc(999)
  doc.getText('content')
  doc.getMap('meta')
  const awareness = new awarenessProtocol.Awareness(doc)
  const results = []
  for (const step of input.steps) {
    const result = { type: null, consumed: null, reply: null, denied: null, query: false, error: null }
    try {
      const bytes = step.frames !== undefined ? fromFrames(step.frames) : fromBase64(step.message)
      const decoder = decoding.createDecoder(bytes)
      const type = decoding.readVarUint(decoder)
      result.type = type
      // As y-websocket's provider (messageHandlers) does:
      switch (type) {
        case MESSAGE_SYNC: {
          const encoder = encoding.createEncoder()
          encoding.writeVarUint(encoder, MESSAGE_SYNC)
          result.sync_type = syncProtocol.readSyncMessage(decoder, encoder, doc, 'python')
          if (encoding.length(encoder) > 1) result.reply = b64(encoding.toUint8Array(encoder))
          break
        }
        case MESSAGE_AWARENESS:
          awarenessProtocol.applyAwarenessUpdate(awareness, decoding.readVarUint8Array(decoder), 'python')
          break
        case MESSAGE_AUTH:
          authProtocol.readAuthMessage(decoder, doc, (_y, reason) => { result.denied = reason })
          break
        case MESSAGE_QUERY_AWARENESS:
          result.query = true
          break
        default:
          throw new Error(`unknown message type ${type}`)
      }
      result.consumed = decoder.pos === decoder.arr.length
    } catch (err) {
      result.error = String(err && err.message ? err.message : err)
    }
    results.push(result)
  }
  const states = []
  awareness.getStates().forEach((state, clientID) => {
    if (clientID !== doc.clientID) states.push({ client_id: clientID, state })
  })
  const clocks = []
  awareness.meta.forEach((meta, clientID) => {
    if (clientID !== doc.clientID) clocks.push({ client_id: clientID, clock: meta.clock })
  })
  awareness.destroy()
  return { results, ...docView(doc), awareness: states, awareness_clocks: clocks }
}

const main = async () => {
  const command = process.argv[2]
  if (command === 'generate') {
    process.stdout.write(JSON.stringify(generate()))
  } else if (command === 'apply') {
    let text = ''
    process.stdin.setEncoding('utf8')
    for await (const chunk of process.stdin) text += chunk
    process.stdout.write(JSON.stringify(apply(JSON.parse(text))))
  } else {
    process.stderr.write('usage: node ymessages.mjs generate | apply < steps.json\n')
    process.exit(2)
  }
}

await main()
