// Pure parts of import (features/import.ts) and export (features/export.ts): what is refused before
// an upload, the report's view model, errors in words, poll backoff, export links and expiry.
import { describe, expect, it } from 'vitest'
import {
  ACCEPT, AI_PENDING_TEXT, DIRECT_MAX_BYTES, awaitingAi, UPLOAD_MAX_BYTES, checkFile, confidenceText, extensionOf, formatBytes, importErrorText,
  pollDelay, reportView
} from '../src/features/import'
import { exportErrorText, fileNameOf, formatExpiry, resultView, versionLabel } from '../src/features/export'
import { IMPORT_ACCEPT } from '../src/screens/list'

const MiB = 1024 * 1024

describe('import: files refused before upload', () => {
  it('takes Word, PDF, Markdown and HTML by extension, case-insensitively', () => {
    for (const name of ['prd.docx', 'PRD.DOCX', 'a.pdf', 'notes.md', 'notes.markdown', 'page.html', 'page.htm', 'x.txt']) {
      expect(checkFile({ name, size: 1000 }).ok, name).toBe(true)
    }
    expect(ACCEPT.split(',')).toEqual(expect.arrayContaining(['.docx', '.pdf', '.md', '.html']))
    expect(IMPORT_ACCEPT).toBe(ACCEPT) // the list's file picker offers what the importer takes
  })

  it('refuses other types in words', () => {
    for (const name of ['photo.png', 'sheet.xlsx', 'slides.pptx', 'noextension', '.docx', 'archive.docx.zip']) {
      const check = checkFile({ name, size: 1000 })
      expect(check.ok, name).toBe(false)
      if (!check.ok) {
        expect(check.reason).toBe('type')
        expect(check.message).toContain(name)
        expect(check.message).toMatch(/Word \(\.docx\), PDF \(\.pdf\), Markdown \(\.md\) or HTML \(\.html\)/)
      }
    }
  })

  it('refuses empty files and files over 20 MiB; text over 4 MiB too', () => {
    const empty = checkFile({ name: 'a.md', size: 0 })
    expect(empty).toMatchObject({ ok: false, reason: 'empty' })
    const huge = checkFile({ name: 'big.pdf', size: UPLOAD_MAX_BYTES + 1 })
    expect(huge).toMatchObject({ ok: false, reason: 'size' })
    if (!huge.ok) expect(huge.message).toBe('big.pdf is 20 MB: imports take files of at most 20 MB.')
    const longText = checkFile({ name: 'long.md', size: DIRECT_MAX_BYTES + 1 })
    expect(longText).toMatchObject({ ok: false, reason: 'size' })
    if (!longText.ok) expect(longText.message).toMatch(/Markdown and HTML files may be at most 4 MB/)
  })

  it('sends up to 4 MiB through the API and larger Word/PDF files straight to S3', () => {
    expect(checkFile({ name: 'a.docx', size: DIRECT_MAX_BYTES })).toEqual({ ok: true, kind: 'docx', route: 'direct' })
    expect(checkFile({ name: 'a.docx', size: DIRECT_MAX_BYTES + 1 })).toEqual({ ok: true, kind: 'docx', route: 'upload' })
    expect(checkFile({ name: 'a.pdf', size: UPLOAD_MAX_BYTES })).toEqual({ ok: true, kind: 'pdf', route: 'upload' })
    expect(checkFile({ name: 'a.html', size: DIRECT_MAX_BYTES })).toEqual({ ok: true, kind: 'html', route: 'direct' })
  })

  it('formats sizes and extensions', () => {
    expect(formatBytes(512)).toBe('512 bytes')
    expect(formatBytes(13_798)).toBe('13 KB')
    expect(formatBytes(4 * MiB)).toBe('4 MB')
    expect(formatBytes(4.5 * MiB)).toBe('4.5 MB')
    expect(formatBytes(20 * MiB)).toBe('20 MB')
    expect(extensionOf('My.Report.PDF')).toBe('.pdf')
    expect(extensionOf('.bashrc')).toBe('')
  })
})

describe('import: polling backoff', () => {
  it('starts at half a second, grows, and never exceeds 5 s', () => {
    const delays = Array.from({ length: 12 }, (_, i) => pollDelay(i))
    expect(delays[0]).toBe(500)
    for (let i = 1; i < delays.length; i++) expect(delays[i]).toBeGreaterThanOrEqual(delays[i - 1])
    expect(Math.max(...delays)).toBe(5000)
    expect(delays.slice(0, 4)).toEqual([500, 800, 1280, 2048])
    expect(pollDelay(-3)).toBe(500)
    // what a 10-second conversion costs: a handful of requests, not one every 100 ms
    let waited = 0
    let polls = 0
    while (waited < 10_000) waited += pollDelay(polls++)
    expect(polls).toBeLessThanOrEqual(7)
  })
})

describe('import: report view model', () => {
  const result = {
    aiJobId: 'job1',
    report: {
      sections: [
        { heading: 'Problem', level: 2, key: 'problem', confidence: 1.0, words: 60 },
        { heading: 'KPIs', level: 2, key: 'success-metrics', confidence: 0.9, words: 20 },
        { heading: 'Why we are doing this', level: 2, key: 'problem', confidence: 0.6, words: 10 },
        { heading: 'Misc', level: 2, key: 'risks', confidence: 0.4, words: 5 },
        { heading: 'Appendix', level: 2, key: null, confidence: 0, words: 3 }
      ],
      missing: [
        { key: 'users', title: 'Target users', state: 'missing', words: 0, min_words: 15 },
        { key: 'timeline', state: 'thin', words: 3, min_words: 15 }
      ],
      dropped: [
        { kind: 'image', detail: 'images (pictures are not imported)', count: 1 },
        { kind: 'style', detail: 'Unrecognised paragraph style: Compact', count: 1 },
        { kind: 'style', detail: 'Unrecognised paragraph style: First Paragraph', count: 2 },
        { kind: 'embedded', detail: 'embedded objects not imported', count: 0 },
        { kind: 'odd_thing', detail: 'something', count: 3 }
      ],
      title: 'Saved carts',
      intro: { words: 63, role: 'overview' },
      warnings: ['CJK text has no font']
    }
  }

  it('maps each heading to its standard section with a confidence in words', () => {
    const view = reportView(result)
    expect(view.title).toBe('Saved carts')
    expect(view.sections.map(s => [s.heading, s.section, s.confidenceText])).toEqual([
      ['Problem', 'Problem', 'Exact (100%)'],
      ['KPIs', 'Success metrics', 'Synonym (90%)'],
      ['Why we are doing this', 'Problem', 'Likely (60%)'],
      ['Misc', 'Risks and mitigations', 'Unsure (40%)'],
      ['Appendix', null, 'Not mapped (0%)']
    ])
    expect(view.mapped).toBe(3) // confidence ≥ 0.6 counts as present
    expect(confidenceText(0.4).level).toBe('low')
  })

  it('lists missing sections (titles from the schema when absent) and groups what was dropped', () => {
    const view = reportView(result)
    expect(view.missing).toEqual([{ title: 'Target users', thin: false }, { title: 'Timeline', thin: true }])
    expect(view.dropped).toEqual([
      { kind: 'image', label: 'Images', count: 1, details: ['images (pictures are not imported)'] },
      { kind: 'style', label: 'Styles', count: 3, details: ['Unrecognised paragraph style: Compact', 'Unrecognised paragraph style: First Paragraph'] },
      { kind: 'odd_thing', label: 'Odd thing', count: 3, details: ['something'] }
    ])
    expect(view.warnings).toEqual(['CJK text has no font'])
    expect(view.intro).toMatch(/counts as the Overview/)
  })

  it('says when an AI draft of the missing sections was started, or why not', () => {
    const started = reportView(result).ai
    expect(started?.started).toBe(true)
    expect(started?.text).toContain('Target users and Timeline')
    expect(reportView({ report: result.report, aiNote: 'the AI budget for today is spent' }).ai)
      .toEqual({ started: false, text: 'No AI draft: the AI budget for today is spent.' })
    expect(reportView({ report: result.report }).ai).toBeNull()
    const three = reportView({ aiJobId: 'j', report: { missing: [{ key: 'users' }, { key: 'risks' }, { key: 'timeline' }] } })
    expect(three.ai?.text).toContain('(Target users, Risks and mitigations, and Timeline)')
  })

  it('knows when the AI draft asked for is not recorded yet (it is started just after "done")', () => {
    expect(awaitingAi(result, true)).toBe(false) // aiJobId is there
    const bare = { report: result.report }
    expect(awaitingAi(bare, true)).toBe(true)
    expect(awaitingAi(bare, false)).toBe(false) // not asked for
    expect(awaitingAi({ report: { ...result.report, missing: [] } }, true)).toBe(false) // nothing to draft
    expect(awaitingAi({ ...bare, aiNote: 'no gaps the AI sees' }, true)).toBe(false)
    expect(awaitingAi({ ...bare, aiDraft: 'pending' }, false)).toBe(true) // the server says so
    expect(awaitingAi({ ...bare, aiDraft: 'off' }, true)).toBe(false)
    expect(reportView(bare, true).ai).toEqual({ started: false, pending: true, text: AI_PENDING_TEXT })
  })

  it('copes with an empty or absent report', () => {
    const view = reportView({})
    expect(view).toMatchObject({ title: null, sections: [], mapped: 0, missing: [], dropped: [], warnings: [], intro: null, ai: null })
  })
})

describe('import: errors in words', () => {
  it('leads with what happened, then the server\'s explanation', () => {
    expect(importErrorText('unsupported_media_type', 'fake.docx is a PNG image; import takes .docx, .pdf, .md and .html files'))
      .toBe('This kind of file cannot be imported. fake.docx is a PNG image; import takes .docx, .pdf, .md and .html files.')
    expect(importErrorText('import_damaged', 'the file is truncated')).toBe('The file is damaged or incomplete and cannot be read. The file is truncated.')
    expect(importErrorText('import_encrypted', 'the PDF is encrypted')).toMatch(/^The document is protected by a password/)
    expect(importErrorText('import_no_text', 'the PDF has no text layer')).toMatch(/scanned PDF/)
    expect(importErrorText('file_too_large', 'the file has 5,000,000 bytes')).toMatch(/^The file is too large\. The file has 5,000,000 bytes\.$/)
    expect(importErrorText('something_new', 'a reason')).toBe('A reason.')
    expect(importErrorText(undefined, undefined)).toBe('The import failed.')
    expect(importErrorText('empty_file', 'The file is empty')).toBe('The file is empty.')
  })
})

describe('export: links, expiry, results', () => {
  const url = 'http://127.0.0.1:3133/bucket/exports/01abc/Saved-carts-v1.0.0.pdf?response-content-disposition=attachment&X-Amz-Signature=x'

  it('reads the file name from the presigned link', () => {
    expect(fileNameOf(url)).toBe('Saved-carts-v1.0.0.pdf')
    expect(fileNameOf('https://b.s3.amazonaws.com/exports/1/Caf%C3%A9-v1.0.0.docx?X=1')).toBe('Café-v1.0.0.docx')
    expect(fileNameOf('not a url')).toBeNull()
  })

  it('says until when the link works', () => {
    const now = Date.UTC(2026, 11, 6, 12, 0)
    const text = formatExpiry(now / 1000 + 24 * 3600, now, 'en-GB')
    expect(text).toMatch(/^The link works until 7 Dec 2026, \d\d:\d\d \(24 hours\)\.$/)
    expect(formatExpiry(now / 1000 + 600, now, 'en-GB')).not.toMatch(/hour/)
  })

  it('turns an export (GET or notice) into what the panel shows', () => {
    const now = Date.now()
    const ready = resultView({ status: 'done', format: 'pdf', url, expiresAt: Math.floor(now / 1000) + 86_400, warnings: ['no CJK font'] }, now)
    expect(ready).toMatchObject({ state: 'ready', kind: 'file', fileName: 'Saved-carts-v1.0.0.pdf', linkText: 'Download Saved-carts-v1.0.0.pdf', warnings: ['no CJK font'] })
    const notice = resultView({ type: 'export.ready', format: 'docx', url: url.replace('.pdf', '.docx') })
    expect(notice).toMatchObject({ state: 'ready', kind: 'file', fileName: 'Saved-carts-v1.0.0.docx', expiry: null, warnings: [] })
    const named = resultView({ status: 'done', format: 'pdf', url, filename: 'Saved carts v1.0.0.pdf' })
    expect(named).toMatchObject({ fileName: 'Saved carts v1.0.0.pdf' }) // the server's name wins over the link's
    const page = resultView({ status: 'done', format: 'confluence', url: 'https://acme.atlassian.net/wiki/spaces/PRD/pages/1', pageVersion: 3 })
    expect(page).toMatchObject({ state: 'ready', kind: 'confluence', linkText: 'Open in Confluence', pageVersion: 3 })
    expect(resultView({ status: 'queued', format: 'pdf' })).toEqual({ state: 'running', text: 'Waiting in the queue…' })
    expect(resultView({ status: 'running', format: 'pdf' })).toEqual({ state: 'running', text: 'Making the PDF…' })
    expect(resultView({ status: 'done', format: 'pdf', expired: true }).state).toBe('expired')
    expect(resultView({ type: 'export.failed', format: 'pdf', error: { code: 'internal_error', message: 'x' } }))
      .toEqual({ state: 'failed', text: 'The export failed on our side. Try again.' })
  })

  it('says in words that Confluence is not configured, and passes other reasons on', () => {
    expect(exportErrorText('confluence_not_configured', 'publishing to Confluence is not configured for this deployment'))
      .toMatch(/^Publishing to Confluence is not set up for this workspace/)
    expect(exportErrorText('rate_limited', 'too many exports; wait a minute')).toBe('Too many exports; wait a minute.')
    expect(exportErrorText(undefined, '')).toBe('The export failed. Try again.')
  })

  it('labels versions with their name or message and date', () => {
    const label = versionLabel({ version: '1.2.0', name: null, message: 'Imported from prd.docx', created_at: Date.UTC(2026, 11, 6) }, 'en-GB')
    expect(label).toBe('v1.2.0 — Imported from prd.docx — 6 Dec 2026')
    expect(versionLabel({ version: '2.0.0', name: 'Launch', message: 'x' })).toBe('v2.0.0 — Launch')
    expect(versionLabel({ version: '1.0.0', message: 'y'.repeat(80) }).length).toBeLessThan(60)
  })
})
