// Shared helpers of the browser tests and the web benchmark: Debian's Chromium driven by
// playwright-core (never a browser download), logins through the HTTP API, artifacts.
import { mkdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { chromium } from 'playwright-core'

const here = dirname(fileURLToPath(import.meta.url))
export const BASE_URL = (process.env.BASE_URL ?? 'http://127.0.0.1:3000').replace(/\/$/, '')
export const ARTIFACTS = process.env.ARTIFACTS ?? resolve(here, '..', '..', 'test-artifacts', 'web')
export const PASSWORD = 'demo-password'
mkdirSync(ARTIFACTS, { recursive: true })

export const AXE_SOURCE = createRequire(import.meta.url).resolve('axe-core/axe.min.js')

export async function launch () {
  return await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    // root in CI containers needs --no-sandbox; the rest keeps a 2-core machine calm
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu']
  })
}

/** One HTTP API call; a 429 is waited out as its Retry-After says (other suites share the stack's limits). */
export async function api (method, path, { token, body } = {}) {
  const headers = { 'content-type': 'application/json' }
  if (token) headers.authorization = `Bearer ${token}`
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(BASE_URL + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    const text = await response.text()
    if (response.status === 429 && attempt < 5) {
      await new Promise(resolve => setTimeout(resolve, 1000 * Math.min(60, Number(response.headers.get('retry-after') ?? 1))))
      continue
    }
    return { status: response.status, body: text ? JSON.parse(text) : undefined }
  }
}

export async function token (username) {
  const r = await api('POST', '/api/auth/login', { body: { username, password: PASSWORD } })
  if (r.status !== 200) throw new Error(`login ${username}: ${r.status}`)
  return r.body.access_token
}

/** A PRD of alice's shared with bob (editor) and carol (viewer). */
export async function sharedPrd (title, markdown) {
  const alice = await token('alice')
  const created = await api('POST', '/api/prds', { token: alice, body: { title, markdown } })
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`)
  for (const [name, role] of [['bob', 'editor'], ['carol', 'viewer']]) {
    const r = await api('PUT', `/api/prds/${created.body.id}/members/${name}`, { token: alice, body: { role } })
    if (r.status !== 200) throw new Error(`share with ${name}: ${r.status}`)
  }
  return { id: created.body.id, alice }
}

export async function serverMarkdown (prdId, tok) {
  const r = await api('GET', `/api/prds/${prdId}`, { token: tok })
  if (r.status !== 200) throw new Error(`GET prd: ${r.status}`)
  return r.body.markdown
}

/** Logs in through the form of /login?next=... and waits to land on `path`. */
export async function loginAs (page, username, path = '/') {
  await page.goto(BASE_URL + path)
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password').fill(PASSWORD)
  await page.getByRole('button', { name: 'Log in' }).click()
  await page.waitForURL(url => url.pathname === path.split('?')[0])
}

/** Opens a PRD and waits until its editor shows the server's content and accepts input. */
export async function openEditor (page, prdId) {
  if (!page.url().endsWith(`/prds/${prdId}`)) await page.goto(`${BASE_URL}/prds/${prdId}`)
  await page.locator('.cm-content').waitFor()
  await page.locator('[data-sync-state="saved"]').waitFor({ timeout: 15_000 })
}

/** The editor's whole text, from CodeMirror's own state (what EditorView.findFromDOM reads). */
export const editorText = async page => await page.evaluate(() => {
  const content = document.querySelector('.cm-content')
  const view = (content?.cmTile ?? content?.cmView)?.root?.view ?? content?.cmView?.view
  if (!view) throw new Error('no CodeMirror view on .cm-content')
  return view.state.doc.toString()
})

export const shot = async (page, name) => await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })

export async function waitFor (predicate, { timeout = 20_000, what = 'condition', interval = 100 } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeout} ms`)
    await new Promise(resolve => setTimeout(resolve, interval))
  }
}

/** Runs axe-core in the page; returns the serious and critical violations.  `strictCsp`: inject it
 * through the DevTools protocol instead of a <script> tag, for pages that keep the app's strict
 * Content-Security-Policy on (no bypassCSP). */
export async function axe (page, { strictCsp = false } = {}) {
  if (strictCsp) await page.evaluate(readFileSync(AXE_SOURCE, 'utf8'))
  else await page.addScriptTag({ path: AXE_SOURCE })
  const result = await page.evaluate(async () => await globalThis.axe.run(document, { resultTypes: ['violations'] }))
  return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`)
}
