// The web client's benchmark (run by scripts/bench/web_latency.py): keystroke → peer-browser
// latency between two Chromium contexts (alice types, bob sees), and time to an interactive editor.
// Prints one JSON line. Env: BASE_URL, KEYSTROKES (default 300), INTERVAL_MS (default 40), OPENS (default 5),
// WARMUP (keystrokes typed before measuring, default 60).
import { BASE_URL, editorText, launch, loginAs, openEditor, sharedPrd, waitFor } from './helpers.mjs'

const KEYSTROKES = Number(process.env.KEYSTROKES ?? 300)
const INTERVAL_MS = Number(process.env.INTERVAL_MS ?? 40)
const OPENS = Number(process.env.OPENS ?? 5)
const WARMUP = Number(process.env.WARMUP ?? 60)
const now = () => performance.timeOrigin + performance.now() // the same wall clock as the pages'
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]

const browser = await launch()
try {
  const prd = await sharedPrd('Web latency bench', '# Bench\n\n' + 'A paragraph of an ordinary PRD.\n\n'.repeat(100))
  const ctxA = await browser.newContext()
  const ctxB = await browser.newContext()
  const alice = await ctxA.newPage()
  const bob = await ctxB.newPage()
  // Error frames the server sends alice (e.g. rate_limited) would mean resends: counted, not hidden.
  const errorFrames = {}
  alice.on('websocket', ws => ws.on('framereceived', ({ payload }) => {
    const code = /"action":\s*"error"/.test(String(payload)) ? (JSON.parse(String(payload)).code ?? 'unknown') : null
    if (code) errorFrames[code] = (errorFrames[code] ?? 0) + 1
  }))
  await loginAs(alice, 'alice', `/prds/${prd.id}`)
  await loginAs(bob, 'bob', '/')

  // Time to interactive: click on the PRD in the list → the editor shows the server's text, accepts input.
  // The first open on a fresh stack also pays the functions' cold starts: reported apart.
  const tti = []
  let coldOpen = null
  for (let i = 0; i <= OPENS; i++) {
    await bob.goto(`${BASE_URL}/`)
    await bob.getByRole('link', { name: 'Web latency bench' }).first().waitFor()
    const start = Date.now()
    await bob.getByRole('link', { name: 'Web latency bench' }).first().click()
    await bob.locator('.cm-content[contenteditable="true"]').waitFor()
    const editable = Date.now() - start
    await bob.locator('[data-sync-state="saved"]').waitFor()
    if (i === 0) coldOpen = { editable, synced: Date.now() - start }
    else tti.push(Date.now() - start)
  }
  await openEditor(alice, prd.id)

  // Bob looks at the end of the document, where alice types (CodeMirror renders only what is in view).
  await bob.locator('.cm-content').click()
  await bob.keyboard.press('Control+End')
  // Bob's page records when each document length first appears (one keystroke = one character more).
  // Alice's page does the same: her own echo is the cost of the key event itself (CDP + CodeMirror).
  const watch = () => {
    const content = document.querySelector('.cm-content')
    const view = (content.cmTile ?? content.cmView)?.root?.view ?? content.cmView?.view
    globalThis.__seen = {}
    new MutationObserver(() => {
      const n = view.state.doc.length
      globalThis.__seen[n] ??= performance.timeOrigin + performance.now()
    }).observe(content, { childList: true, subtree: true, characterData: true })
  }
  await bob.evaluate(watch)
  await alice.evaluate(watch)
  await alice.locator('.cm-content').click()
  await alice.keyboard.press('Control+End')
  // Warm-up: enough typing for the local stack to start its pool of function workers.
  for (let i = 0; i < WARMUP; i++) {
    await alice.keyboard.press(String.fromCharCode(97 + (i % 26)))
    await sleep(INTERVAL_MS)
  }
  await alice.locator('[data-sync-state="saved"]').waitFor({ timeout: 30_000 })
  await waitFor(async () => (await editorText(bob)) === (await editorText(alice)), { what: 'warm-up converged' })
  const base = (await editorText(alice)).length
  const sent = []
  for (let i = 0; i < KEYSTROKES; i++) {
    sent.push(now())
    await alice.keyboard.press(i % 40 === 39 ? 'Enter' : String.fromCharCode(97 + (i % 26)))
    await sleep(INTERVAL_MS)
  }
  await sleep(3000)
  const seen = await bob.evaluate(() => globalThis.__seen)
  const echoed = await alice.evaluate(() => globalThis.__seen)
  // A character has arrived when the document first reaches its length or more (two updates relayed
  // together show up as one DOM change, skipping the length in between).
  const arrivals = times => {
    const lengths = Object.keys(times).map(Number).sort((a, b) => b - a)
    const first = new Map()
    let earliest = Infinity
    for (const n of lengths) first.set(n, earliest = Math.min(earliest, times[n]))
    return target => {
      const n = lengths.filter(l => l >= target).at(-1)
      return n === undefined ? undefined : first.get(n)
    }
  }
  const bobSaw = arrivals(seen)
  const aliceSaw = arrivals(echoed)
  const latencies = []
  const local = []
  let missing = 0
  for (let i = 0; i < KEYSTROKES; i++) {
    const at = bobSaw(base + i + 1)
    if (at === undefined) missing++
    else latencies.push(at - sent[i])
    const own = aliceSaw(base + i + 1)
    if (own !== undefined) local.push(own - sent[i])
  }
  const converged = (await editorText(alice)) === (await editorText(bob))
  latencies.sort((a, b) => a - b)
  local.sort((a, b) => a - b)
  tti.sort((a, b) => a - b)
  console.log(JSON.stringify({
    keystrokes: KEYSTROKES,
    interval_ms: INTERVAL_MS,
    missing,
    converged,
    error_frames: errorFrames,
    latency_ms: { p50: pct(latencies, 50), p90: pct(latencies, 90), p99: pct(latencies, 99), max: latencies.at(-1) },
    local_echo_ms: { p50: pct(local, 50), p99: pct(local, 99) },
    tti_ms: { cold_first_open: coldOpen, runs: tti, median: pct(tti, 50), max: tti.at(-1) }
  }))
} finally {
  await browser.close()
}
