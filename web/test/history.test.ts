import { describe, expect, it } from 'vitest'
import {
  appendPage, authorsText, badgesOf, blocksOf, cloneUrl, compareVersions, diffView, emptyList, intraline,
  lineCounts, mergeNewest, pageQuery, parseUnified, partners, previousOf, relativeTime, saveFormError, sideBySide,
  splitLinesKeepEnds, unterminatedTail, wordCounts, type DiffJson, type VersionRecord
} from '../src/features/history-model'

const v = (version: string, extra: Partial<VersionRecord> = {}): VersionRecord =>
  ({ version, kind: 'patch', summary: `s${version}`, authors: ['alice'], created_at: 0, ...extra })

describe('relative time', () => {
  const now = Date.UTC(2026, 2, 12, 12, 0, 0)
  it('says just now, then minutes, hours, days, months, years', () => {
    expect(relativeTime(now - 10_000, now)).toBe('just now')
    expect(relativeTime(now + 20_000, now)).toBe('just now') // a clock slightly ahead
    expect(relativeTime(now - 60_000, now)).toBe('1 minute ago')
    expect(relativeTime(now - 3 * 60_000, now)).toBe('3 minutes ago')
    expect(relativeTime(now - 44 * 60_000, now)).toBe('44 minutes ago')
    expect(relativeTime(now - 50 * 60_000, now)).toBe('1 hour ago')
    expect(relativeTime(now - 5 * 3_600_000, now)).toBe('5 hours ago')
    expect(relativeTime(now - 24 * 3_600_000, now)).toBe('yesterday')
    expect(relativeTime(now - 3 * 86_400_000, now)).toBe('3 days ago')
    expect(relativeTime(now - 40 * 86_400_000, now)).toBe('last month')
    expect(relativeTime(now - 100 * 86_400_000, now)).toBe('3 months ago')
    expect(relativeTime(now - 400 * 86_400_000, now)).toBe('last year')
    expect(relativeTime(now - 3 * 365 * 86_400_000, now)).toBe('3 years ago')
  })
})

describe('versions and paging', () => {
  it('orders version numbers numerically, with or without the v', () => {
    expect(compareVersions('1.10.0', '1.9.3')).toBeGreaterThan(0)
    expect(compareVersions('v2.0.0', '10.0.0')).toBeLessThan(0)
    expect(compareVersions('v1.2.3', '1.2.3')).toBe(0)
  })

  it('builds the page query with the cursor', () => {
    expect(pageQuery(50, null)).toBe('?limit=50')
    expect(pageQuery(20, '1.2.0')).toBe('?limit=20&before=1.2.0')
  })

  it('appends older pages, skipping versions it already holds, and keeps the cursor of the last page', () => {
    let state = appendPage(emptyList(), { items: [v('1.0.4'), v('1.0.3')], next: '1.0.3' })
    expect(state.loaded).toBe(true)
    expect(state.next).toBe('1.0.3')
    state = appendPage(state, { items: [v('1.0.3'), v('1.0.2'), v('1.0.1')], next: '1.0.1' })
    expect(state.items.map(x => x.version)).toEqual(['1.0.4', '1.0.3', '1.0.2', '1.0.1'])
    state = appendPage(state, { items: [v('1.0.0')], next: null })
    expect(state.next).toBeNull()
    expect(previousOf(state.items, '1.0.2')?.version).toBe('1.0.1')
    expect(previousOf(state.items, '1.0.0')).toBeUndefined()
  })

  it('merges the newest page on top (live notices), takes updated records, and reports a gap', () => {
    const state = appendPage(emptyList(), { items: [v('1.0.1', { state: 'pending' }), v('1.0.0')], next: null })
    const merged = mergeNewest(state, { items: [v('1.1.0'), v('1.0.1', { state: 'committed' })], next: '1.0.1' })
    expect(merged.gap).toBe(false)
    expect(merged.added.map(x => x.version)).toEqual(['1.1.0'])
    expect(merged.state.items.map(x => x.version)).toEqual(['1.1.0', '1.0.1', '1.0.0'])
    expect(merged.state.items[1].state).toBe('committed')
    expect(merged.state.next).toBeNull() // the cursor of the older pages is unchanged
    // A whole page of unknown versions with more behind it: reload from the top.
    expect(mergeNewest(state, { items: [v('3.0.0'), v('2.0.0')], next: '2.0.0' }).gap).toBe(true)
    // Nothing loaded yet: the page is the list.
    expect(mergeNewest(emptyList(), { items: [v('1.0.0')], next: null }).state.items).toHaveLength(1)
  })
})

describe('labels', () => {
  it('names the kind, and named / restored / AI versions', () => {
    expect(badgesOf(v('1.0.0', { kind: 'initial' })).map(b => b.text)).toEqual(['Initial'])
    expect(badgesOf(v('1.2.0', { kind: 'minor', name: 'Beta' })).map(b => b.text)).toEqual(['Minor', 'Named'])
    expect(badgesOf(v('2.0.0', { kind: 'major', restored_from: '1.0.0' })).map(b => b.text)).toEqual(['Major', 'Restored'])
    expect(badgesOf(v('1.2.1', { name: 'AI rewrite', message: 'Applies AI job 01J (rewrite) requested by bob.' })).map(b => b.text))
      .toEqual(['Patch', 'AI'])
  })

  it('lists authors and word counts in words', () => {
    expect(authorsText([])).toBe('unknown author')
    expect(authorsText(['alice', 'bob'])).toBe('alice and bob')
    expect(authorsText(['a', 'b', 'c', 'd', 'e'])).toBe('a, b and 3 others')
    expect(wordCounts(3, 1)).toBe('+3 \u22121 words')
    expect(wordCounts(0, 0)).toBe('')
  })

  it('checks the save form as the API does', () => {
    expect(saveFormError('', '')).toBeNull()
    expect(saveFormError('Sent for review', 'Line one\nline two')).toBeNull()
    expect(saveFormError('a\tb', '')).toBe('The name must be one line of text.')
    expect(saveFormError('x'.repeat(101), '')).toMatch(/at most 100 characters/)
    expect(saveFormError('', 'x'.repeat(2001))).toMatch(/at most 2000 characters/)
  })

  it('builds the git clone URL on the API origin, or this page’s locally', () => {
    const page = { origin: 'https://prd.example.com', hostname: 'prd.example.com' }
    expect(cloneUrl('https://abc.execute-api.eu-west-1.amazonaws.com', page, 'P1')).toBe('https://abc.execute-api.eu-west-1.amazonaws.com/git/P1.git')
    expect(cloneUrl(undefined, page, 'P1')).toBe('https://prd.example.com/git/P1.git')
    expect(cloneUrl('http://localhost:3000', { origin: 'http://127.0.0.1:3102', hostname: '127.0.0.1' }, 'P1')).toBe('http://127.0.0.1:3102/git/P1.git')
    expect(cloneUrl('not a url', page, 'P1')).toBe('https://prd.example.com/git/P1.git')
  })
})

describe('diff model', () => {
  const unified = [
    '--- v1.0.0/prd.md\n', '+++ v2.0.0/prd.md\n',
    '@@ -1,5 +1,9 @@\n', ' # Probe\n', ' \n', ' ## Goals\n', ' \n', '-Ship it.\n', '+Ship it later.\n', '+\n', '+## Risks\n', '+\n', '+None.\n'
  ].join('')

  it('parses hunks into numbered lines', () => {
    const parsed = parseUnified(unified)
    expect(parsed.uneven).toBe(false)
    expect(parsed.hunks).toHaveLength(1)
    const lines = parsed.hunks[0].lines
    expect(lines[4]).toEqual({ kind: 'del', text: 'Ship it.', oldNo: 5 })
    expect(lines[5]).toEqual({ kind: 'add', text: 'Ship it later.', newNo: 5 })
    expect(lines[9]).toEqual({ kind: 'add', text: 'None.', newNo: 9 })
    expect(lineCounts(parsed)).toEqual({ added: 5, removed: 1 })
    expect(blocksOf(lines).map(b => [b.kind, b.lines.length])).toEqual([['context', 4], ['change', 6]])
  })

  it('pairs deletions with additions side by side, and finds the changed part of a line', () => {
    const lines = parseUnified(unified).hunks[0].lines
    const rows = sideBySide(lines)
    expect(rows).toHaveLength(4 + 5)
    expect(rows[4].left?.text).toBe('Ship it.')
    expect(rows[4].right?.text).toBe('Ship it later.')
    expect(rows[5].left).toBeUndefined()
    expect(rows[0].left).toBe(rows[0].right)
    expect(partners(lines).get(lines[4])).toBe(lines[5])
    expect(intraline('Ship it.', 'Ship it later.')).toEqual(['Ship it', '', '.'])
    expect(intraline('Ship it later.', 'Ship it.')).toEqual(['Ship it', ' later', '.'])
    expect(intraline('abc', 'abc')).toEqual(['abc', '', ''])
  })

  it('reads hunks of new and removed files (zero-length ranges)', () => {
    const parsed = parseUnified('--- \n+++ \n@@ -0,0 +1,2 @@\n+\n+None.\n')
    expect(parsed.uneven).toBe(false)
    expect(parsed.hunks[0].lines.map(l => l.newNo)).toEqual([1, 2])
    const gone = parseUnified('--- \n+++ \n@@ -1,2 +0,0 @@\n-\n-x y z')
    expect(gone.hunks[0].lines.map(l => [l.kind, l.text, l.oldNo])).toEqual([['del', '', 1], ['del', 'x y z', 2]])
  })

  it('separates a last line without a line break from the addition glued to it (difflib)', () => {
    // What the backend sends when the old text ends without "\n" and its last line changed.
    const glued = '--- \n+++ \n@@ -1,2 +1,3 @@\n a\n-b+c\n+d'
    expect(parseUnified(glued).uneven).toBe(true)
    const fixed = parseUnified(glued, unterminatedTail('a\nb'))
    expect(fixed.uneven).toBe(false)
    expect(fixed.hunks[0].lines.map(l => [l.kind, l.text])).toEqual([['context', 'a'], ['del', 'b'], ['add', 'c'], ['add', 'd']])
    expect(unterminatedTail('a\nb\n')).toBe('')
    expect(unterminatedTail('a+b')).toBe('a+b')
  })

  it('splits lines as Python does (\\r, \\u2028 end lines too)', () => {
    expect(splitLinesKeepEnds('a\r\nb\u2028c\rd')).toEqual(['a\r\n', 'b\u2028', 'c\r', 'd'])
    const parsed = parseUnified('@@ -1,2 +1,2 @@\n-a\u2028-b\n+a\u2028+c\n')
    expect(parsed.uneven).toBe(false)
    expect(parsed.hunks[0].lines.map(l => l.text)).toEqual(['a', 'b', 'a', 'c'])
  })

  it('builds the per-section view of the API answer', () => {
    const json: DiffJson = {
      from: '1.0.0',
      to: '2.0.0',
      kind: 'major',
      summary: "Add section 'Risks'",
      unified,
      sections: [
        { title: 'Risks', old_title: null, action: 'added', summary: "Add section 'Risks'", words_added: 1, words_removed: 0, diff: '--- \n+++ \n@@ -0,0 +1,2 @@\n+\n+None.\n' },
        { title: 'Objectives', old_title: 'Goals', action: 'renamed', summary: "Rename 'Goals' to 'Objectives'", words_added: 1, words_removed: 0, diff: '' },
        { title: '', old_title: '', action: 'edited', summary: 'Edit the beginning', words_added: 6, words_removed: 2, diff: '--- \n+++ \n@@ -1 +1 @@\n-x\n+y\n' }
      ]
    }
    const view = diffView(json)
    expect(view.kindText).toBe('Major')
    expect(view.uneven).toBe(false)
    expect(view.sections.map(s => [s.actionText, s.heading, s.structural])).toEqual([
      ['Added', 'Risks', true], ['Renamed', 'Objectives (was Goals)', true], ['Edited', '(before the first heading)', false]
    ])
    expect(view.sections[0].counts).toBe('+1 word')
    expect(view.sections[1].diff.hunks).toHaveLength(0)
    expect(view.sections[2].diff.hunks[0].lines).toHaveLength(2)
    expect(diffView({ ...json, kind: 'none', sections: [], unified: '' }).kindText).toBe('No visible change')
  })
})
