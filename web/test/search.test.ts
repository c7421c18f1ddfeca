import { describe, expect, it } from 'vitest'
import {
  LatestOnly, MAX_QUERY_CHARS, countText, isMode, moveActive, parseAnswer, parseResult, problemOf, queryState,
  resultPath, retryAfterSeconds, searchPath, snippetSegments, versionLabel
} from '../src/features/search-model'

const HIT = {
  prdId: 'p_01HXYZ',
  title: 'Checkout revamp',
  section: 'Goals',
  sectionIndex: 2,
  version: '',
  score: 0.8123,
  updatedAt: 1_700_000_000_000,
  snippet: [{ text: 'Make the ', highlight: false }, { text: 'checkout', highlight: true }, { text: ' faster.', highlight: false }],
  match: 'words'
}

describe('when a query is sent', () => {
  it('needs two characters after trimming, counted as code points', () => {
    expect(queryState('')).toBe('short')
    expect(queryState(' a ')).toBe('short')
    expect(queryState('😀')).toBe('short') // one character, two UTF-16 units
    expect(queryState('ab')).toBe('ok')
    expect(queryState('  ab  ')).toBe('ok')
    expect(queryState('日本')).toBe('ok')
  })

  it('refuses more than the server\'s 500 characters without asking it', () => {
    expect(MAX_QUERY_CHARS).toBe(500)
    expect(queryState('x'.repeat(500))).toBe('ok')
    expect(queryState(` ${'x'.repeat(500)} `)).toBe('ok')
    expect(queryState('x'.repeat(501))).toBe('long')
    expect(queryState('😀'.repeat(500))).toBe('ok') // 1,000 UTF-16 units, 500 characters
  })

  it('builds the request: trimmed text, mode, limit, and every version only when asked', () => {
    expect(searchPath('  goals & risks ', { mode: 'hybrid', allVersions: false }))
      .toBe('/api/search?q=goals+%26+risks&mode=hybrid&limit=20')
    const url = new URL(searchPath('a/b?c', { mode: 'text', allVersions: true, limit: 5 }), 'http://x')
    expect(url.pathname).toBe('/api/search')
    expect(Object.fromEntries(url.searchParams)).toEqual({ q: 'a/b?c', mode: 'text', limit: '5', version: '*' })
  })

  it('knows the modes', () => {
    expect(isMode('hybrid')).toBe(true)
    expect(isMode('semantic')).toBe(true)
    expect(isMode('text')).toBe(true)
    expect(isMode('fuzzy')).toBe(false)
  })
})

describe('reading the answer', () => {
  it('reads a result as the route gives it', () => {
    const answer = parseAnswer({ results: [HIT, { ...HIT, version: '1.2.0', section: '' }], mode: 'hybrid', engine: 'local' })
    expect(answer).toEqual({
      mode: 'hybrid',
      engine: 'local',
      results: [
        { ...HIT },
        { ...HIT, version: '1.2.0', section: '' }
      ]
    })
  })

  it('is not a search answer without a results list', () => {
    expect(parseAnswer(null)).toBeNull()
    expect(parseAnswer('oops')).toBeNull()
    expect(parseAnswer({ error: { code: 'x' } })).toBeNull()
    expect(parseAnswer({ results: {} })).toBeNull()
    expect(parseAnswer({ results: [] })).toEqual({ results: [], mode: '', engine: '' })
  })

  it('drops results without a PRD to open, and fills the rest in', () => {
    const answer = parseAnswer({
      results: [null, 7, { title: 'no id' }, { ...HIT, prdId: '../../admin' }, { ...HIT, prdId: 'x'.repeat(101) },
        { prdId: 'ok_1' }]
    })
    expect(answer?.results).toEqual([{
      prdId: 'ok_1', title: 'Untitled PRD', section: '', sectionIndex: 0, version: '', score: 0, updatedAt: 0, snippet: [],
      match: 'words'
    }])
    expect(parseResult({ ...HIT, match: 'meaning' })?.match).toBe('meaning')
    expect(parseResult({ ...HIT, match: '<b>' })?.match).toBe('words')
    expect(parseResult({ ...HIT, score: 'high', updatedAt: Number.NaN, sectionIndex: -3, title: '   ' }))
      .toMatchObject({ score: 0, updatedAt: 0, sectionIndex: 0, title: 'Untitled PRD' })
  })

  it('keeps snippets as plain text segments: empty parts dropped, neighbours merged', () => {
    expect(snippetSegments(HIT.snippet)).toEqual(HIT.snippet)
    expect(snippetSegments([
      { text: 'a', highlight: false }, { text: '', highlight: true }, { text: 'b', highlight: false },
      { text: 'C', highlight: true }, { text: 'D', highlight: true }, { text: 'e' }
    ])).toEqual([{ text: 'ab', highlight: false }, { text: 'CD', highlight: true }, { text: 'e', highlight: false }])
  })

  it('never reads a snippet as HTML: markup stays text, odd shapes become plain text or nothing', () => {
    const evil = '<img src=x onerror=alert(1)>'
    expect(snippetSegments([{ text: evil, highlight: true }])).toEqual([{ text: evil, highlight: true }])
    expect(snippetSegments(evil)).toEqual([{ text: evil, highlight: false }])
    expect(snippetSegments(['plain ', { text: 'hit', highlight: 'yes' }, 42, { text: 5 }])).toEqual([{ text: 'plain hit', highlight: false }])
    expect(snippetSegments(undefined)).toEqual([])
    expect(snippetSegments({ text: 'x' })).toEqual([])
  })

  it('labels version hits and opens the PRD', () => {
    expect(versionLabel('')).toBeNull()
    expect(versionLabel('  ')).toBeNull()
    expect(versionLabel('1.2.0')).toBe('v1.2.0')
    expect(versionLabel('v1.2.0')).toBe('v1.2.0')
    expect(resultPath({ prdId: 'p_1-x', section: '', version: '' })).toBe('/prds/p_1-x')
    expect(resultPath({ prdId: 'p_1-x', section: 'Risks & issues', version: '' })).toBe('/prds/p_1-x?section=Risks+%26+issues')
    expect(resultPath({ prdId: 'p_1-x', section: 'Risks', version: '1.2.0' })).toBe('/prds/p_1-x')
  })

  it('says how many results, or that none match', () => {
    expect(countText(0, ' zebra ')).toBe('No PRDs match “zebra”.')
    expect(countText(1, 'zebra')).toBe('1 result for “zebra”')
    expect(countText(12, 'zebra')).toBe('12 results for “zebra”')
    expect(countText(3, 'zebra', true)).toBe('No PRD contains “zebra”; the 3 closest by meaning')
    expect(countText(1, 'zebra', true)).toBe('No PRD contains “zebra”; the closest by meaning')
  })
})

describe('stale answers', () => {
  it('only the latest request\'s answer counts, whatever order they arrive in', () => {
    const latest = new LatestOnly()
    const first = latest.next()
    const second = latest.next()
    expect(latest.isCurrent(first)).toBe(false) // arrives late: dropped
    expect(latest.isCurrent(second)).toBe(true)
    const third = latest.next()
    expect(latest.isCurrent(second)).toBe(false)
    expect(latest.isCurrent(third)).toBe(true)
  })

  it('cancel makes every ticket stale (the box was cleared)', () => {
    const latest = new LatestOnly()
    const ticket = latest.next()
    latest.cancel()
    expect(latest.isCurrent(ticket)).toBe(false)
    expect(latest.isCurrent(latest.next())).toBe(true)
  })

  it('drops out-of-order answers in a simulated race', async () => {
    const latest = new LatestOnly()
    const shown: string[] = []
    const query = async (text: string, ms: number): Promise<void> => {
      const ticket = latest.next()
      await new Promise(resolve => setTimeout(resolve, ms))
      if (latest.isCurrent(ticket)) shown.push(text)
    }
    await Promise.all([query('ch', 30), query('che', 20), query('chec', 1)])
    expect(shown).toEqual(['chec'])
  })
})

describe('the active option', () => {
  it('moves down and up, wrapping at both ends', () => {
    expect(moveActive(-1, 3, 1)).toBe(0)
    expect(moveActive(0, 3, 1)).toBe(1)
    expect(moveActive(2, 3, 1)).toBe(0)
    expect(moveActive(-1, 3, -1)).toBe(2)
    expect(moveActive(0, 3, -1)).toBe(2)
    expect(moveActive(2, 3, -1)).toBe(1)
  })

  it('is none without options, and recovers from an index past the end', () => {
    expect(moveActive(-1, 0, 1)).toBe(-1)
    expect(moveActive(4, 0, -1)).toBe(-1)
    expect(moveActive(7, 3, 1)).toBe(0)
    expect(moveActive(7, 3, -1)).toBe(2)
    expect(moveActive(0, 1, 1)).toBe(0)
    expect(moveActive(0, 1, -1)).toBe(0)
  })
})

describe('errors in words', () => {
  const now = Date.parse('2025-01-01T00:00:00Z')

  it('429: how long to wait, from Retry-After in seconds or as a date', () => {
    expect(problemOf(429, { error: { code: 'rate_limited', message: 'slow down' } }, '7', now))
      .toEqual({ text: 'Searching too fast — try again in 7 s', retryInMs: 7000 })
    expect(problemOf(429, undefined, 'Wed, 01 Jan 2025 00:00:03 GMT', now).text).toBe('Searching too fast — try again in 3 s')
    expect(problemOf(429, undefined, null, now).text).toBe('Searching too fast — try again in 1 s')
    expect(retryAfterSeconds('0.2', now)).toBe(1)
    expect(retryAfterSeconds('2.5', now)).toBe(3)
    expect(retryAfterSeconds('soon', now)).toBe(1)
    expect(retryAfterSeconds('', now)).toBe(1)
  })

  it('413, 503 and the 422s', () => {
    expect(problemOf(413, { error: { code: 'query_too_long', message: 'the search query is longer than 500 characters' } }))
      .toEqual({ text: 'That search is too long' })
    expect(problemOf(503, { error: { code: 'search_unavailable', message: 'x' } })).toEqual({ text: 'Search is unavailable right now' })
    expect(problemOf(503, 'not json')).toEqual({ text: 'Search is unavailable right now' })
    expect(problemOf(422, { error: { code: 'empty_query', message: 'the search query is empty' } })).toEqual({ text: '', quiet: true })
    expect(problemOf(422, { error: { code: 'invalid_mode', message: 'mode must be text, semantic or hybrid' } }).text)
      .toBe('This search could not be run: mode must be text, semantic or hybrid')
    expect(problemOf(422, { error: { code: 'invalid_version' } }).text).toBe('This search could not be run.')
  })

  it('anything else, with or without a message', () => {
    expect(problemOf(500, { error: { code: 'internal', message: 'Something went wrong.' } }).text).toBe('Search failed: Something went wrong.')
    expect(problemOf(502, null).text).toBe('Search failed (the server answered 502)')
    expect(problemOf(401, null).text).toBe('Log in again to search.')
  })
})
