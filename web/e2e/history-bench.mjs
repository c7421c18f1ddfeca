#!/usr/bin/env node
// A measurement, not a test: how fast the version history panel shows the history of a PRD with
// 1,000 versions. Creating them takes minutes (each cut ~120 ms server-side, and the API's
// per-user rate limit of 100/min: alice and bob, both editors, take turns; 429s are waited out), so
// this is its own script, not a *.spec.mjs the browser tests run.
//
//   BASE_URL=http://127.0.0.1:3000 node e2e/history-bench.mjs
//   BENCH_VERSIONS=1000   how many versions the PRD should have
//   BENCH_PRD=<id>        reuse a PRD made by an earlier run (skips creating versions)
//
// Prints: the time to create the versions, then in the browser the time from the panel's mount to
// its first page of rows (API call included), the time to build the rows, and the cost of loading
// every page (all 1,000 rows in the DOM) and of opening the compare dialog over all of them.
import { BASE_URL, api, launch, loginAs, openEditor, sharedPrd, token } from './helpers.mjs'

const WANT = Number(process.env.BENCH_VERSIONS ?? 1000)
const ms = n => `${n.toFixed(1)} ms`

async function versionCount (id, tok) {
  let count = 0
  let before = null
  for (;;) {
    const r = await api('GET', `/api/prds/${id}/versions?limit=200${before ? `&before=${before}` : ''}`, { token: tok })
    if (r.status !== 200) throw new Error(`list: ${r.status} ${JSON.stringify(r.body)}`)
    count += r.body.items.length
    if (r.body.next === null) return count
    before = r.body.next
  }
}

async function makePrd () {
  const { id, alice } = await sharedPrd(`History bench ${new Date().toISOString()}`, '# Bench\n\n## Goals\n\nMany versions.\n')
  const bob = await token('bob')
  const started = Date.now()
  for (let tries = 0; (await versionCount(id, alice)) === 0; tries++) { // v1.0.0 is made on prd.created
    if (tries > 100) throw new Error('v1.0.0 never came')
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  const tokens = [alice, bob]
  for (let n = 1; n < WANT; n++) {
    const r = await api('POST', `/api/prds/${id}/versions`, { token: tokens[n % 2], body: n % 10 === 0 ? { name: `Checkpoint ${n}`, message: `Version number ${n + 1}.` } : {} })
    if (r.status !== 201) throw new Error(`save ${n}: ${r.status} ${JSON.stringify(r.body)}`)
    if (n % 100 === 0) console.log(`  ${n + 1} versions (${((Date.now() - started) / 1000).toFixed(0)} s)`)
  }
  console.log(`created ${WANT} versions in ${((Date.now() - started) / 1000).toFixed(0)} s`)
  return { id, alice }
}

const prd = process.env.BENCH_PRD ? { id: process.env.BENCH_PRD, alice: await token('alice') } : await makePrd()
const total = await versionCount(prd.id, prd.alice)
console.log(`PRD ${prd.id}: ${total} versions`)

// The API alone: the first page.
{
  const t0 = performance.now()
  const r = await api('GET', `/api/prds/${prd.id}/versions?limit=50`, { token: prd.alice })
  console.log(`API: GET versions?limit=50 ${ms(performance.now() - t0)} (${r.body.items.length} items)`)
}

const browser = await launch()
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  page.on('pageerror', error => console.log(`page error: ${error.message}`))
  await loginAs(page, 'alice', '/')
  const runs = []
  for (let run = 0; run < 3; run++) {
    await page.goto(`${BASE_URL}/prds/${prd.id}`)
    await openEditor(page, prd.id)
    await page.locator('.panel-history .hist-item').nth(49).waitFor()
    const figures = await page.evaluate(() => {
      const mount = performance.getEntriesByName('prdtool:history-mount')[0]
      const first = performance.getEntriesByName('prdtool:history-first-page')[0]
      const render = performance.getEntriesByName('prdtool:history-render')[0]
      return { sinceNavigation: first.startTime, mountToRows: first.startTime - mount.startTime, build: render.duration, rows: render.detail?.rows }
    })
    runs.push(figures)
  }
  for (const [i, f] of runs.entries()) {
    console.log(`browser run ${i + 1}: first ${f.rows} rows shown ${ms(f.mountToRows)} after the panel mounted (API call included), ` +
      `${ms(f.sinceNavigation)} after navigation; building them ${ms(f.build)}`)
  }

  // Every page: "Show older versions" until the oldest is in.
  const more = page.locator('.panel-history .hist-more')
  const t0 = Date.now()
  let clicks = 0
  while (await more.isVisible()) {
    const before = await page.locator('.panel-history .hist-item').count()
    await more.click()
    clicks++
    await page.waitForFunction(n => document.querySelectorAll('.panel-history .hist-item').length > n, before)
  }
  await page.evaluate(async () => await new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve))))
  const loadAll = Date.now() - t0
  const renders = await page.evaluate(() => performance.getEntriesByName('prdtool:history-render').map(e => ({ d: e.duration, rows: e.detail?.rows ?? 0 })))
  const rows = await page.locator('.panel-history .hist-item').count()
  const buildAll = renders.reduce((sum, r) => sum + r.d, 0)
  console.log(`all ${rows} rows: ${clicks} more pages in ${loadAll} ms wall (API calls included); building all rows took ${ms(buildAll)} in total, ` +
    `${ms(Math.max(...renders.map(r => r.d)))} at most per page`)

  // With 1,000 rows in the DOM: a row opens, the compare dialog opens over all the versions.
  const t1 = await page.evaluate(async () => {
    const rowButton = document.querySelectorAll('.panel-history .hist-row')[500]
    const t = performance.now()
    rowButton.click()
    await new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)))
    return performance.now() - t
  })
  console.log(`opening row 501 with ${rows} rows in the DOM: ${ms(t1)} (to the second frame)`)
  const t2 = await page.evaluate(async () => {
    const button = [...document.querySelectorAll('.panel-history button')].find(b => b.textContent === 'Compare…')
    const t = performance.now()
    button.click()
    const opened = performance.now() - t
    while (document.querySelector('dialog[open] .hist-diff-summary') === null) await new Promise(resolve => setTimeout(resolve, 5))
    return { opened, compared: performance.now() - t }
  })
  console.log(`compare dialog with ${rows} versions to pick from: open ${ms(t2.opened)}, the newest two compared ${ms(t2.compared)} (API call included)`)
  await page.keyboard.press('Escape')

  // For comparison: building 1,000 rows in one go (what an unpaged list would do).
  const single = await page.evaluate(() => {
    const list = document.querySelector('.panel-history .hist-list')
    const items = [...list.children]
    const t = performance.now()
    const copy = items.map(li => li.cloneNode(true))
    const host = list.cloneNode(false)
    host.append(...copy)
    list.replaceWith(host)
    host.getBoundingClientRect() // force layout
    const took = performance.now() - t
    host.replaceWith(list)
    return took
  })
  console.log(`(reference: cloning and laying out all ${rows} rows at once: ${ms(single)})`)
} finally {
  await browser.close()
}
