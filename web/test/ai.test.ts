import { describe, expect, it } from 'vitest'
import { outline } from '../src/presence'
import { sectionIndexAt, sectionTitleAt, titleIndex } from '../src/features/sections'
import {
  MAX_PROMPT_CHARS, StreamBuffer, defaultTarget, errorText, isInvalid, mayDecide, noticeStatus, sectionChoices,
  statusRank, validateJob, whatFor
} from '../src/features/ai-model'

const PRD = '# Checkout\n\nIntro text.\n\n## Overview\n\nWhat.\n\n## Goals\n\n- Faster\n\n### Stretch\n\nMore.\n\n## Risks and mitigations\n\nNone yet.\n'


describe('the stream of an answer', () => {
  it('appends chunks in seq order and ignores duplicates', () => {
    const s = new StreamBuffer()
    expect(s.push(1, 'Hello')).toBe('appended')
    expect(s.push(2, ', ')).toBe('appended')
    expect(s.push(2, ', ')).toBe('duplicate')
    expect(s.push(1, 'Hello')).toBe('duplicate')
    expect(s.push(3, 'world')).toBe('appended')
    expect(s.text).toBe('Hello, world')
    expect(s.seq).toBe(3)
    expect(s.gap).toBe(false)
  })

  it('holds chunks after a gap until the missing one arrives, in order', () => {
    const s = new StreamBuffer()
    s.push(1, 'a')
    expect(s.push(3, 'c')).toBe('gap')
    expect(s.push(4, 'd')).toBe('gap')
    expect(s.push(4, 'd')).toBe('duplicate')
    expect(s.text).toBe('a')
    expect(s.gap).toBe(true)
    expect(s.push(2, 'b')).toBe('appended')
    expect(s.text).toBe('abcd')
    expect(s.seq).toBe(4)
    expect(s.gap).toBe(false)
  })

  it('fills a gap from the job read again, keeping the chunks beyond it', () => {
    const s = new StreamBuffer()
    s.push(1, 'a')
    s.push(5, 'e')
    s.push(6, 'f')
    expect(s.restore('abcd', 4)).toBe(true)
    expect(s.text).toBe('abcdef')
    expect(s.seq).toBe(6)
    expect(s.gap).toBe(false)
  })

  it('ignores a snapshot older than what it holds, and one that leaves a gap still reports it', () => {
    const s = new StreamBuffer()
    s.push(1, 'a')
    s.push(2, 'b')
    s.push(3, 'c')
    expect(s.restore('ab', 2)).toBe(false)
    expect(s.text).toBe('abc')
    s.push(7, 'g')
    expect(s.restore('abcd', 4)).toBe(true)
    expect(s.gap).toBe(true) // 5 and 6 are still missing: read again later
    expect(s.text).toBe('abcd')
    expect(s.restore('abcdef', 6)).toBe(true)
    expect(s.text).toBe('abcdefg')
  })

  it('starts from a snapshot taken after a reconnect', () => {
    const s = new StreamBuffer()
    s.restore('The first part', 12)
    expect(s.push(12, 'again')).toBe('duplicate')
    expect(s.push(13, ' and more')).toBe('appended')
    expect(s.text).toBe('The first part and more')
    expect(s.push(Number.NaN, 'x')).toBe('duplicate')
  })
})

describe('the section under the cursor', () => {
  const headings = outline(PRD)

  it('is the last heading at or before the offset', () => {
    expect(sectionIndexAt(headings, 0)).toBe(0)
    expect(sectionIndexAt([], 10)).toBe(-1)
    expect(headings[sectionIndexAt(headings, PRD.indexOf('- Faster'))].text).toBe('Goals')
    expect(headings[sectionIndexAt(headings, PRD.indexOf('## Goals'))].text).toBe('Goals')
    expect(headings[sectionIndexAt(headings, PRD.indexOf('## Goals') - 1)].text).toBe('Overview')
    expect(headings[sectionIndexAt(headings, PRD.indexOf('More.'))].text).toBe('Stretch')
    expect(headings[sectionIndexAt(headings, PRD.length)].text).toBe('Risks and mitigations')
    expect(sectionIndexAt(outline('text\n\n## A\n'), 2)).toBe(-1)
  })

  it('is never the document title', () => {
    expect(titleIndex(headings)).toBe(0)
    expect(titleIndex(outline('# One\n# Two\n'))).toBe(-1)
    expect(titleIndex(outline('## Only\n'))).toBe(-1)
    expect(sectionTitleAt(headings, PRD.indexOf('Intro'))).toBeNull()
    expect(sectionTitleAt(headings, PRD.indexOf('What.'))).toBe('Overview')
    expect(sectionTitleAt(outline('# One\n\nx\n# Two\n'), 8)).toBe('One')
  })

  it('gives the default target of a new job', () => {
    const draft = sectionChoices(headings, 'draft')
    expect(defaultTarget(headings, PRD.indexOf('- Faster'), draft)).toBe('Goals')
    expect(defaultTarget(headings, PRD.indexOf('More.'), draft)).toBe('Stretch')
    expect(defaultTarget(headings, 3, draft)).toBe('')
    expect(defaultTarget([], 0, sectionChoices([], 'draft'))).toBe('')
  })
})

describe('the form', () => {
  const headings = outline(PRD)

  it('offers the PRD sections, and the missing standard ones for a draft', () => {
    const draft = sectionChoices(headings, 'draft')
    expect(draft.existing).toEqual(['Overview', 'Goals', 'Stretch', 'Risks and mitigations'])
    expect(draft.standard).toContain('Timeline')
    expect(draft.standard).not.toContain('Goals')
    expect(draft.standard).not.toContain('Risks') // "Risks and mitigations" is the risks section
    expect(sectionChoices(headings, 'rewrite')).toEqual({ existing: draft.existing, standard: [] })
    expect(sectionChoices(headings, 'fill-gaps')).toEqual({ existing: [], standard: [] })
    expect(sectionChoices(outline('## Goals\n## goals\n'), 'summarize').existing).toEqual(['Goals'])
  })

  it('checks the request before sending it', () => {
    expect(validateJob({ prompt: 'List risks', mode: 'draft', section: 'Risks' })).toEqual({ prompt: 'List risks', mode: 'draft', section: 'Risks' })
    expect(validateJob({ prompt: 'Fill it', mode: 'fill-gaps', section: 'Goals' })).toEqual({ prompt: 'Fill it', mode: 'fill-gaps' })
    const empty = validateJob({ prompt: '   ', mode: 'draft', section: 'Risks' })
    expect(isInvalid(empty) && empty.field).toBe('prompt')
    const long = validateJob({ prompt: 'x'.repeat(MAX_PROMPT_CHARS + 1), mode: 'draft', section: 'Risks' })
    expect(isInvalid(long) && long.message).toMatch(/4001 characters; at most 4000/)
    const noSection = validateJob({ prompt: 'Do it', mode: 'rewrite', section: '' })
    expect(isInvalid(noSection) && noSection.field).toBe('section')
    const badMode = validateJob({ prompt: 'Do it', mode: 'poem', section: 'Goals' })
    expect(isInvalid(badMode) && badMode.field).toBe('mode')
  })
})

describe('jobs in words', () => {
  it('moves a status forward only', () => {
    expect(statusRank('queued')).toBeLessThan(statusRank('running'))
    expect(statusRank('running')).toBeLessThan(statusRank('done'))
    expect(statusRank('done')).toBeLessThan(statusRank('approved'))
    expect(statusRank('cancelled')).toBe(statusRank('rejected'))
    expect(noticeStatus('generating')).toBe('running')
    expect(noticeStatus('pending')).toBe('done')
    expect(noticeStatus('approved')).toBe('approved')
    expect(noticeStatus('weird')).toBeNull()
  })

  it('names what was asked for', () => {
    expect(whatFor('draft', 'Risks')).toBe('a draft of “Risks”')
    expect(whatFor('summarize', 'Goals')).toBe('a summary of “Goals”')
    expect(whatFor('fill-gaps', null)).toBe('the missing sections')
  })

  it('offers decisions to the requester and to owners who may edit', () => {
    expect(mayDecide({ requester: 'alice' }, 'alice', 'editor', true)).toBe(true)
    expect(mayDecide({ requester: 'alice' }, 'bob', 'editor', true)).toBe(false)
    expect(mayDecide({ requester: 'bob' }, 'alice', 'owner', true)).toBe(true)
    expect(mayDecide({ requester: 'carol' }, 'carol', 'viewer', false)).toBe(false)
  })

  it('says what went wrong and what to do', () => {
    expect(errorText(409, 'section_conflict', "the section 'Goals' was edited after this suggestion was written; nothing was changed"))
      .toBe("The section 'Goals' was edited after this suggestion was written; nothing was changed. You can reject this suggestion, or ask the AI again.")
    expect(errorText(429, 'ai_rate_limited', 'you have started the most AI jobs allowed per minute (10); retry in 42 s'))
      .toBe('You have started the most AI jobs allowed per minute (10); retry in 42 s.')
    expect(errorText(413, 'prompt_too_large', 'the prompt has 5000 characters; at most 4000 are accepted')).toMatch(/^The prompt has 5000.*Shorten your request/)
    expect(errorText(403, 'forbidden', 'x')).toBe('Your role on this PRD does not allow this.')
  })
})
