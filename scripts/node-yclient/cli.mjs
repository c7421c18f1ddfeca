#!/usr/bin/env node
// Joins one PRD as a live Yjs editor and is driven by JSON lines (for tests, and for humans poking at it).
//
//   node cli.mjs --url ws://127.0.0.1:3000/ws --prd <id> --token <access token> [--name bob] [--no-awareness]
//
// Commands on stdin, one JSON object a line (positions are Y.Text indices, i.e. UTF-16 code units):
//   {"cmd":"insert","index":n,"text":s}   {"cmd":"append","text":s}   {"cmd":"delete","index":n,"length":k}
//   {"cmd":"text"}       -> {"event":"text","text":...}
//   {"cmd":"presence","state":{...}}      sets this client's awareness state
//   {"cmd":"awareness"}  -> {"event":"awareness","self":clientID,"states":{clientID: state}}
//   {"cmd":"state"}      -> {"event":"state","clientID","status","synced","pending"}
//   {"cmd":"disconnect"} (like losing the network)    {"cmd":"connect"}
//   {"cmd":"type","text":s,"interval_ms":n}  types s one character at a time at the end -> {"event":"typed",...}
//   {"cmd":"quit"}       says goodbye and exits (so does the end of stdin)
// Events on stdout: {"event":"ready","clientID"}, {"event":"status","status"}, {"event":"synced"},
// {"event":"saved"} (every update sent is acknowledged), {"event":"error-frame",...}, {"event":"notice",...},
// {"event":"ai",...}, {"event":"warning","message"}, {"event":"connection-error","message"},
// {"event":"cmd-error","message"}.
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { PrdProvider, Y } from './provider.mjs'

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: 'ws://127.0.0.1:3000/ws' },
    prd: { type: 'string' },
    token: { type: 'string', default: process.env.PRD_TOKEN },
    name: { type: 'string', default: 'node' },
    'no-awareness': { type: 'boolean', default: false }
  }
})
if (!args.prd || !args.token) {
  process.stderr.write('usage: node cli.mjs --url ws://host/ws --prd ID --token TOKEN (or PRD_TOKEN=...) [--name NAME]\n')
  process.exit(2)
}

const emit = event => process.stdout.write(JSON.stringify(event) + '\n')
const doc = new Y.Doc()
const text = doc.getText('content')
const provider = new PrdProvider(doc, { url: args.url, prd: args.prd, token: args.token, awareness: !args['no-awareness'], connect: false })

emit({ event: 'ready', name: args.name, clientID: doc.clientID })
provider.on('status', ({ status, ...rest }) => emit({ event: 'status', status, ...rest }))
provider.on('synced', () => emit({ event: 'synced' }))
provider.on('saved', () => emit({ event: 'saved' }))
for (const name of ['error-frame', 'notice', 'ai']) provider.on(name, frame => emit({ ...frame, event: name }))
for (const name of ['warning', 'connection-error']) provider.on(name, error => emit({ event: name, message: String(error?.message ?? error) }))
provider.connect()

const typeSlowly = (chars, intervalMs) => new Promise(resolve => {
  const started = Date.now()
  let k = 0
  const next = () => {
    if (k >= chars.length) return resolve(Date.now() - started)
    text.insert(text.length, chars[k++])
    setTimeout(next, intervalMs)
  }
  next()
})

// Yjs quietly clamps out-of-range positions; a driver should hear about them instead.
const check = (ok, message) => { if (!ok) throw new Error(message) }
const isIndex = (n, max) => Number.isInteger(n) && n >= 0 && n <= max

const commands = {
  insert: ({ index, text: s }) => {
    check(typeof s === 'string' && isIndex(index, text.length), `insert needs text and 0 <= index <= ${text.length}`)
    text.insert(index, s)
  },
  append: ({ text: s }) => {
    check(typeof s === 'string', 'append needs text')
    text.insert(text.length, s)
  },
  delete: ({ index, length }) => {
    check(isIndex(index, text.length) && isIndex(length, text.length - index), `delete needs a range within 0..${text.length}`)
    text.delete(index, length)
  },
  text: () => emit({ event: 'text', text: text.toString() }),
  presence: ({ state }) => {
    check(provider.awareness !== null, 'awareness is off (--no-awareness)')
    check(typeof state === 'object' && !Array.isArray(state), 'presence needs a state object (or null)')
    provider.awareness.setLocalState(state)
  },
  awareness: () => emit({
    event: 'awareness',
    self: doc.clientID,
    states: Object.fromEntries(provider.awareness ? provider.awareness.getStates() : [])
  }),
  state: () => emit({
    event: 'state', clientID: doc.clientID, status: provider.status, synced: provider.synced, pending: provider.pending.size
  }),
  disconnect: () => provider.disconnect(),
  connect: () => provider.connect(),
  type: async ({ text: s, interval_ms: ms = 50 }) => {
    const chars = Array.from(s) // whole code points: never split a surrogate pair across updates
    emit({ event: 'typed', count: chars.length, elapsed_ms: await typeSlowly(chars, ms) })
  },
  quit: () => quit()
}

let quitting = false
const quit = () => {
  if (quitting) return
  quitting = true
  provider.destroy()
  doc.destroy()
  // Give the goodbye and the close frame a moment to leave, then exit with stdout flushed.
  setTimeout(() => process.stdout.write('', () => process.exit(0)), 200)
}

const lines = createInterface({ input: process.stdin })
lines.on('line', line => {
  if (!line.trim()) return
  try {
    const command = JSON.parse(line)
    const run = commands[command.cmd]
    if (!run) throw new Error(`unknown command ${JSON.stringify(command.cmd)}`)
    Promise.resolve(run(command)).catch(error => emit({ event: 'cmd-error', message: String(error?.message ?? error) }))
  } catch (error) {
    emit({ event: 'cmd-error', message: String(error?.message ?? error) })
  }
})
lines.on('close', quit)
process.on('SIGTERM', quit)
