// The AI assistant panel and the outline's current section, in Chromium against the real local stack
// (BASE_URL). The stack's AI is the offline drafter (`make dev`) or an echoing fake Bedrock (`make
// test`): the text itself is never asserted, only its shape (streamed, non-empty, applied).
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { api, axe, editorText, launch, loginAs, openEditor, serverMarkdown, sharedPrd, shot, token, waitFor } from './helpers.mjs'

const TIMEOUT = { timeout: 180_000 }
const PRD = title => `# ${title}

## Overview

A faster checkout for returning customers. It depends on the legacy payment gateway and stores card
tokens, which raises privacy questions. Who owns the migration is still TBD.

## Goals

- Cut checkout time from 90 s to 30 s by Q3.
- Raise conversion by 5 % for returning customers.

## Requirements

- One-click payment for saved cards.
- Works on mobile web and in the app.
`

let browser
const contexts = []
before(async () => { browser = await launch() })
after(async () => {
  for (const context of contexts) await context.close().catch(() => {})
  await browser?.close()
})

/** `username` on the PRD's editor, with the AI panel loaded. */
async function open (username, prdId) {
  // bypassCSP: axe is injected as an inline script (the app itself runs under its strict CSP otherwise)
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true })
  contexts.push(context)
  const page = await context.newPage()
  page.on('pageerror', error => console.log(`page error (${username}): ${error.message}`))
  await loginAs(page, username, `/prds/${prdId}`)
  await openEditor(page, prdId)
  await page.locator('.panel-ai .ai-jobs').waitFor({ state: 'attached' })
  return page
}

const panel = page => page.locator('.panel-ai')
const card = (page, status) => panel(page).locator(status ? `.ai-job[data-status="${status}"]` : '.ai-job')
/** Scrolls the (sticky, scrolling) panel column so that the whole card shows in a screenshot. */
const reveal = async locator => await locator.evaluate(el => el.scrollIntoView({ block: 'end' }))
const currentSection = async page => await page.locator('.panel-outline [aria-current="location"]').textContent()

/** Puts the cursor at the end of the editor line holding `text`. */
async function cursorIn (page, text) {
  await page.locator('.cm-line', { hasText: text }).first().click()
  await page.keyboard.press('End')
}

async function ask (page, { prompt, mode, section }) {
  await page.getByLabel('What should the AI write?').fill(prompt)
  if (mode) await page.getByLabel('Mode').selectOption(mode)
  if (section) await page.getByLabel('Section', { exact: true }).selectOption(section)
  await page.getByLabel('What should the AI write?').press('Control+Enter')
}

/** Counts the distinct lengths the streamed output shows, as the page changes (not by polling). */
async function watchOutput (page) {
  await page.evaluate(() => {
    const seen = new Set()
    globalThis.aiWatch = { seen, stop: false }
    const root = document.querySelector('.panel-ai')
    new MutationObserver(() => {
      for (const el of root.querySelectorAll('.ai-job[data-status="running"] .ai-output, .ai-job[data-status="queued"] .ai-output')) {
        if (el.textContent) seen.add(el.textContent.length)
      }
      if (root.querySelector('.ai-job button[data-key="stop"]')) globalThis.aiWatch.stop = true
    }).observe(root, { subtree: true, childList: true, characterData: true, attributes: true })
  })
}
const watched = async page => await page.evaluate(() => ({ lengths: [...globalThis.aiWatch.seen], stop: globalThis.aiWatch.stop }))

async function jobsOf (prdId, tok, status) {
  const r = await api('GET', `/api/prds/${prdId}/ai/jobs${status ? `?status=${status}` : ''}`, { token: tok })
  assert.equal(r.status, 200)
  return r.body.items
}

describe('the outline', () => {
  it('marks the section holding the cursor, live as it moves and as people type', TIMEOUT, async () => {
    const { id } = await sharedPrd('Outline current section', PRD('Outline current section'))
    const page = await open('alice', id)
    await cursorIn(page, 'Cut checkout time')
    await waitFor(async () => await currentSection(page) === 'Goals', { what: 'Goals marked' })
    assert.equal(await page.locator('.panel-outline [aria-current]').count(), 1)
    await cursorIn(page, 'One-click payment')
    await waitFor(async () => await currentSection(page) === 'Requirements', { what: 'Requirements marked' })
    // a new heading typed above the cursor becomes the current section
    await page.keyboard.press('Enter')
    await page.keyboard.type('\n### Payments\n\nSaved cards first.')
    await waitFor(async () => await currentSection(page) === 'Payments', { what: 'typed heading marked' })
    // the outline's buttons move the cursor, and the mark follows
    await page.locator('.panel-outline').getByRole('button', { name: 'Overview' }).click()
    await waitFor(async () => await currentSection(page) === 'Overview', { what: 'Overview marked after a jump' })
  })
})

describe('the AI assistant', () => {
  it('streams a draft to alice, shows it pending to bob, and applies it to both editors when approved', TIMEOUT, async () => {
    const title = 'AI draft of the risks'
    const { id, alice: aliceToken } = await sharedPrd(title, PRD(title))
    const alice = await open('alice', id)
    const bob = await open('bob', id)

    // the target follows alice's cursor until she picks one
    await cursorIn(alice, 'Cut checkout time')
    await waitFor(async () => await alice.getByLabel('Section', { exact: true }).inputValue() === 'Goals', { what: 'default section Goals' })
    await cursorIn(alice, 'One-click payment')
    await waitFor(async () => await alice.getByLabel('Section', { exact: true }).inputValue() === 'Requirements', { what: 'default section follows the cursor' })
    assert.equal(await alice.locator('#ai-section option[value="Risks"]').count(), 1, '"Risks" is offered as a new standard section')
    assert.deepEqual(await axe(alice), [], 'the editor with the AI panel open')

    await watchOutput(alice)
    await ask(alice, { prompt: 'List the main delivery risks, each with a mitigation and an owner.', mode: 'draft', section: 'Risks' })
    await card(alice).first().waitFor()
    await alice.locator('.panel-ai .ai-job[data-status="running"] .ai-output:not(:empty)').waitFor({ timeout: 30_000 })
      .then(() => shot(alice, 'ai-streaming'), () => shot(alice, 'ai-streaming'))
    await card(alice, 'done').waitFor({ timeout: 60_000 })
    const { lengths, stop } = await watched(alice)
    assert.ok(lengths.filter(n => n > 0).length >= 2, `the output grew as it streamed (lengths seen: ${lengths.join(', ')})`)
    assert.ok(stop, 'a Stop button was shown while generating')
    assert.equal(await card(alice, 'done').getByRole('button', { name: 'Stop' }).count(), 0)
    assert.match(await card(alice, 'done').locator('.ai-facts').textContent(), /Model: |Provider: /)
    const suggestion = await card(alice, 'done').getByLabel(/Suggestion/).inputValue()
    assert.ok(suggestion.trim().length > 0, 'the suggestion is shown for review (editable)')
    assert.ok(!(await editorText(alice)).includes('## Risks'), 'nothing is applied before approval')

    // bob (an editor, not the requester) sees it pending with alice's name, and cannot decide
    const pending = card(bob, 'done')
    await pending.waitFor({ timeout: 20_000 })
    assert.match(await pending.textContent(), /alice asked for a draft of “Risks”/)
    assert.match(await pending.textContent(), /Pending review/)
    await waitFor(async () => ((await pending.locator('.ai-output').textContent()) ?? '').trim().length > 0, { what: 'bob sees the text' })
    assert.equal(await panel(bob).getByRole('button', { name: 'Approve' }).count(), 0)
    assert.equal(await panel(bob).getByRole('button', { name: 'Reject' }).count(), 0)
    await reveal(pending)
    await shot(bob, 'ai-pending-bob')
    assert.deepEqual(await axe(bob), [], 'a collaborator\'s view of a pending suggestion')
    assert.deepEqual(await axe(alice), [], 'the requester\'s review of a pending suggestion')

    // alice edits the suggestion before approving it: her text is what lands
    await card(alice, 'done').getByLabel(/Suggestion/).fill(`${suggestion.trimEnd()}\n\n- Reviewed by alice before approval.\n`)
    await card(alice, 'done').getByRole('button', { name: 'Approve' }).click()
    await card(alice, 'approved').waitFor({ timeout: 20_000 })
    for (const page of [alice, bob]) {
      await waitFor(async () => /^## Risks\s*$/m.test(await editorText(page)), { what: 'the Risks section in the editor', timeout: 20_000 })
      await waitFor(async () => (await editorText(page)).includes('- Reviewed by alice before approval.'), { what: 'the edited text in the editor' })
      // (an echoing model repeats the PRD's headings inside the section: there may be more than one)
      await page.locator('.panel-outline').getByRole('button', { name: 'Risks', exact: true }).first().waitFor()
    }
    assert.match(await serverMarkdown(id, aliceToken), /^## Risks\s*$/m)
    await card(bob, 'approved').waitFor({ timeout: 20_000 })
    assert.match(await card(bob, 'approved').textContent(), /Approved by alice/)
    await reveal(card(alice, 'approved'))
    await shot(alice, 'ai-approved')
  })

  it('catches up after a reconnect: a suggestion finished while offline shows, ready for review', TIMEOUT, async () => {
    const title = 'AI across a reconnect'
    const { id } = await sharedPrd(title, PRD(title))
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    contexts.push(context)
    const alice = await context.newPage()
    await loginAs(alice, 'alice', `/prds/${id}`)
    await openEditor(alice, id)
    await alice.locator('.panel-ai .ai-jobs').waitFor({ state: 'attached' })
    await ask(alice, { prompt: 'Summarize the requirements in two lines.', mode: 'summarize', section: 'Requirements' })
    await card(alice).first().waitFor()
    await context.setOffline(true) // the WebSocket goes: the chunks and the "done" frame are missed
    await alice.locator('[data-sync-state="offline"]').waitFor()
    const jobId = await card(alice).first().getAttribute('data-job')
    const tok = await token('alice')
    await waitFor(async () => (await api('GET', `/api/ai/jobs/${jobId}`, { token: tok })).body.status === 'done',
      { what: 'the job done meanwhile', timeout: 60_000, interval: 300 })
    await context.setOffline(false)
    await card(alice, 'done').waitFor({ timeout: 30_000 })
    const text = await card(alice, 'done').getByLabel(/Suggestion/).inputValue()
    assert.equal(text, (await api('GET', `/api/ai/jobs/${jobId}`, { token: tok })).body.output)
  })

  it('stops a job while it is generating: cancelled, nothing applied', TIMEOUT, async () => {
    const title = 'AI job stopped'
    const { id, alice: aliceToken } = await sharedPrd(title, PRD(title))
    const before = await serverMarkdown(id, aliceToken)
    const alice = await open('alice', id)

    // the form says what is missing, in words
    await alice.getByLabel('What should the AI write?').fill('   ')
    await alice.getByRole('button', { name: 'Ask the AI' }).click()
    await panel(alice).getByRole('alert').filter({ hasText: 'Write what you want the AI to do.' }).waitFor()
    assert.equal(await alice.getByLabel('What should the AI write?').getAttribute('aria-invalid'), 'true')

    // fill-gaps (every missing standard section: the longest answer) has no target section to choose
    await alice.getByLabel('Mode').selectOption('fill-gaps')
    assert.equal(await alice.getByLabel('Section', { exact: true }).isVisible(), false)
    await ask(alice, { prompt: 'Draft every missing section, with realistic detail.' })
    // the answer to Stop is held until the worker's "cancelled" frame has settled the card and the job
    // was read again: the order that once left the card's buttons disabled for good (the answer then
    // added nothing new to show)
    await alice.route('**/api/ai/jobs/*/cancel', async route => {
      const reread = alice.waitForResponse(r => r.request().method() === 'GET' && /\/api\/ai\/jobs\/[^/]+$/.test(new URL(r.url()).pathname),
        { timeout: 15_000 }).catch(() => {})
      const response = await route.fetch()
      await card(alice, 'cancelled').waitFor({ timeout: 15_000 }).catch(() => {})
      await reread
      await new Promise(resolve => setTimeout(resolve, 300))
      await route.fulfill({ response })
    })
    await card(alice).first().getByRole('button', { name: 'Stop' }).click()
    await card(alice, 'cancelled').waitFor({ timeout: 20_000 })
    assert.match(await card(alice, 'cancelled').textContent(), /Cancelled/)
    assert.equal(await card(alice).getByRole('button', { name: 'Approve' }).count(), 0)
    await new Promise(resolve => setTimeout(resolve, 1500)) // a late chunk or apply would show by now
    assert.equal(await editorText(alice), before)
    assert.equal(await serverMarkdown(id, aliceToken), before)
    const [job] = await jobsOf(id, aliceToken)
    assert.equal(job.status, 'cancelled')
    assert.equal((await jobsOf(id, aliceToken, 'pending')).length, 0)
    // a settled card can be dismissed
    await card(alice, 'cancelled').getByRole('button', { name: 'Dismiss' }).click()
    assert.equal(await card(alice).count(), 0)
  })

  it('explains a conflicting approval in words, then rejects: the document keeps only bob\'s edit', TIMEOUT, async () => {
    const title = 'AI rewrite rejected'
    const { id, alice: aliceToken } = await sharedPrd(title, PRD(title))
    const alice = await open('alice', id)
    const bob = await open('bob', id)

    // mode rewrite, section left at its default: the section holding the cursor
    await cursorIn(alice, 'Raise conversion')
    await alice.getByLabel('Mode').selectOption('rewrite')
    await waitFor(async () => await alice.getByLabel('Section', { exact: true }).inputValue() === 'Goals', { what: 'default section Goals' })
    await alice.getByLabel('What should the AI write?').fill('Make the goals measurable and shorter.')
    await alice.getByRole('button', { name: 'Ask the AI' }).click()
    await card(alice, 'done').waitFor({ timeout: 60_000 })
    await card(bob, 'done').waitFor({ timeout: 20_000 })

    await cursorIn(bob, 'Raise conversion')
    await bob.keyboard.type(' Bob was here.')
    await waitFor(async () => (await serverMarkdown(id, aliceToken)).includes('Bob was here.'), { what: 'bob\'s edit stored' })
    const edited = await serverMarkdown(id, aliceToken)

    await card(alice, 'done').getByRole('button', { name: 'Approve' }).click()
    const problem = card(alice, 'done').getByRole('alert')
    await problem.waitFor({ timeout: 20_000 })
    assert.match(await problem.textContent(), /edited after this suggestion was written.*reject this suggestion, or ask the AI again/i)

    await card(alice, 'done').getByRole('button', { name: 'Reject' }).click()
    await card(alice, 'rejected').waitFor({ timeout: 20_000 })
    await card(bob, 'rejected').waitFor({ timeout: 20_000 })
    assert.match(await card(bob, 'rejected').textContent(), /Rejected by alice/)
    assert.equal(await serverMarkdown(id, aliceToken), edited)
    await waitFor(async () => await editorText(alice) === edited, { what: 'alice\'s editor shows only bob\'s edit' })
  })

  it('shows a viewer the suggestions read-only, with no AI controls; an owner may decide about an editor\'s job', TIMEOUT, async () => {
    const title = 'AI seen by a viewer'
    const { id, alice: aliceToken } = await sharedPrd(title, PRD(title))
    const bobToken = await token('bob')
    const asked = await api('POST', `/api/prds/${id}/ai/jobs`, { token: bobToken, body: { prompt: 'Draft the timeline.', mode: 'draft', section: 'Timeline' } })
    assert.equal(asked.status, 202, JSON.stringify(asked.body))
    await waitFor(async () => (await api('GET', `/api/ai/jobs/${asked.body.jobId}`, { token: bobToken })).body.status === 'done',
      { what: 'bob\'s job done', timeout: 60_000, interval: 300 })

    const carol = await open('carol', id)
    const pending = card(carol, 'done')
    await pending.waitFor({ timeout: 20_000 })
    assert.match(await pending.textContent(), /bob asked for a draft of “Timeline”/)
    assert.equal(await carol.getByLabel('What should the AI write?').count(), 0, 'no prompt box')
    assert.equal(await carol.getByRole('textbox', { name: /What should the AI write/ }).count(), 0)
    for (const name of ['Ask the AI', 'Approve', 'Reject', 'Stop']) {
      assert.equal(await panel(carol).getByRole('button', { name }).count(), 0, `no ${name} button`)
    }
    await panel(carol).getByText('Only the PRD’s editors and owners can ask the AI').waitFor()
    await reveal(pending)
    await shot(carol, 'ai-viewer')
    assert.deepEqual(await axe(carol), [], 'a viewer\'s AI panel')

    // alice owns the PRD: she may decide about bob's suggestion
    const alice = await open('alice', id)
    await card(alice, 'done').getByRole('button', { name: 'Approve' }).waitFor()
    await card(alice, 'done').getByRole('button', { name: 'Reject' }).click()
    await card(alice, 'rejected').waitFor({ timeout: 20_000 })
    await card(carol, 'rejected').waitFor({ timeout: 20_000 })

    // carol becomes an editor while the page is open: the form appears without a reload
    const promoted = await api('PUT', `/api/prds/${id}/members/carol`, { token: aliceToken, body: { role: 'editor' } })
    assert.equal(promoted.status, 200)
    await carol.getByLabel('What should the AI write?').waitFor({ timeout: 20_000 })
    assert.equal(await panel(carol).getByRole('button', { name: 'Approve' }).count(), 0)
  })
})
