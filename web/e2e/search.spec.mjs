// Browser tests of search-as-you-type on the PRD list (features/search.ts) against the real local
// stack (BASE_URL) and its GET /api/search, with Debian's Chromium through playwright-core. Run:
//   BASE_URL=http://127.0.0.1:3000 node --test --test-concurrency=1 e2e/search.spec.mjs
// Indexing is asynchronous: a PRD is searched for through the API until it is found before the
// browser looks for it. Screenshots: search-results, search-versions, search-error (ARTIFACTS).
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { api, axe, launch, loginAs, openEditor, shot, token, waitFor } from './helpers.mjs'

const INDEX_TIMEOUT = 20_000 // a new PRD is searchable within this (the indexer is asynchronous)
const VERSION_TIMEOUT = 45_000 // v1.0.0 is cut after the PRD's first quiet spell, then indexed

let browser
const contexts = []

before(async () => { browser = await launch() })
after(async () => {
  for (const context of contexts) await context.close().catch(() => {})
  await browser?.close()
})

/** A logged-in page on the list; CSP complaints, page errors and the search requests are collected. */
async function person (username) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  contexts.push(context)
  const page = await context.newPage()
  const csp = []
  const errors = []
  const searches = []
  const scripts = []
  page.on('pageerror', error => { errors.push(error.message); console.log(`page error: ${error.message}`) })
  page.on('console', message => { if (/Content Security Policy/i.test(message.text())) csp.push(message.text()) })
  page.on('request', request => {
    const url = new URL(request.url())
    if (url.pathname === '/api/search') searches.push(Object.fromEntries(url.searchParams))
  })
  page.on('response', response => { if (response.url().endsWith('.js')) scripts.push(new URL(response.url()).pathname) })
  await loginAs(page, username, '/')
  await box(page).waitFor()
  await page.locator('.prd-item').first().waitFor()
  return { context, page, csp, errors, searches, scripts }
}

const box = page => page.getByLabel('Search PRDs', { exact: true })
const listbox = page => page.getByRole('listbox', { name: 'Search results' })
const searchStatus = page => page.locator('.prd-search').getByRole('status')
const optionOf = (page, prdId) => listbox(page).locator(`[role="option"][data-prd-id="${prdId}"]`)
/** The listbox has the answer to `query` (not one to an earlier prefix, nor a request in flight). */
async function answered (page, query) {
  await waitFor(async () => {
    const said = await searchStatus(page).textContent()
    return said.includes(`“${query}”`) && await page.locator('.prd-search.search-busy').count() === 0
  }, { what: `the answer to “${query}”`, interval: 50, timeout: 45_000 }) // past a 429's Retry-After (other specs share alice's limit)
}

const letters = n => Array.from({ length: n }, () => 'abcdefghijklmnopqrstuvwxyz'[Math.floor(Math.random() * 26)]).join('')

/** Searches through the API as `tok` until `found(results)` holds (the indexer is asynchronous). */
async function searchUntil (tok, params, found, { timeout = INDEX_TIMEOUT, what = 'search hit' } = {}) {
  const qs = new URLSearchParams(params).toString()
  let last
  try {
    return await waitFor(async () => {
      last = await api('GET', `/api/search?${qs}`, { token: tok })
      return last.status === 200 && found(last.body.results) ? last.body.results : false
    }, { timeout, what, interval: 1000 })
  } catch (error) {
    throw new Error(`${error.message}: GET /api/search?${qs} last answered ${last?.status} ${JSON.stringify(last?.body)?.slice(0, 600)}`)
  }
}

async function createPrd (tok, title, markdown) {
  const created = await api('POST', '/api/prds', { token: tok, body: { title, markdown } })
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`)
  return created.body.id
}

describe('search on the PRD list', () => {
  // One distinctive word per run (the stack keeps the PRDs of earlier runs): typed but for its last
  // two letters, the prefix is still this run's alone.
  const word = `glimmer${letters(8)}`
  const prefix = word.slice(0, -2)
  let alice
  let bob
  let mine
  let bobs

  before(async () => {
    alice = await token('alice')
    bob = await token('bob')
    mine = await createPrd(alice, `Supplier plan ${letters(4)}`,
      `# Supplier plan\n\nWhy we do this.\n\n## Risks\n\nThe ${word} supplier may deliver late, so we keep a second one.\n`)
    // bob's own PRD with the same word, not shared with alice
    bobs = await createPrd(bob, `Bob's private notes ${letters(4)}`, `# Private\n\n## Risks\n\nOur ${word} stock is low.\n`)
    await searchUntil(alice, { q: word, mode: 'text' }, results => results.some(r => r.prdId === mine), { what: 'alice\'s PRD indexed' })
    await searchUntil(bob, { q: word, mode: 'text' }, results => results.some(r => r.prdId === bobs), { what: 'bob\'s PRD indexed' })
  })

  it('the route answers as the client expects (errors, access)', async () => {
    const get = async (qs, tok = alice) => await api('GET', `/api/search?${qs}`, { token: tok })
    const hits = await get(new URLSearchParams({ q: word, mode: 'hybrid', limit: '20' }))
    assert.equal(hits.status, 200, JSON.stringify(hits.body))
    assert.equal(hits.body.mode, 'hybrid')
    const hit = hits.body.results.find(r => r.prdId === mine)
    assert.ok(hit, JSON.stringify(hits.body))
    assert.equal(hit.version, '')
    assert.equal(hit.section, 'Risks')
    assert.equal(typeof hit.updatedAt, 'number')
    assert.ok(hit.snippet.some(s => s.highlight && s.text.toLowerCase() === word), JSON.stringify(hit.snippet))
    assert.ok(!hits.body.results.some(r => r.prdId === bobs), 'a PRD alice may not read is never found')
    assert.equal((await get(new URLSearchParams({ q: word }), null)).status, 401)
    const empty = await get('q=%20%20')
    assert.equal(empty.status, 422)
    assert.equal(empty.body.error.code, 'empty_query')
    const long = await get(new URLSearchParams({ q: 'x'.repeat(501) }))
    assert.equal(long.status, 413)
    assert.equal(long.body.error.code, 'query_too_long')
    assert.equal((await get(new URLSearchParams({ q: 'x'.repeat(500) }))).status, 200, 'exactly 500 characters is fine')
    const mode = await get(new URLSearchParams({ q: word, mode: 'fuzzy' }))
    assert.equal(mode.status, 422)
    assert.equal(mode.body.error.code, 'invalid_mode')
    const version = await get(new URLSearchParams({ q: word, version: 'latest' }))
    assert.equal(version.status, 422)
    assert.equal(version.body.error.code, 'invalid_version')
  })

  it('finds a PRD by a prefix of a word in a section, highlighted; the keyboard opens it', async () => {
    const { page, csp, errors, searches, scripts } = await person('alice')
    const chunk = () => scripts.filter(p => /\/assets\/search-[^/]+\.js$/.test(p))
    assert.deepEqual(chunk(), [], 'the list loads the search\'s code only when the box is used')
    assert.equal(await page.getByRole('searchbox', { name: 'Search PRDs' }).count(), 1)
    assert.match(await box(page).getAttribute('placeholder'), /titles and content/)

    // "/" from anywhere on the page (not while typing) goes to the box, which becomes a combobox
    await page.locator('h1').click()
    await page.keyboard.press('/')
    const input = page.getByRole('combobox', { name: 'Search PRDs' })
    await input.waitFor()
    assert.equal(chunk().length, 1, `the search's chunk: ${scripts.join(', ')}`)
    assert.ok(!scripts.some(p => /\/assets\/editor-/.test(p)), 'the list does not load the editor')
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('role')), 'combobox')
    assert.equal(await input.inputValue(), '', 'the "/" is not typed into the box')
    assert.equal(await input.getAttribute('aria-expanded'), 'false')
    assert.equal(await listbox(page).count(), 0, 'no results before a query (the listbox is hidden)')
    // while typing elsewhere, "/" is a character
    await page.getByLabel('Filter PRDs').focus()
    await page.keyboard.press('/')
    assert.equal(await page.getByLabel('Filter PRDs').inputValue(), '/')
    await page.getByLabel('Filter PRDs').fill('')
    await input.focus()

    // one character: nothing is asked, the plain list shows
    await page.keyboard.type(prefix[0])
    await page.waitForTimeout(400)
    assert.equal(searches.length, 0, 'no request under 2 characters')
    assert.equal(await input.getAttribute('aria-expanded'), 'false')
    assert.ok(await page.locator('.prd-item').count() > 0, 'the plain list is there')

    // typing: debounced (far fewer requests than keystrokes), the answer to the whole prefix shown
    await page.keyboard.type(prefix.slice(1), { delay: 40 })
    await answered(page, prefix)
    assert.ok(searches.length >= 1 && searches.length < prefix.length - 1, `debounced: ${searches.length} requests for ${prefix.length} keystrokes`)
    assert.deepEqual(searches.at(-1), { q: prefix, mode: 'hybrid', limit: '20' })
    const option = optionOf(page, mine)
    await option.waitFor()
    assert.equal(await input.getAttribute('aria-expanded'), 'true')
    assert.equal(await input.getAttribute('aria-controls'), await page.locator('[role="listbox"]').getAttribute('id'))
    assert.equal(await option.locator('.search-section').textContent(), 'Risks')
    assert.equal(await option.locator('.search-version').count(), 0, 'the current document has no version badge')
    const marks = (await option.locator('mark').allTextContents()).map(t => t.toLowerCase())
    assert.ok(marks.some(t => t.startsWith(prefix)), `the word is highlighted: ${JSON.stringify(marks)}`)
    assert.match((await option.locator('.search-snippet').textContent()).toLowerCase(), new RegExp(`the ${word} supplier`))
    assert.equal(await optionOf(page, bobs).count(), 0, 'bob\'s PRD (not shared with alice) is not shown')
    assert.match(await searchStatus(page).textContent(), /^\d+ results? for “/)
    await shot(page, 'search-results')
    assert.deepEqual(await axe(page, { strictCsp: true }), [], 'the list with search results open')

    // the keyboard: Down/Up move the active option, wrapping; Enter opens it
    const options = listbox(page).getByRole('option')
    const n = await options.count()
    const activeId = async () => await input.getAttribute('aria-activedescendant')
    await page.keyboard.press('ArrowUp')
    assert.equal(await activeId(), await options.nth(n - 1).getAttribute('id'), 'Up from none goes to the last')
    await page.keyboard.press('ArrowDown')
    assert.equal(await activeId(), await options.nth(0).getAttribute('id'), 'Down from the last wraps to the first')
    assert.equal(await options.nth(0).getAttribute('aria-selected'), 'true')
    const index = await options.evaluateAll((els, id) => els.findIndex(el => el.dataset.prdId === id), mine)
    for (let i = 0; i < index; i++) await page.keyboard.press('ArrowDown')
    assert.equal(await activeId(), await option.getAttribute('id'))
    assert.equal(await option.getAttribute('aria-selected'), 'true')
    assert.equal(await page.locator('[role="option"][aria-selected="true"]').count(), 1)
    await page.keyboard.press('Enter')
    await page.waitForURL(url => url.pathname === `/prds/${mine}` && url.searchParams.get('section') === 'Risks')
    // ... at the matched section: the cursor goes to "Risks" (the outline marks it) once the text is
    // there, and the address becomes the PRD's own
    await page.locator('.outline button[aria-current="location"]', { hasText: 'Risks' }).waitFor()
    await page.waitForURL(url => url.pathname === `/prds/${mine}` && url.search === '')
    await openEditor(page, mine)
    assert.deepEqual(csp, [])
    assert.deepEqual(errors, [])
  })

  it('Escape clears the query and closes; a click opens a result; nothing matching says so', async () => {
    const { page, errors } = await person('alice')
    const input = box(page)
    await input.fill(word)
    await answered(page, word)
    await optionOf(page, mine).waitFor()
    await page.keyboard.press('Escape')
    assert.equal(await input.inputValue(), '')
    assert.equal(await input.getAttribute('aria-expanded'), 'false')
    assert.equal(await input.getAttribute('aria-activedescendant'), null)
    assert.equal(await listbox(page).count(), 0)
    assert.equal(await searchStatus(page).textContent(), '')
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('role')), 'combobox', 'the focus stays in the box')

    // words no PRD holds: by default (both), the closest by meaning, said to be only that
    const nothing = `zq${letters(12)}`
    await input.fill(nothing)
    await page.getByText(`No PRD contains “${nothing}”`, { exact: false }).waitFor()
    assert.ok(await page.locator('.search-match').count() > 0, 'meaning-only results are labelled')
    // ... and in words mode, nothing
    await page.getByLabel('Match').selectOption('text')
    await page.getByText(`No PRDs match “${nothing}”`).waitFor()
    assert.equal(await input.getAttribute('aria-expanded'), 'false')

    // a click opens
    await input.fill(word)
    await answered(page, word)
    await optionOf(page, mine).click()
    await page.waitForURL(url => url.pathname === `/prds/${mine}`)
    assert.deepEqual(errors, [])
  })

  it('shows the version of a hit in a past version when asked to include them', async () => {
    // v1.0.0 is cut by the server after the PRD's creation settles, then indexed
    await searchUntil(alice, { q: word, mode: 'text', version: '*' }, results => results.some(r => r.prdId === mine && r.version !== ''),
      { timeout: VERSION_TIMEOUT, what: 'a version of alice\'s PRD indexed' })
    const { page } = await person('alice')
    await box(page).focus() // the search's controls come with its code, when the box is first used
    await page.getByLabel('Include past versions').check()
    await box(page).fill(word)
    await answered(page, word)
    const badges = await optionOf(page, mine).locator('.search-version').allTextContents()
    assert.ok(badges.some(b => /^v\d+\.\d+\.\d+$/.test(b)), `a version badge: ${JSON.stringify(badges)}`)
    assert.ok(await optionOf(page, mine).count() >= 2, 'the current document and its version')
    assert.equal(await optionOf(page, bobs).count(), 0)
    await shot(page, 'search-versions')
    assert.deepEqual(await axe(page, { strictCsp: true }), [], 'results with version badges')
  })
})

describe('search answers the page does not trust blindly (the route stubbed in the browser)', () => {
  const stubHit = (prdId, title, snippet) => ({
    prdId, title, section: 'Notes', sectionIndex: 1, version: '', score: 1, updatedAt: Date.now(), snippet
  })

  it('drops a slow answer that arrives after a newer one', async () => {
    const { page, errors } = await person('alice')
    await page.route('**/api/search?*', async route => {
      const q = new URL(route.request().url()).searchParams.get('q')
      if (q === 'al') await new Promise(resolve => setTimeout(resolve, 1500)) // the older query answers last
      await route.fulfill({
        status: 200,
        contentType: 'application/json',
        body: JSON.stringify({ results: [stubHit(`stub_${q}`, `Answer to ${q}`, [{ text: q, highlight: true }])], mode: 'hybrid', engine: 'stub' })
      }).catch(() => {}) // aborted by the page meanwhile
    })
    const input = box(page)
    await input.fill('al')
    await page.waitForTimeout(300) // past the debounce: "al" is on its way
    await input.fill('alp')
    await answered(page, 'alp')
    await page.waitForTimeout(1700) // the answer to "al" would have come by now
    assert.deepEqual(await listbox(page).getByRole('option').evaluateAll(els => els.map(el => el.dataset.prdId)), ['stub_alp'])
    assert.match(await searchStatus(page).textContent(), /“alp”/)
    assert.deepEqual(errors, [])
  })

  it('renders snippets as text, never as HTML', async () => {
    const { page, errors } = await person('alice')
    await page.route('**/api/search?*', async route => {
      await route.fulfill({
        status: 200,
        contentType: 'application/json',
        body: JSON.stringify({
          results: [stubHit('stub_html', '<b>Bold</b> title', [
            { text: 'before <img src=x onerror="window.__pwned=1"> ', highlight: false },
            { text: '<script>window.__pwned=2</script>', highlight: true }])],
          mode: 'hybrid',
          engine: 'stub'
        })
      })
    })
    await box(page).fill('img')
    await answered(page, 'img')
    const option = optionOf(page, 'stub_html')
    assert.equal(await option.locator('.search-result-title').textContent(), '<b>Bold</b> title')
    assert.equal(await option.locator('mark').textContent(), '<script>window.__pwned=2</script>')
    assert.equal(await listbox(page).locator('img, script, b').count(), 0)
    assert.equal(await page.evaluate(() => window.__pwned), undefined)
    assert.deepEqual(errors, [])
  })

  it('says in words why a search failed: too fast, too long, unavailable', async () => {
    const { page, errors, searches } = await person('alice')
    let answer = { status: 429, headers: { 'retry-after': '7' }, body: { error: { code: 'rate_limited', message: 'Too many requests.' } } }
    await page.route('**/api/search?*', async route => {
      await route.fulfill({ status: answer.status, headers: answer.headers ?? {}, contentType: 'application/json', body: JSON.stringify(answer.body) })
    })
    const input = box(page)
    await input.fill('risks')
    await searchStatus(page).filter({ hasText: 'Searching too fast — try again in 7 s' }).waitFor()
    assert.equal(await searchStatus(page).getAttribute('aria-live'), 'polite')
    await shot(page, 'search-error')

    answer = { status: 503, body: { error: { code: 'search_unavailable', message: 'The search engine is down.' } } }
    await input.fill('goals')
    await searchStatus(page).filter({ hasText: 'Search is unavailable right now' }).waitFor()

    answer = { status: 413, body: { error: { code: 'query_too_long', message: 'the search query is longer than 500 characters' } } }
    await input.fill('metrics')
    await searchStatus(page).filter({ hasText: 'That search is too long' }).waitFor()

    // over 500 characters: said at once, without asking the server
    const before = searches.length
    await input.fill('y'.repeat(501))
    await searchStatus(page).filter({ hasText: 'That search is too long' }).waitFor()
    await page.waitForTimeout(400)
    assert.equal(searches.length, before)

    answer = { status: 200, body: 'not a search answer' }
    await input.fill('timeline')
    await searchStatus(page).filter({ hasText: 'cannot read' }).waitFor()
    assert.equal(await input.getAttribute('aria-expanded'), 'false')
    assert.deepEqual(errors, [], 'no crash')
    // the page still works: the plain list and the box
    await page.keyboard.press('Escape')
    assert.equal(await searchStatus(page).textContent(), '')
    assert.ok(await page.locator('.prd-item').count() > 0)
  })
})

