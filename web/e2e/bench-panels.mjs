// The editor's panels in a real browser (run by scripts/bench/web_panels.py): AI first chunk → painted,
// and the version history of a PRD with many versions → first page painted. Prints one JSON line.
// Env: BASE_URL, AI_JOBS (default 5), HISTORY_PRD (a PRD of alice's with many versions), OPENS (default 3).
import { BASE_URL, launch, loginAs, openEditor, sharedPrd, waitFor } from './helpers.mjs'

const AI_JOBS = Number(process.env.AI_JOBS ?? 5)
const OPENS = Number(process.env.OPENS ?? 3)
const HISTORY_PRD = process.env.HISTORY_PRD
const pct = (values, p) => { const s = [...values].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] }
const summary = values => ({ n: values.length, p50: pct(values, 50), p90: pct(values, 90), max: Math.max(...values) })

// In the page, before the app runs: when each AI chunk frame arrives (before the app's own handler),
// and when the first text of an AI output has been painted (the frame after it entered the DOM).
function instrument () {
  window.__bench = { chunks: [], painted: null, asked: null }
  const Native = window.WebSocket
  window.WebSocket = class extends Native {
    constructor (...args) {
      super(...args)
      this.addEventListener('message', event => {
        if (typeof event.data === 'string' && event.data.includes('"action":"ai"') && event.data.includes('"chunk"')) {
          window.__bench.chunks.push(performance.now())
        }
      })
    }
  }
  new MutationObserver(() => {
    if (window.__bench.painted !== null || window.__bench.chunks.length === 0) return
    const out = document.querySelector('.ai-output')
    if (out !== null && out.textContent.trim() !== '') {
      window.__bench.painted = -1
      requestAnimationFrame(() => requestAnimationFrame(() => { window.__bench.painted = performance.now() }))
    }
  }).observe(document, { subtree: true, childList: true, characterData: true })
}

const browser = await launch()
const result = { ai: {}, history: {} }
try {
  // ---- AI: a fresh PRD per job (a PRD generates two jobs at once at most)
  const chunkToPaint = []
  const askToPaint = []
  for (let i = 0; i <= AI_JOBS; i++) {
    const prd = await sharedPrd(`AI paint bench ${i}`, '# AI paint bench\n\n## Goals\n\nShip faster.\n\n## Requirements\n\n- Fast.\n')
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    await context.addInitScript(instrument)
    const page = await context.newPage()
    await loginAs(page, 'alice', `/prds/${prd.id}`)
    await openEditor(page, prd.id)
    await page.getByLabel('What should the AI write?').fill('List the main delivery risks')
    await page.getByLabel('Mode').selectOption('draft')
    await page.getByLabel('Section', { exact: true }).selectOption('Risks')
    await page.evaluate(() => { window.__bench.asked = performance.now() })
    await page.getByLabel('What should the AI write?').press('Control+Enter')
    await waitFor(async () => await page.evaluate(() => (window.__bench.painted ?? -1) > 0), { timeout: 60_000, what: 'first AI chunk painted' })
    const b = await page.evaluate(() => window.__bench)
    if (i > 0) { // the first job pays the functions' cold starts
      chunkToPaint.push(b.painted - b.chunks[0])
      askToPaint.push(b.painted - b.asked)
    }
    await context.close()
  }
  result.ai = { chunkToPaint: summary(chunkToPaint), askToPaint: summary(askToPaint) }

  // ---- history of a long-lived PRD: panel mounted → first page of versions in the DOM
  if (HISTORY_PRD) {
    const firstPage = []
    const build = []
    for (let i = 0; i <= OPENS; i++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
      const page = await context.newPage()
      await loginAs(page, 'alice', `/prds/${HISTORY_PRD}`)
      await openEditor(page, HISTORY_PRD)
      await waitFor(async () => await page.evaluate(() => performance.getEntriesByName('prdtool:history-first-page').length > 0),
        { timeout: 30_000, what: 'first page of versions' })
      const t = await page.evaluate(() => ({
        mount: performance.getEntriesByName('prdtool:history-mount')[0].startTime,
        first: performance.getEntriesByName('prdtool:history-first-page')[0].startTime,
        build: performance.getEntriesByName('prdtool:history-render')[0]?.duration ?? null,
        rows: document.querySelectorAll('.panel-history li').length
      }))
      if (i > 0) { firstPage.push(t.first - t.mount); if (t.build !== null) build.push(t.build) }
      result.history.rows = t.rows
      await context.close()
    }
    result.history.firstPage = summary(firstPage)
    result.history.build = summary(build)
  }
} finally {
  await browser.close()
}
console.log(JSON.stringify(result))
