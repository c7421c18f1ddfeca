// Browser tests of the version history panel (src/features/history.ts) against the local stack:
// the list, comparing two versions per section, restoring one (a co-editor's editor follows through
// the CRDT), saving a named version (the list of a co-editor follows live), what a viewer sees, and
// axe on each. Run: BASE_URL=http://127.0.0.1:3000 node --test e2e/history.spec.mjs
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  BASE_URL, api, axe, editorText, launch, loginAs, openEditor, serverMarkdown, sharedPrd, shot, waitFor
} from './helpers.mjs'

let browser
const contexts = []
const cspViolations = []

/** A logged-in page; `axe` pages bypass the CSP (axe is injected as an inline script), the others keep it. */
async function person (username, path, { axe = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: axe })
  contexts.push(context)
  const page = await context.newPage()
  page.on('pageerror', error => console.log(`page error (${username}): ${error.message}`))
  page.on('console', message => { if (/Content Security Policy/.test(message.text())) cspViolations.push(`${username}: ${message.text()}`) })
  await loginAs(page, username, path)
  return { context, page }
}

before(async () => { browser = await launch() })
after(async () => {
  for (const context of contexts) await context.close().catch(() => {})
  await browser?.close()
})

const versionsOf = async (id, tok) => {
  const r = await api('GET', `/api/prds/${id}/versions?limit=200`, { token: tok })
  assert.equal(r.status, 200, JSON.stringify(r.body))
  return r.body.items
}
const history = page => page.locator('.panel-history')
/** A screenshot showing the history panel: the panel column scrolls by itself (a full-page shot
 *  would not show it), so a taller window for the moment. */
async function panelShot (page, name, also) {
  const size = page.viewportSize()
  await page.setViewportSize({ width: size.width, height: 1500 })
  await history(page).evaluate(el => el.scrollIntoView({ block: 'end' }))
  if (also) await also.evaluate(el => el.scrollIntoView({ block: 'nearest' }))
  await shot(page, name)
  await page.setViewportSize(size)
}
const row = (page, version) => history(page).locator(`.hist-item[data-version="${version}"]`)

/** Types at the end of the document and waits until the server holds it. */
async function typeAtEnd (page, id, tok, text) {
  await page.locator('.cm-content').click()
  await page.keyboard.press('Control+End')
  await page.keyboard.type(text, { delay: 5 })
  await page.locator('[data-sync-state="saved"]').waitFor({ timeout: 15_000 })
  const last = text.trim().split('\n').pop()
  await waitFor(async () => (await serverMarkdown(id, tok)).includes(last), { what: `the server to hold "${last}"`, interval: 400 })
}

async function saveVersion (id, tok, name) {
  const r = await api('POST', `/api/prds/${id}/versions`, { token: tok, body: { name, message: `${name} (from the test)` } })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  return r.body
}

describe('version history panel', () => {
  const initial = '# Launch plan\n\n## Goals\n\nShip the beta to ten customers.\n\n## Scope\n\nWeb only.\n'
  let prd
  let alice
  let bob
  let first
  let last

  it('lists the versions newest first, with kind, summary, authors and time', async () => {
    prd = await sharedPrd('History of a launch plan', initial)
    await waitFor(async () => (await versionsOf(prd.id, prd.alice)).some(v => v.version === '1.0.0'), { what: 'v1.0.0', interval: 400 })
    alice = await person('alice', `/prds/${prd.id}`, { axe: true })
    await openEditor(alice.page, prd.id)
    bob = await person('bob', `/prds/${prd.id}`)
    await openEditor(bob.page, prd.id)

    // A few versions, editing in the editor in between.
    await typeAtEnd(alice.page, prd.id, prd.alice, '\n## Risks\n\nThe beta slips a week.\n')
    first = await saveVersion(prd.id, prd.alice, 'Risks written')
    await typeAtEnd(alice.page, prd.id, prd.alice, '\nMitigation: start the onboarding early.\n')
    last = await saveVersion(prd.id, prd.alice, 'Mitigation added')

    const list = history(alice.page)
    await row(alice.page, last.version).waitFor({ timeout: 15_000 }) // arrived live (version-created notices)
    await row(alice.page, '1.0.0').waitFor()
    // Newest first, as the API lists them (versions cut by the server meanwhile arrive live too).
    let shown
    await waitFor(async () => {
      shown = await list.locator('.hist-item').evaluateAll(items => items.map(li => li.dataset.version))
      return JSON.stringify(shown) === JSON.stringify((await versionsOf(prd.id, prd.alice)).map(v => v.version))
    }, { what: 'the list to match the API', interval: 500 })
    const top = row(alice.page, last.version)
    assert.match(await top.locator('.hist-summary').textContent(), /^Mitigation added: /)
    assert.deepEqual(await top.locator('.hist-badge').allTextContents(), [last.kind[0].toUpperCase() + last.kind.slice(1), 'Named'])
    // (bob, whose editor was open, is sometimes counted as an author too: see the report)
    assert.match(await top.locator('.hist-meta').textContent(), /^alice(?: and bob)? · (just now|\d+ (seconds?|minutes?) ago)$/)
    const time = top.locator('time')
    assert.ok(Date.parse(await time.getAttribute('datetime')) > 0)
    assert.match(await time.getAttribute('title'), /\d{4}/)
    assert.deepEqual(await row(alice.page, '1.0.0').locator('.hist-badge').allTextContents(), ['Initial'])

    // Keyboard: Down moves between versions; Enter opens one.
    await top.locator('.hist-row').focus()
    await alice.page.keyboard.press('ArrowDown')
    assert.equal(await alice.page.evaluate(() => document.activeElement?.closest('.hist-item')?.dataset.version), shown[1])
    await alice.page.keyboard.press('Enter')
    await row(alice.page, shown[1]).getByRole('button', { name: `View v${shown[1]}` }).waitFor()
    assert.equal(await row(alice.page, shown[1]).locator('.hist-row').getAttribute('aria-expanded'), 'true')
    assert.deepEqual(await axe(alice.page), [])
    await panelShot(alice.page, 'history-list')
  })

  it('views a version read-only, as text', async () => {
    const { page } = alice
    await row(page, '1.0.0').locator('.hist-row').click()
    const view = row(page, '1.0.0').getByRole('button', { name: 'View v1.0.0' })
    await view.click()
    const dialog = page.getByRole('dialog', { name: 'v1.0.0 — read-only' })
    await dialog.getByRole('region', { name: 'Markdown of v1.0.0' }).waitFor()
    assert.equal(await dialog.locator('.hist-md').textContent(), initial)
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'detached' })
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'View v1.0.0', 'focus back on the opener')
  })

  it('compares the first and the last versions per section, inline and side by side, by keyboard', async () => {
    const { page } = alice
    await history(page).getByRole('button', { name: 'Compare…' }).click()
    const dialog = page.getByRole('dialog', { name: 'Compare versions' })
    await dialog.getByLabel('From (older)').selectOption('1.0.0')
    await dialog.getByLabel('To (newer)').selectOption(last.version)
    const risks = dialog.locator('.hist-section[data-action="added"]', { hasText: 'Risks' })
    await risks.waitFor()
    assert.match(await risks.locator('summary').textContent(), /Added\s+Risks/)
    assert.ok(await risks.evaluate(d => d.open), 'a few sections: each open')
    const added = await risks.locator('ins').allTextContents()
    assert.ok(added.some(t => t.includes('The beta slips a week.')), added.join(' | '))
    assert.ok(added.every(t => t.startsWith('Added: ')), 'words for screen readers, not only colour')
    assert.equal(await risks.locator('.hist-add .hist-sign').first().textContent(), '+')
    assert.match(await dialog.locator('.hist-diff-summary').textContent(), new RegExp(`v1\\.0\\.0 → v${last.version.replace(/\./g, '\\.')}`))
    assert.match(await dialog.getByRole('status').textContent(), /1 section changed/)

    // N / P move between changes (focus and scroll), also into a collapsed part.
    await dialog.locator('.hist-diff-result summary').first().focus()
    await page.keyboard.press('n')
    assert.ok(await page.evaluate(() => document.activeElement?.classList.contains('hist-change')))
    assert.match(await dialog.getByRole('status').textContent(), /^Change 1 of \d+/)

    await dialog.getByLabel('Side by side').check()
    await risks.locator('.hist-row2').first().waitFor()
    await dialog.locator('.hist-whole > summary').click()
    assert.deepEqual(await axe(page), [])
    await shot(page, 'history-diff')
    await dialog.getByLabel('Inline').check()
    await risks.locator('.hist-line').first().waitFor()
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'detached' })
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Compare…')
  })

  it('restores v1.0.0 after a confirmation: a co-editor\'s editor follows, the new version shows', async () => {
    const { page } = alice
    const target = (await api('GET', `/api/prds/${prd.id}/versions/1.0.0`, { token: prd.alice })).body.markdown
    assert.equal(target, initial)
    await row(page, '1.0.0').getByRole('button', { name: 'Restore v1.0.0' }).click()
    const dialog = page.getByRole('alertdialog', { name: 'Restore v1.0.0?' })
    await dialog.waitFor()
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Cancel', 'the safe choice has focus')
    assert.deepEqual(await axe(page), [])
    await shot(page, 'history-restore-confirm')
    await dialog.getByRole('button', { name: 'Restore v1.0.0' }).click()
    await dialog.waitFor({ state: 'detached' })
    const said = await history(page).locator('.hist-status').getByRole('status').filter({ hasText: 'Restored v1.0.0' }).textContent()
    const made = /the document is now v(\d+\.\d+\.\d+)/.exec(said)?.[1]
    assert.ok(made, said)
    await waitFor(async () => (await editorText(bob.page)) === target, { what: 'bob\'s editor to show v1.0.0' })
    await waitFor(async () => (await editorText(page)) === target, { what: 'alice\'s editor to show v1.0.0' })
    assert.equal(await serverMarkdown(prd.id, prd.alice), target)
    const restored = row(page, made)
    await restored.waitFor()
    assert.ok((await restored.locator('.hist-badge').allTextContents()).includes('Restored'))
    await row(bob.page, made).waitFor({ timeout: 15_000 }) // bob's list, live
    assert.deepEqual(cspViolations.filter(v => v.startsWith('bob')), [], 'the panel keeps the CSP')
  })

  it('saves a named version from the panel; it shows in the co-editor\'s list live', async () => {
    const { page } = alice
    await history(page).getByRole('button', { name: 'Save version…' }).click()
    const dialog = page.getByRole('dialog', { name: 'Save a version' })
    await dialog.getByLabel('Name (optional)').fill('Back to the first draft')
    await dialog.getByLabel('Message (optional)').fill('After the review: the risks go to their own PRD.')
    await dialog.getByRole('button', { name: 'Save version' }).click()
    await dialog.waitFor({ state: 'detached' })
    const said = await history(page).locator('.hist-status').getByRole('status').filter({ hasText: /^Saved/ }).textContent()
    const made = /^Saved v(\d+\.\d+\.\d+) “Back to the first draft”\.$/.exec(said)?.[1]
    assert.ok(made, said)
    await row(page, made).waitFor()
    assert.match(await row(page, made).locator('.hist-summary').textContent(), /^Back to the first draft: /)
    await row(bob.page, made).waitFor({ timeout: 15_000 })
    await row(bob.page, made).locator('.hist-row').click()
    assert.equal(await row(bob.page, made).locator('.hist-message').textContent(), 'After the review: the risks go to their own PRD.')
    assert.equal(await history(page).locator('.hist-item').first().getAttribute('data-version'), made)
  })

  it('shows a viewer no restore or save controls, and follows role changes', async () => {
    const carol = await person('carol', `/prds/${prd.id}`, { axe: true })
    const { page } = carol
    // Not openEditor: a viewer's editor of a PRD holding deletions does not reach "Saved" today (its
    // sync step 2 carries the delete set, which the server refuses as an edit: read_only).
    await page.locator('.cm-content').waitFor()
    await row(page, '1.0.0').waitFor()
    await row(page, '1.0.0').locator('.hist-row').click()
    await row(page, '1.0.0').getByRole('button', { name: 'View v1.0.0' }).waitFor()
    assert.equal(await history(page).getByRole('button', { name: /^Restore/ }).count(), 0)
    assert.equal(await history(page).getByRole('button', { name: /^Save version/ }).count(), 0)
    assert.equal(await history(page).getByRole('button', { name: 'Compare…' }).count(), 1)
    assert.match(await history(page).locator('.hist-clone-input').inputValue(), new RegExp(`^git clone http://[^ ]+/git/${prd.id}\\.git$`))
    assert.deepEqual(await axe(page), [])
    await panelShot(page, 'history-viewer', row(page, '1.0.0').locator('.hist-row-actions'))

    // Made an editor while the editor is open: the controls appear; a viewer again: they go.
    assert.equal((await api('PUT', `/api/prds/${prd.id}/members/carol`, { token: prd.alice, body: { role: 'editor' } })).status, 200)
    await history(page).getByRole('button', { name: 'Save version…' }).waitFor({ timeout: 15_000 })
    await row(page, '1.0.0').getByRole('button', { name: 'Restore v1.0.0' }).waitFor()
    assert.equal((await api('PUT', `/api/prds/${prd.id}/members/carol`, { token: prd.alice, body: { role: 'viewer' } })).status, 200)
    await history(page).getByRole('button', { name: 'Save version…' }).waitFor({ state: 'hidden', timeout: 15_000 })
    assert.equal(await history(page).getByRole('button', { name: /^Restore/ }).count(), 0)
  })

  it('copies the clone command (or selects it), and the command clones with a token', async () => {
    const { page, context } = alice
    await history(page).locator('.hist-clone > summary').click()
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE_URL })
    await history(page).getByRole('button', { name: 'Copy' }).click()
    await history(page).getByText('Copied the clone command.').waitFor()
    const copied = await page.evaluate(async () => await navigator.clipboard.readText())
    assert.equal(copied, await history(page).getByLabel('Clone command').inputValue())
    const url = copied.replace(/^git clone /, '')
    // The URL answers git's smart HTTP with the caller's token as the basic-auth password.
    const refs = await fetch(`${url}/info/refs?service=git-upload-pack`, {
      headers: { authorization: `Basic ${Buffer.from(`x:${prd.alice}`).toString('base64')}` }
    })
    assert.equal(refs.status, 200)
    assert.match(await refs.text(), /refs\/tags\/v1\.0\.0/)
  })
})
