// Browser tests of import (the PRD list) and export (the editor's Export panel) against the real
// local stack (BASE_URL), with Debian's Chromium through playwright-core. Run:
//   BASE_URL=http://127.0.0.1:3000 node --test --test-concurrency=1 e2e/transfers.spec.mjs
// Screenshots: import-progress, import-report, import-refused, export-ready (ARTIFACTS).
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { api, axe, editorText, launch, loginAs, openEditor, sharedPrd, shot, token, waitFor } from './helpers.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const FIXTURES = resolve(here, '..', '..', 'tests', 'fixtures', 'imports')
const DOCX = resolve(FIXTURES, 'prd.docx')
const PNG = resolve(FIXTURES, 'checkout-flow.png')
const IMPORT_TIMEOUT = 90_000 // the import worker's first (cold) start on a busy 2-core machine
const EXPORT_TIMEOUT = 90_000

let browser
const contexts = []

before(async () => { browser = await launch() })
after(async () => {
  for (const context of contexts) await context.close().catch(() => {})
  await browser?.close()
})

/** A logged-in page; console messages about the Content-Security-Policy are collected in `csp`. */
async function person (username, path = '/') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true })
  contexts.push(context)
  const page = await context.newPage()
  const csp = []
  const scripts = []
  page.on('pageerror', error => console.log(`page error: ${error.message}`))
  page.on('console', message => { if (/Content Security Policy/i.test(message.text())) csp.push(message.text()) })
  page.on('response', response => { if (response.url().endsWith('.js')) scripts.push(new URL(response.url()).pathname) })
  await loginAs(page, username, path)
  return { context, page, csp, scripts }
}

const job = page => page.locator('.import-job')
const jobState = async page => await job(page).getAttribute('data-state').catch(() => null)

/** Waits for the import card to reach done or failed; fails with what the card says otherwise. */
async function importFinished (page) {
  await waitFor(async () => ['done', 'failed'].includes(await jobState(page)), { timeout: IMPORT_TIMEOUT, what: 'import finished', interval: 200 })
  return await jobState(page)
}

/** prd.docx with a stored (uncompressed) member of `padding` zero bytes added: a real Word file over 4 MiB. */
function paddedDocx (padding) {
  const source = readFileSync(DOCX)
  const eocd = source.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  const entries = source.readUInt16LE(eocd + 10)
  const cdSize = source.readUInt32LE(eocd + 12)
  const cdOffset = source.readUInt32LE(eocd + 16)
  const name = Buffer.from('docProps/padding.bin')
  const data = Buffer.alloc(padding)
  const crc = crc32(data)
  const local = Buffer.alloc(30)
  local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt16LE(0, 6); local.writeUInt16LE(0, 8)
  local.writeUInt16LE(0, 10); local.writeUInt16LE(0x21, 12); local.writeUInt32LE(crc, 14)
  local.writeUInt32LE(padding, 18); local.writeUInt32LE(padding, 22); local.writeUInt16LE(name.length, 26); local.writeUInt16LE(0, 28)
  const central = Buffer.alloc(46)
  central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(20, 4); central.writeUInt16LE(20, 6); central.writeUInt16LE(0, 8)
  central.writeUInt16LE(0, 10); central.writeUInt16LE(0, 12); central.writeUInt16LE(0x21, 14); central.writeUInt32LE(crc, 16)
  central.writeUInt32LE(padding, 20); central.writeUInt32LE(padding, 24); central.writeUInt16LE(name.length, 28)
  central.writeUInt32LE(cdOffset, 42)
  const end = Buffer.from(source.subarray(eocd, eocd + 22))
  const addedLocal = local.length + name.length + padding
  end.writeUInt16LE(entries + 1, 8); end.writeUInt16LE(entries + 1, 10)
  end.writeUInt32LE(cdSize + central.length + name.length, 12); end.writeUInt32LE(cdOffset + addedLocal, 16)
  return Buffer.concat([source.subarray(0, cdOffset), local, name, data, source.subarray(cdOffset, cdOffset + cdSize), central, name, end])
}

function crc32 (bytes) {
  let table = crc32.table
  if (!table) {
    table = crc32.table = new Int32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      table[n] = c
    }
  }
  let crc = -1
  for (let i = 0; i < bytes.length; i++) crc = table[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8)
  return (crc ^ -1) >>> 0
}

describe('import on the PRD list', () => {
  it('imports a Word file from the file picker: progress, the fidelity and missing-section report, then the new PRD', async () => {
    const { page, csp, scripts } = await person('alice', '/')
    const pick = page.getByRole('button', { name: 'Import a document' })
    await pick.waitFor()
    await page.locator('.prd-item').first().waitFor()
    assert.ok(!scripts.some(p => /\/assets\/import-/.test(p)), `the list loads the import's code only when it is used: ${scripts.join(', ')}`)
    assert.equal(await page.getByLabel('Draft missing sections with AI').isChecked(), true, 'AI draft is on by default')
    await page.locator('#import-file').setInputFiles(DOCX)
    // progress: the upload is instant (13 KB); the conversion waits for the import worker
    try {
      await page.locator('.import-job[data-state="queued"], .import-job[data-state="running"]').waitFor({ timeout: 5_000 })
      await shot(page, 'import-progress')
      assert.match(await page.locator('.import-live').textContent(), /Waiting to be converted|Converting/)
      assert.equal(await page.locator('.import-steps [aria-current="step"]').textContent(), 'Convert')
    } catch (error) {
      if (await jobState(page) !== 'done') throw error // only a very fast conversion may skip the progress
    }
    assert.equal(await importFinished(page), 'done', await job(page).textContent())

    // the report: mapped sections (heading → standard section, confidence), missing, dropped, AI note
    const rows = page.locator('.import-sections tbody tr')
    const table = await rows.evaluateAll(trs => trs.map(tr => [...tr.cells].map(td => td.textContent.trim())))
    assert.ok(table.some(([heading, section]) => heading === 'Problem' && section === 'Problem'), JSON.stringify(table))
    assert.ok(table.some(([heading, section]) => heading === 'Goals' && section === 'Goals'), JSON.stringify(table))
    assert.ok(table.every(row => /\(\d+%\)$/.test(row[2])), 'every heading has a confidence')
    assert.match(await page.locator('.import-dropped').textContent(), /Images \(1\)/)
    assert.match(await page.locator('.import-missing').textContent(), /Target users/)
    // the AI job is recorded just after the import is done: "Asking the AI…" first, then the note —
    // that the AI drafts the missing sections, or why not (alice's AI budget may be spent by other specs)
    await page.locator('.import-ai:not([aria-busy])').waitFor({ timeout: 45_000 })
    const aiNote = await page.locator('.import-ai').textContent()
    if (await page.locator('.import-ai-started').count() === 1) assert.match(aiNote, /^The AI is drafting the missing sections \(Target users/)
    else assert.match(aiNote, /^No AI draft: |has not started yet/)
    assert.match(await page.locator('.import-live').textContent(), /^Imported:/)
    await shot(page, 'import-report')
    assert.deepEqual(await axe(page, { strictCsp: true }), [], 'the list with the import report')
    assert.deepEqual(csp, [])

    // the list now has the new PRD; Open goes to its editor with the imported headings
    await page.locator('.prd-item a', { hasText: 'Saved carts for returning shoppers' }).first().waitFor()
    await page.getByRole('link', { name: 'Open the new PRD' }).click()
    await page.waitForURL(/\/prds\/[A-Za-z0-9_-]+$/)
    const id = new URL(page.url()).pathname.split('/').pop()
    await openEditor(page, id)
    const text = await editorText(page)
    for (const heading of ['# Saved carts for returning shoppers', '## Problem', '## Goals', '## Requirements', '## Open questions']) {
      assert.ok(text.includes(heading), `the editor has ${heading}`)
    }
  })

  it('imports a document dropped on the list, with a name and without the AI draft', async () => {
    const { page } = await person('alice', '/')
    await page.getByRole('button', { name: 'Import a document' }).waitFor()
    await page.getByLabel('Name of the new PRD (optional)').fill('Dropped checkout notes')
    await page.getByLabel('Draft missing sections with AI').uncheck()
    const bytes = readFileSync(DOCX).toString('base64')
    const highlighted = await page.evaluate(async b64 => {
      const data = Uint8Array.from(atob(b64), c => c.charCodeAt(0))
      const transfer = new DataTransfer()
      transfer.items.add(new File([data], 'checkout.docx', { type: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document' }))
      const zone = document.querySelector('.list-page')
      const fire = type => zone.querySelector('#prd-filter').dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }))
      fire('dragenter')
      fire('dragover')
      const active = zone.classList.contains('import-drop-active')
      fire('drop')
      return active && !zone.classList.contains('import-drop-active')
    }, bytes)
    assert.ok(highlighted, 'the page shows where to drop while a file is dragged over it')
    assert.equal(await importFinished(page), 'done', await job(page).textContent())
    assert.match(await page.locator('.import-summary').textContent(), /Dropped checkout notes/)
    assert.equal(await page.locator('.import-ai-started').count(), 0, 'no AI draft was asked for')
    const href = await page.getByRole('link', { name: 'Open the new PRD' }).getAttribute('href')
    const prd = await api('GET', `/api/${href.slice(1)}`, { token: await token('alice') })
    assert.equal(prd.status, 200)
    assert.equal(prd.body.title, 'Dropped checkout notes')
  })

  it('sends a file over 4 MiB straight to S3 with the presigned form (CSP and CORS allow it)', async () => {
    const { page, csp } = await person('alice', '/')
    await page.getByRole('button', { name: 'Import a document' }).waitFor()
    const large = paddedDocx(4.5 * 1024 * 1024)
    const requests = []
    page.on('request', request => requests.push(`${request.method()} ${new URL(request.url()).pathname}`))
    await page.locator('#import-file').setInputFiles({ name: 'large-prd.docx', mimeType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', buffer: large })
    assert.equal(await importFinished(page), 'done', `${await job(page).textContent()}\n${csp.join('\n')}`)
    assert.ok(requests.includes('POST /api/imports/uploads'), requests.join('\n'))
    assert.ok(requests.some(r => /^POST \/[^/]*documentsbucket/i.test(r)), `the file went to the bucket: ${requests.join('\n')}`)
    assert.ok(requests.some(r => /^POST \/api\/imports\/[^/]+\/complete$/.test(r)))
    assert.ok(!requests.includes('POST /api/imports'), 'not through the API')
    const table = await page.locator('.import-sections tbody tr td:first-child').allTextContents()
    assert.ok(table.includes('Problem') && table.includes('Goals'), table.join(', '))
    assert.deepEqual(csp, [])
  })

  it('says in words why a file is refused: before the upload, and by the server', async () => {
    const { page } = await person('alice', '/')
    await page.getByRole('button', { name: 'Import a document' }).waitFor()
    // a PNG named .docx: the server looks at the content
    await page.locator('#import-file').setInputFiles({ name: 'diagram.docx', mimeType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', buffer: readFileSync(PNG) })
    assert.equal(await importFinished(page), 'failed')
    const alert = page.locator('.import-job [role="alert"]')
    assert.match(await alert.textContent(), /cannot be imported.*PNG image/)
    assert.match(await job(page).locator('h2').textContent(), /diagram\.docx was not imported/)
    await shot(page, 'import-refused')
    assert.deepEqual(await axe(page, { strictCsp: true }), [], 'the list with a refused import')
    // a picture, picked with the keyboard: refused before anything is sent
    const sent = []
    page.on('request', request => { if (request.url().includes('/api/imports')) sent.push(request.url()) })
    const choosers = []
    page.on('filechooser', chooser => choosers.push(chooser)) // intercepts the picker (set up before the key press)
    await page.getByRole('button', { name: 'Import a document' }).focus()
    await page.keyboard.press('Enter')
    await waitFor(() => choosers.length > 0, { what: 'the file picker opened by Enter', timeout: 5_000 })
    await choosers[0].setFiles(PNG)
    await page.locator('.import-job [role="alert"]', { hasText: 'checkout-flow.png cannot be imported' }).waitFor()
    assert.deepEqual(sent, [])
    await page.getByRole('button', { name: 'Dismiss' }).focus()
    await page.keyboard.press('Enter')
    assert.equal(await page.locator('.import-job').count(), 0)
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'import-pick', 'focus goes back to the button')
  })
})

describe('export from the editor', () => {
  let prd
  before(async () => { prd = await sharedPrd('Export me', '# Export me\n\n## Problem\n\nCarts vanish.\n\n## Goals\n\n- Keep carts\n') })

  const panel = page => page.locator('#panel-export-body') // (its heading is a button named "Export" too: it folds the panel)
  const latest = page => panel(page).locator('.export-result').first()

  async function exportAs (page, format, version) {
    await panel(page).getByLabel(format, { exact: true }).check()
    if (version !== undefined) await panel(page).getByLabel('Version to export').selectOption(version)
    await panel(page).getByRole('button', { name: 'Export', exact: true }).click()
    await waitFor(async () => ['ready', 'failed', 'expired'].includes(await latest(page).getAttribute('data-state')),
      { timeout: EXPORT_TIMEOUT, what: `${format} export`, interval: 200 })
    return latest(page)
  }

  it('exports a PDF whose link downloads a PDF; axe finds nothing serious', async () => {
    const { page } = await person('alice', `/prds/${prd.id}`)
    await openEditor(page, prd.id)
    await panel(page).getByRole('button', { name: 'Export', exact: true }).waitFor()
    const result = await exportAs(page, 'PDF')
    assert.equal(await result.getAttribute('data-state'), 'ready', await result.textContent())
    const link = result.locator('a.export-link')
    assert.match(await link.textContent(), /^Download Export-me-v[\d.]+\.pdf$/)
    assert.match(await result.textContent(), /The link works until .+ \(24 hours\)/)
    assert.match(await panel(page).locator('.export-live').textContent(), /PDF ready/)
    // the panel column scrolls on its own (sticky, at most the viewport's height): a tall viewport shows it all
    await page.setViewportSize({ width: 1280, height: 2000 })
    await shot(page, 'export-ready')
    await page.setViewportSize({ width: 1280, height: 900 })
    assert.deepEqual(await axe(page, { strictCsp: true }), [], 'the editor with the export panel')

    const href = await link.getAttribute('href')
    const fetched = Buffer.from(await (await fetch(href)).arrayBuffer())
    assert.equal(fetched.subarray(0, 5).toString(), '%PDF-')
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()])
    assert.match(download.suggestedFilename(), /^Export-me-v[\d.]+\.pdf$/)
    const saved = readFileSync(await download.path())
    assert.equal(saved.subarray(0, 5).toString(), '%PDF-')
  })

  it('exports a chosen version as Markdown, and publishes to Confluence (or says it is not set up)', async () => {
    const { page } = await person('alice', `/prds/${prd.id}`)
    await openEditor(page, prd.id)
    const options = panel(page).locator('#export-version option')
    await waitFor(async () => (await options.count()) > 1, { what: 'versions listed' })
    const version = await options.nth(1).getAttribute('value')
    const md = await exportAs(page, 'Markdown', version)
    assert.equal(await md.getAttribute('data-state'), 'ready', await md.textContent())
    assert.match(await md.locator('a.export-link').textContent(), new RegExp(`v${version.replace(/\./g, '\\.')}\\.md$`))
    const text = await (await fetch(await md.locator('a.export-link').getAttribute('href'))).text()
    assert.match(text, /## Problem/)

    const page2 = await exportAs(page, 'Confluence')
    const state = await page2.getAttribute('data-state')
    if (state === 'ready') {
      const open = page2.getByRole('link', { name: /Open in Confluence/ })
      assert.equal(await open.getAttribute('target'), '_blank')
      assert.match(await open.getAttribute('href'), /^https?:\/\//)
    } else {
      assert.match(await page2.textContent(), /Confluence is not set up|Confluence/)
    }
  })

  it('lets a viewer export too', async () => {
    const { page } = await person('carol', `/prds/${prd.id}`)
    await page.locator('.cm-content').waitFor()
    await page.locator('.read-only').waitFor()
    // with the keyboard: arrows choose the format, Tab reaches the version and the button, Enter exports
    await panel(page).getByLabel('PDF', { exact: true }).focus()
    await page.keyboard.press('ArrowDown')
    assert.equal(await panel(page).getByLabel('Word', { exact: true }).isChecked(), true)
    await page.keyboard.press('Tab')
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'export-version')
    await page.keyboard.press('Tab')
    await page.keyboard.press('Enter')
    const result = latest(page)
    await waitFor(async () => ['ready', 'failed', 'expired'].includes(await result.getAttribute('data-state')),
      { timeout: EXPORT_TIMEOUT, what: 'Word export', interval: 200 })
    assert.equal(await result.getAttribute('data-format'), 'docx')
    assert.equal(await result.getAttribute('data-state'), 'ready', await result.textContent())
    const href = await result.locator('a.export-link').getAttribute('href')
    assert.match(href, /\.docx\?/)
    const bytes = Buffer.from(await (await fetch(href)).arrayBuffer())
    assert.equal(bytes.subarray(0, 2).toString(), 'PK')
    assert.deepEqual(await axe(page, { strictCsp: true }), [], 'the viewer\'s editor with the export panel')
  })
})
